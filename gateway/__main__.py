"""`python -m gateway`: the gateway process (settings from the EDGE_* environment)."""

from gateway.server import main

main()
