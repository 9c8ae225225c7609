"""Where a client connects and with which key: flags, then environment, then a keys file.

The keys file is the local exchange's ``var/demo-keys.json``: ``{name: {"key_id",
"secret", "account_id"}}`` (``infra/local/demo_accounts.py`` writes it).

Each setting: flag, environment variable, default.
- gRPC endpoint (Envoy): ``--endpoint``, ``EXCHANGE_ENDPOINT``, ``127.0.0.1:8080``.
- HTTP base (REST, WebSocket): ``--http-url``, ``EXCHANGE_HTTP_URL``, ``http://<endpoint>``.
- key: ``--api-key``/``--api-secret``, ``EXCHANGE_API_KEY``/``EXCHANGE_API_SECRET``, else
  ``--key-name`` (``EXCHANGE_KEY_NAME``, ``demo-alice``) of ``--keys-file``
  (``EXCHANGE_KEYS_FILE``, ``var/demo-keys.json``).
- market rules: ``--markets-file``, ``EXCHANGE_MARKETS_FILE``, none (looked up).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchange_sdk._protocol import MarketCatalog
from exchange_sdk.signing import ApiCredentials

DEFAULT_ENDPOINT: Final = "127.0.0.1:8080"
DEFAULT_KEYS_FILE: Final = "var/demo-keys.json"
DEFAULT_KEY_NAME: Final = "demo-alice"


@dataclass(frozen=True)
class ConnectionSettings:
    endpoint: str
    http_url: str
    credentials: ApiCredentials | None
    markets_file: Path | None = None

    @property
    def websocket_url(self) -> str:
        return self.http_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"

    def catalog(self) -> MarketCatalog:
        if self.markets_file is None:
            return MarketCatalog()
        return MarketCatalog.load_json(self.markets_file)


def read_keys_file(path: Path) -> dict[str, ApiCredentials]:
    """The keys of a ``var/demo-keys.json``-style file, by name."""
    document = json.loads(path.read_text())
    return {
        name: ApiCredentials(str(fields["key_id"]), str(fields["secret"]))
        for name, fields in document.items()
    }


def resolve_settings(
    *,
    endpoint: str | None = None,
    http_url: str | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    keys_file: str | None = None,
    key_name: str | None = None,
    markets_file: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> ConnectionSettings:
    """Flags win over the environment, which wins over the keys file."""
    env = os.environ if environment is None else environment
    chosen_endpoint = endpoint or env.get("EXCHANGE_ENDPOINT") or DEFAULT_ENDPOINT
    chosen_http = http_url or env.get("EXCHANGE_HTTP_URL") or f"http://{chosen_endpoint}"
    key_id = api_key or env.get("EXCHANGE_API_KEY")
    secret = api_secret or env.get("EXCHANGE_API_SECRET")
    credentials: ApiCredentials | None = None
    if key_id and secret:
        credentials = ApiCredentials(key_id, secret)
    else:
        path = Path(keys_file or env.get("EXCHANGE_KEYS_FILE") or DEFAULT_KEYS_FILE)
        name = key_name or env.get("EXCHANGE_KEY_NAME") or DEFAULT_KEY_NAME
        if path.is_file():
            keys = read_keys_file(path)
            if name not in keys:
                known = ", ".join(sorted(keys))
                raise ValueError(f"no key {name!r} in {path} (it has: {known})")
            credentials = keys[name]
    chosen_markets = markets_file or env.get("EXCHANGE_MARKETS_FILE")
    return ConnectionSettings(
        endpoint=chosen_endpoint,
        http_url=chosen_http.rstrip("/"),
        credentials=credentials,
        markets_file=Path(chosen_markets) if chosen_markets else None,
    )
