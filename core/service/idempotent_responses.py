"""Answers of mutating calls keyed by `request_id`, so a retry returns the original answer.

Since ADR 0016 the engine deduplicates cancel, amend, cancel-all and market-mode requests
durably (the key is in the command, the WAL and the snapshots). This in-memory layer is left
only in front of PlaceCanaryTrade (whose two orders are durable by client order ids derived
from its key): concurrent calls with the same key share one execution.

- keyed by (operator, method, request_id), compared on the request's deterministic
  serialization; the same key with another body fails IDEMPOTENCY_KEY_REUSED;
- system failures (UNAVAILABLE, INTERNAL) are not remembered: they mean "not acknowledged";
- bounded: `keys_max_per_caller` per caller, FIFO eviction;
- in memory only: after a restart the canary's retry is answered by the engine's tables.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar, cast

from exchange.common.v1 import errors_pb2
from google.protobuf.message import Message

from core.service.errors import ServiceError, is_retryable

KEYS_MAX_PER_CALLER_DEFAULT: Final = 10_000

ResponseT = TypeVar("ResponseT", bound=Message)


class IdempotentResponses:
    def __init__(self, *, keys_max_per_caller: int = KEYS_MAX_PER_CALLER_DEFAULT) -> None:
        if keys_max_per_caller < 1:
            raise ValueError("keys_max_per_caller must be positive")
        self._keys_max = keys_max_per_caller
        self._answers: dict[
            str, OrderedDict[tuple[str, str], tuple[bytes, asyncio.Future[Message]]]
        ] = {}

    async def run(
        self,
        caller: str,
        method: str,
        request_id: str,
        request: Message,
        execute: Callable[[], Awaitable[ResponseT]],
    ) -> ResponseT:
        """The remembered answer for this key, or `execute()`'s (remembered unless a system
        failure)."""
        body = request.SerializeToString(deterministic=True)
        answers = self._answers.setdefault(caller, OrderedDict())
        key = (method, request_id)
        known = answers.get(key)
        if known is not None:
            known_body, future = known
            if known_body != body:
                raise ServiceError(
                    errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_REUSED,
                    "request_id was used before with another request",
                    {"request_id": request_id},
                )
            return cast(ResponseT, await asyncio.shield(future))
        future = asyncio.get_running_loop().create_future()
        answers[key] = (body, future)
        if len(answers) > self._keys_max:
            answers.popitem(last=False)
        try:
            response = await execute()
        except ServiceError as error:
            if is_retryable(error):
                answers.pop(key, None)
            future.set_exception(error)
            future.exception()
            raise
        except BaseException as error:
            answers.pop(key, None)
            future.set_exception(
                error
                if isinstance(error, Exception)
                else ServiceError(
                    errors_pb2.ERROR_REASON_ENGINE_UNAVAILABLE, "the first attempt was interrupted"
                )
            )
            future.exception()
            raise
        future.set_result(response)
        return response
