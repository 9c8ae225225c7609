"""The one way commands reach the sequencer, and results reach listeners in WAL order.

`CommandIntake.submit(commands)` hands the batch to `Sequencer.submit` (durable before it
returns: one WAL group commit per batch) and then delivers `(commands, results)` to every
listener — the order history, and whatever else wants the results (the outbox can be one) —
strictly in the order the batches were logged, before the submitter sees its results.

Why a ticket: concurrent submitters resume in any order after their batches are applied (a
submitter whose WAL write completes may apply an earlier parked batch and return first), but
listeners must see batches in seq order (a trade refers to the order it fills). Batches enter
the WAL in the order of `Sequencer.submit` calls — each call starts its internal task at once
and tasks first run in creation order — so the intake numbers its calls and releases
deliveries by number. A failed batch releases its number without a delivery. The submission
runs in its own task: a cancelled caller cannot leave a hole in the delivery order.

`submit_one(command)` is the unary calls' way in: the commands of every call that arrives in
the same event-loop iteration are coalesced into ONE `submit` (one sequencer task, one WAL
append) scheduled with `call_soon`, and each caller gets its own result. A failure of the
coalesced batch (a WAL or sequencer failure, nothing acknowledged) is every caller's failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from core.engine import ApplyResult, Command
from core.sequencer import Sequencer
from core.service.errors import LOGGER, ServiceError, service_error

ResultsListener = Callable[[Sequence[Command], Sequence[ApplyResult]], None]
"""Called synchronously, in WAL order, with every logged batch and its results."""

_Finished = tuple[
    Sequence[Command], "asyncio.Task[list[ApplyResult]]", "asyncio.Future[list[ApplyResult]]"
]

PENDING_TICKETS_MAX: Final = 1_000_000


class CommandIntake:
    """Submits through the sequencer; feeds listeners in WAL order. Event-loop owned."""

    def __init__(self, sequencer: Sequencer, listeners: Sequence[ResultsListener] = ()) -> None:
        self.sequencer = sequencer
        self._listeners = list(listeners)
        self._ticket_next = 0
        self._ticket_delivered = 0
        self._finished: dict[int, _Finished] = {}
        self._coalesced: list[tuple[Command, asyncio.Future[ApplyResult]]] = []

    def add_listener(self, listener: ResultsListener) -> None:
        self._listeners.append(listener)

    async def submit(self, commands: Sequence[Command]) -> list[ApplyResult]:
        """Log and apply `commands`; their results, after every listener saw them.

        Raises `ServiceError` (system reasons: not acknowledged, retry with the same key).
        """
        loop = asyncio.get_running_loop()
        ticket = self._ticket_next
        self._ticket_next += 1
        task = loop.create_task(self.sequencer.submit(commands))
        delivered: asyncio.Future[list[ApplyResult]] = loop.create_future()
        delivered.add_done_callback(_retrieve)
        task.add_done_callback(lambda done: self._finish(ticket, commands, done, delivered))
        try:
            return await asyncio.shield(delivered)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise service_error(error) from error

    async def submit_one(self, command: Command) -> ApplyResult:
        """`submit([command])`, coalesced with the other single commands of this loop
        iteration into one batch (see the module docstring)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ApplyResult] = loop.create_future()
        if not self._coalesced:
            loop.call_soon(self._submit_coalesced)
        self._coalesced.append((command, future))
        return await future

    def _submit_coalesced(self) -> None:
        waiting, self._coalesced = self._coalesced, []
        task = asyncio.get_running_loop().create_task(
            self.submit([command for command, _ in waiting])
        )
        task.add_done_callback(lambda done: _answer_each(done, waiting))

    def _finish(
        self,
        ticket: int,
        commands: Sequence[Command],
        task: asyncio.Task[list[ApplyResult]],
        delivered: asyncio.Future[list[ApplyResult]],
    ) -> None:
        self._finished[ticket] = (commands, task, delivered)
        while (finished := self._finished.pop(self._ticket_delivered, None)) is not None:
            self._ticket_delivered += 1
            self._deliver(*finished)

    def _deliver(
        self,
        commands: Sequence[Command],
        task: asyncio.Task[list[ApplyResult]],
        delivered: asyncio.Future[list[ApplyResult]],
    ) -> None:
        if task.cancelled():
            delivered.cancel()
            return
        error = task.exception()
        if error is not None:
            delivered.set_exception(error)
            return
        results = task.result()
        try:
            for listener in self._listeners:
                listener(commands, results)
        except Exception as listener_error:  # noqa: BLE001  (a bug; the commands are durable)
            LOGGER.error("a results listener failed", exc_info=listener_error)
            delivered.set_exception(listener_error)
            return
        delivered.set_result(results)

    @property
    def pending_count(self) -> int:
        """Batches submitted and not yet delivered."""
        return self._ticket_next - self._ticket_delivered


def _answer_each(
    task: asyncio.Task[list[ApplyResult]],
    waiting: list[tuple[Command, asyncio.Future[ApplyResult]]],
) -> None:
    """Hand each caller of a coalesced batch its result (or the batch's failure)."""
    error = None if task.cancelled() else task.exception()
    results = task.result() if not task.cancelled() and error is None else None
    for index, (_, future) in enumerate(waiting):
        if future.done():  # the caller was cancelled; its command was still logged
            continue
        if results is not None:
            future.set_result(results[index])
        elif error is not None:  # a fresh error per caller: each raise grows a traceback
            future.set_exception(
                ServiceError(error.reason, error.message, error.metadata)
                if isinstance(error, ServiceError)
                else error
            )
        else:
            future.cancel()


def _retrieve(future: asyncio.Future[list[ApplyResult]]) -> None:
    if not future.cancelled():
        future.exception()  # a cancelled caller must not leave "exception never retrieved"
