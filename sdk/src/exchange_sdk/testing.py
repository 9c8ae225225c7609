"""Helpers for your own tests.

``FakeTransport`` stands in for the network under the real ``Client``: you script what
each RPC answers (a response, a function of the request, or an error with a reason) and
read back every request the client sent - so your code runs through the SDK's real
request building, conversions, idempotency keys and retries, without a server::

    from exchange.trading.v1 import trading_pb2
    from exchange_sdk.testing import FakeTransport, fake_client, unavailable

    fake = FakeTransport()
    fake.fail("PlaceOrder", unavailable(), times=1)  # the first attempt is lost
    fake.answer("PlaceOrder", lambda request: trading_pb2.PlaceOrderResponse(...))
    client = fake_client(fake, markets=[my_btc_usdt_spec])
    client.place_order("BTC-USDT", "buy", "0.01", price="50000")
    assert len(fake.requests("PlaceOrder")) == 2  # retried with the same client_order_id

``AsyncFakeTransport`` does the same for ``AsyncClient``. ``local_client`` connects a real
``Client`` to the local exchange (``infra/up.sh``) with a key from ``var/demo-keys.json``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import Message

from exchange_sdk._protocol import MarketCatalog, RpcCall
from exchange_sdk.async_client import AsyncClient
from exchange_sdk.client import Client
from exchange_sdk.config import resolve_settings
from exchange_sdk.errors import ExchangeError, UnavailableError, exchange_error
from exchange_sdk.models import MarketSpec
from exchange_sdk.transport import DEFAULT_RETRY, RetryPolicy

Answer = Message | Callable[[Message], Message]


def unavailable(message: str = "connection reset") -> UnavailableError:
    """What a lost connection looks like to the client (retried)."""
    return UnavailableError("UNAVAILABLE", message, code=grpc.StatusCode.UNAVAILABLE)


def rejection(reason: str, message: str = "", **metadata: str) -> ExchangeError:
    """The typed error the exchange would return with ``reason`` (e.g. INSUFFICIENT_BALANCE)."""
    return exchange_error(reason, message or reason.lower().replace("_", " "), metadata=metadata)


@dataclass(frozen=True)
class SentCall:
    method: str
    request: Message
    idempotency_key: str | None


class FakeTransport:
    """A scripted, recording stand-in for the gRPC transport (blocking)."""

    def __init__(self) -> None:
        self.calls: list[SentCall] = []
        self._answers: dict[str, Answer] = {}
        self._failures: dict[str, collections.deque[ExchangeError]] = {}
        self.closed = False
        self.retry: RetryPolicy = DEFAULT_RETRY

    @staticmethod
    def _name(method: str) -> str:
        return method.rsplit("/", 1)[-1]

    def answer(self, method: str, answer: Answer) -> None:
        """``method`` is the RPC's name (``PlaceOrder``); the answer a message or a function."""
        self._answers[self._name(method)] = answer

    def fail(self, method: str, error: ExchangeError, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (before any answer)."""
        queue = self._failures.setdefault(self._name(method), collections.deque())
        queue.extend([error] * times)

    def requests(self, method: str) -> list[Message]:
        name = self._name(method)
        return [call.request for call in self.calls if self._name(call.method) == name]

    def _respond(self, call: RpcCall) -> Message:
        name = self._name(call.method)
        self.calls.append(SentCall(call.method, call.request, call.idempotency_key))
        failures = self._failures.get(name)
        if failures:
            raise failures.popleft()
        answer = self._answers.get(name)
        if answer is None:
            raise exchange_error(
                "UNIMPLEMENTED",
                f"FakeTransport has no answer for {name}",
                code=grpc.StatusCode.UNIMPLEMENTED,
            )
        response = answer(call.request) if callable(answer) else answer
        if not isinstance(response, call.response_type):
            raise TypeError(f"the answer to {name} must be a {call.response_type.__name__}")
        return response

    def unary(self, call: RpcCall, *, timeout_seconds: float | None = None) -> Message:  # noqa: ARG002
        return self._with_retries(call)

    def _with_retries(self, call: RpcCall) -> Message:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._respond(call)
            except UnavailableError:
                if attempt >= self.retry.attempts_max:
                    raise

    def close(self) -> None:
        self.closed = True


class AsyncFakeTransport(FakeTransport):
    """``FakeTransport`` for ``AsyncClient``."""

    async def unary(  # type: ignore[override]
        self,
        call: RpcCall,
        *,
        timeout_seconds: float | None = None,  # noqa: ARG002
    ) -> Message:
        return self._with_retries(call)

    async def close(self) -> None:  # type: ignore[override]
        self.closed = True


def fake_client(transport: FakeTransport, *, markets: Iterable[MarketSpec] = ()) -> Client:
    """A real ``Client`` over ``transport``, with the market specs it should know."""
    return Client("fake", transport=transport, catalog=MarketCatalog(markets))


def fake_async_client(
    transport: AsyncFakeTransport, *, markets: Iterable[MarketSpec] = ()
) -> AsyncClient:
    return AsyncClient("fake", transport=transport, catalog=MarketCatalog(markets))


def local_client(
    key_name: str = "demo-alice",
    *,
    keys_file: str | Path = "var/demo-keys.json",
    endpoint: str | None = None,
    markets: Iterable[MarketSpec] = (),
) -> Client:
    """A signed ``Client`` for the local exchange, with a key its ``up`` stored."""
    settings = resolve_settings(
        endpoint=endpoint, keys_file=str(keys_file), key_name=key_name, environment={}
    )
    credentials = settings.credentials
    if credentials is None:
        raise FileNotFoundError(f"no keys file at {keys_file}: start the local exchange first")
    return Client(
        settings.endpoint,
        api_key=credentials.key_id,
        api_secret=credentials.secret,
        markets=markets,
    )
