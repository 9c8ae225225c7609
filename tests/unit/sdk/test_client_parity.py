"""`Client` and `AsyncClient` are one API in two shells (exchange_sdk/_protocol.py): the same
public methods with the same parameters (names, kinds, defaults, annotations) and the same
return annotations, each sync type standing for its async counterpart. Every async method is
a coroutine function except `stream_orders`, which hands back the stream at once (its `send`
is awaited). The order streams keep the same parity.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest
from exchange_sdk import AsyncClient, AsyncOrderStream, Client, OrderStream

# A sync type name -> the name the async shell uses in its place.
ASYNC_COUNTERPARTS = {
    "Client": "AsyncClient",
    "GrpcTransport": "AsyncGrpcTransport",
    "OrderStream": "AsyncOrderStream",
    "Transport": "AsyncTransport",
}
# The context-manager protocol: sync method -> async method.
CONTEXT_METHODS = {"__enter__": "__aenter__", "__exit__": "__aexit__"}
# Async methods that return at once (an object whose own methods are awaited).
NOT_COROUTINES = {"stream_orders"}

PAIRS = [(Client, AsyncClient), (OrderStream, AsyncOrderStream)]


def _as_async(annotation: Any) -> Any:
    """A sync annotation (a string: the SDK uses postponed annotations) in the async shell's
    words."""
    if not isinstance(annotation, str):
        return annotation
    return re.sub(
        r"\b(" + "|".join(ASYNC_COUNTERPARTS) + r")\b",
        lambda match: ASYNC_COUNTERPARTS[match.group(1)],
        annotation,
    )


def _public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def _shape(function: Callable[..., Any], *, as_async: bool) -> list[tuple[Any, ...]]:
    """(name, kind, default, annotation) per parameter, then the return annotation."""
    signature = inspect.signature(function)
    convert = _as_async if as_async else (lambda annotation: annotation)
    parameters: list[tuple[Any, ...]] = [
        (parameter.name, parameter.kind, parameter.default, convert(parameter.annotation))
        for parameter in signature.parameters.values()
    ]
    return [*parameters, ("return", convert(signature.return_annotation))]


@pytest.mark.parametrize(("sync_class", "async_class"), PAIRS, ids=lambda cls: cls.__name__)
def test_both_shells_have_the_same_public_methods(sync_class: type, async_class: type) -> None:
    assert sorted(_public_methods(sync_class)) == sorted(_public_methods(async_class))
    for sync_name, async_name in CONTEXT_METHODS.items():
        assert callable(getattr(sync_class, sync_name, None)), sync_name
        assert callable(getattr(async_class, async_name, None)), async_name


@pytest.mark.parametrize(("sync_class", "async_class"), PAIRS, ids=lambda cls: cls.__name__)
def test_each_method_has_the_same_signature(sync_class: type, async_class: type) -> None:
    pairs = [(name, name) for name in sorted(_public_methods(sync_class))]
    pairs += [("__init__", "__init__"), *CONTEXT_METHODS.items()]
    differences = {
        sync_name: (
            _shape(getattr(sync_class, sync_name), as_async=True),
            _shape(getattr(async_class, async_name), as_async=False),
        )
        for sync_name, async_name in pairs
        if _shape(getattr(sync_class, sync_name), as_async=True)
        != _shape(getattr(async_class, async_name), as_async=False)
    }
    assert differences == {}


@pytest.mark.parametrize(("sync_class", "async_class"), PAIRS, ids=lambda cls: cls.__name__)
def test_the_async_methods_are_awaited_and_the_sync_ones_are_not(
    sync_class: type, async_class: type
) -> None:
    for name, method in _public_methods(sync_class).items():
        assert not inspect.iscoroutinefunction(method), name
        async_method = _public_methods(async_class)[name]
        assert inspect.iscoroutinefunction(async_method) is (name not in NOT_COROUTINES), name
    for sync_name, async_name in CONTEXT_METHODS.items():
        assert not inspect.iscoroutinefunction(getattr(sync_class, sync_name)), sync_name
        assert inspect.iscoroutinefunction(getattr(async_class, async_name)), async_name
