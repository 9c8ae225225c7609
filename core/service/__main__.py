"""`python -m core.service --data-dir DIR --listen 127.0.0.1:PORT` (see core/service/config.py)."""

from core.service.server import main

main()
