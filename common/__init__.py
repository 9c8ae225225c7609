"""What more than one service uses: topic names, identity headers, identifier rules,
request decoding and event-path health. It imports no service package (core, ledger,
gateway, streaming); the services import it (import-linter contracts in pyproject.toml)."""
