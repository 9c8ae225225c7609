"""What more than one service uses: topic names, identity headers, identifier rules, the
error model, request decoding and event-path health (common/README.md). It imports no
service package (core, ledger, gateway, streaming); the services import it (the
import-linter contracts in pyproject.toml, ADR 0022)."""
