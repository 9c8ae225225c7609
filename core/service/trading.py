"""exchange.trading.v1.TradingService: order entry, the trader's orders, fills and balances.

Every call acts for the account in `x-exchange-account-id` (core/service/identity.py); an
order of another account is ORDER_NOT_FOUND, never a permission error. Commands go through
the CommandIntake (acknowledged after the WAL fsync); queries read the live engine and the
order history. Business rejections of unary calls are errors with the engine's reason; in the
stream they are per-command `CommandError`s and the batch succeeds.

StreamOrders, the high-throughput path: each request batch (at most 10,000 commands) is
converted in one pass, submitted as ONE intake call (one WAL append, one group commit) and
answered by one response batch, in order. Up to `STREAM_BATCHES_IN_FLIGHT` batches of one
stream are in flight at once (the next batch is converted and logged while the previous one
waits for its fsync); responses keep the request order, and so does the WAL. A result's
order is the summary form (`orders.fill_order_summary_with_outcome`: identity, terms, status
and progress as the command left it; no timestamps or fee totals, which GetOrder / ListFills
give), written in one pass per result. Unary order entry goes through
`CommandIntake.submit_one`, which coalesces the calls of one event-loop iteration.

Idempotency (ADR 0016): places by client order id, cancels / amends / cancel-alls by
`request_id`, all deduplicated by the engine, durably (WAL and snapshots), unary and streamed
alike; an answer is built from the command's outcome, so a retry answers what the first did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Final

from exchange.common.v1 import errors_pb2
from exchange.trading.v1 import trading_pb2, trading_pb2_grpc

from common.request_decoding import UndecodableRequest
from core.contracts import orders, validation
from core.contracts.enums import ORDER_STATUS
from core.contracts.errors import RequestError, rejection_reason
from core.contracts.markets import balance_message
from core.contracts.orders import FillRecord, OrderCommand
from core.engine import ApplyResult, Outcome
from core.service.errors import ServiceError
from core.service.identity import Context, caller_account
from core.service.paging import fill_page
from core.service.rpc import abort, unary
from core.service.runtime import CoreRuntime

STREAM_BATCHES_IN_FLIGHT: Final = 4

_ORDER_NOT_FOUND: Final = errors_pb2.ERROR_REASON_ORDER_NOT_FOUND


def _not_found(order_id: str) -> ServiceError:
    return ServiceError(_ORDER_NOT_FOUND, "no such order", {"order_id": order_id})


def _rejected(result: ApplyResult, metadata: dict[str, str]) -> ServiceError | None:
    reason = result.outcome.reason
    return None if reason is None else ServiceError.rejected(reason, metadata)


class TradingServicer(trading_pb2_grpc.TradingServiceServicer):
    def __init__(self, runtime: CoreRuntime) -> None:
        self._runtime = runtime
        self._intake = runtime.intake
        self._history = runtime.history

    # ------------------------------------------------------------------ helpers

    async def _submit_one(self, command: OrderCommand, metadata: dict[str, str]) -> ApplyResult:
        result = await self._intake.submit_one(command)
        error = _rejected(result, metadata)
        if error is not None:
            raise error
        return result

    def _write_order(self, message: trading_pb2.Order, account_id: str, order_id: int) -> None:
        """The account's order into `message`: from the history, else what the engine still
        knows (a recently closed order's status), else just the id."""
        record = self._history.order(account_id, order_id)
        if record is not None:
            orders.fill_order_message(message, record)
            return
        message.order_id = str(order_id)
        message.account_id = account_id
        status = self._runtime.sequencer.engine.closed_order_status(account_id, order_id)
        if status is not None:
            message.status = ORDER_STATUS.to_proto(status)  # type: ignore[assignment]

    def _known_order(self, account_id: str, order_id: int) -> bool:
        return (
            self._history.order(account_id, order_id) is not None
            or self._runtime.sequencer.engine.closed_order_status(account_id, order_id) is not None
        )

    def _order_id_of(self, account_id: str, client_order_id: str) -> int:
        order_id = self._history.order_id_of(account_id, client_order_id)
        if order_id:
            return order_id
        for view in self._runtime.sequencer.engine.open_orders(account_id):
            if view.client_order_id == client_order_id:
                return view.order_id
        return 0

    @staticmethod
    def _add_fills(target: Sequence[FillRecord], fills: object) -> None:
        add = fills.add  # type: ignore[attr-defined]
        for fill in target:
            orders.fill_fill_message(add(), fill)

    # ------------------------------------------------------------------ order entry

    @unary
    async def PlaceOrder(  # noqa: N802
        self, request: trading_pb2.PlaceOrderRequest, context: Context
    ) -> trading_pb2.PlaceOrderResponse:
        account_id = caller_account(context)
        command = orders.place_order(account_id, request)
        result = await self._submit_one(
            command, {"symbol": command.symbol, "client_order_id": command.client_order_id}
        )
        response = trading_pb2.PlaceOrderResponse()
        self._write_order(response.order, account_id, result.outcome.order_id)
        orders.write_outcome(response.order, result.outcome)
        fills = self._history.fills_of(account_id, result)
        orders.write_placement_progress(response.order, fills)
        self._add_fills(fills, response.fills)
        return response

    @unary
    async def CancelOrder(  # noqa: N802
        self, request: trading_pb2.CancelOrderRequest, context: Context
    ) -> trading_pb2.CancelOrderResponse:
        account_id = caller_account(context)
        command = orders.cancel_order(account_id, request)
        result = await self._submit_one(
            command, {"order_id": request.order_id, "client_order_id": request.client_order_id}
        )
        response = trading_pb2.CancelOrderResponse()
        self._write_order(response.order, account_id, result.outcome.order_id)
        return response

    @unary
    async def AmendOrder(  # noqa: N802
        self, request: trading_pb2.AmendOrderRequest, context: Context
    ) -> trading_pb2.AmendOrderResponse:
        account_id = caller_account(context)
        command = orders.amend_order(account_id, request)
        result = await self._submit_one(command, {"order_id": request.order_id})
        # Written from the outcome the same way first and on a retry (ADR 0016): status,
        # progress and seq as the amend left them, its fills, priority_kept.
        response = trading_pb2.AmendOrderResponse(priority_kept=result.outcome.priority_kept)
        self._write_order(response.order, account_id, result.outcome.order_id)
        orders.write_outcome(response.order, result.outcome)
        self._add_fills(self._history.fills_of(account_id, result), response.fills)
        return response

    @unary
    async def CancelAllOrders(  # noqa: N802
        self, request: trading_pb2.CancelAllOrdersRequest, context: Context
    ) -> trading_pb2.CancelAllOrdersResponse:
        account_id = caller_account(context)
        command = orders.cancel_all_orders(account_id, request)
        result = await self._submit_one(command, {"symbol": request.symbol})
        response = trading_pb2.CancelAllOrdersResponse()
        for order_id in result.outcome.cancelled_order_ids:
            self._write_order(response.cancelled_orders.add(), account_id, order_id)
        return response

    # ------------------------------------------------------------------ queries

    @unary
    async def GetOrder(  # noqa: N802
        self, request: trading_pb2.GetOrderRequest, context: Context
    ) -> trading_pb2.GetOrderResponse:
        account_id = caller_account(context)
        order_id, client_order_id = validation.order_reference(
            request.order_id, request.client_order_id
        )
        if client_order_id:
            order_id = self._order_id_of(account_id, client_order_id)
        if not order_id or not self._known_order(account_id, order_id):
            raise _not_found(request.order_id or request.client_order_id)
        response = trading_pb2.GetOrderResponse()
        self._write_order(response.order, account_id, order_id)
        return response

    @unary
    async def ListOrders(  # noqa: N802
        self, request: trading_pb2.ListOrdersRequest, context: Context
    ) -> trading_pb2.ListOrdersResponse:
        account_id = caller_account(context)
        page_size = validation.page_size(request.page_size)
        records = self._history.orders(
            account_id,
            symbol=validation.optional_symbol(request.symbol),
            open_only=request.open_only,
            below_order_id=validation.page_cursor(request.page_token),
        )
        response = trading_pb2.ListOrdersResponse()
        response.next_page_token = fill_page(
            records,
            page_size,
            lambda record: record.order_id,
            lambda record: orders.fill_order_message(response.orders.add(), record),
        )
        return response

    @unary
    async def ListFills(  # noqa: N802
        self, request: trading_pb2.ListFillsRequest, context: Context
    ) -> trading_pb2.ListFillsResponse:
        account_id = caller_account(context)
        page_size = validation.page_size(request.page_size)
        fills = self._history.fills(
            account_id,
            symbol=validation.optional_symbol(request.symbol),
            order_id=validation.order_id(request.order_id) if request.order_id else 0,
            below_trade_id=validation.page_cursor(request.page_token),
        )
        response = trading_pb2.ListFillsResponse()
        response.next_page_token = fill_page(
            fills,
            page_size,
            lambda fill: fill.trade_id,
            lambda fill: orders.fill_fill_message(response.fills.add(), fill),
        )
        return response

    @unary
    async def ListAccountBalances(  # noqa: N802
        self, request: trading_pb2.ListAccountBalancesRequest, context: Context
    ) -> trading_pb2.ListAccountBalancesResponse:
        account_id = caller_account(context)
        asset = validation.optional_asset(request.asset)
        sequencer = self._runtime.sequencer
        response = trading_pb2.ListAccountBalancesResponse(engine_seq=sequencer.engine_seq)
        for view in sequencer.engine.balances(account_id).values():
            if not asset or view.asset == asset:
                response.balances.append(balance_message(view))
        return response

    # ------------------------------------------------------------------ the stream

    async def StreamOrders(  # noqa: N802
        self,
        request_iterator: AsyncIterator[trading_pb2.StreamOrdersRequest],
        context: Context,
    ) -> AsyncIterator[trading_pb2.StreamOrdersResponse]:
        try:
            account_id = caller_account(context)
        except ServiceError as error:
            await abort(context, error)
            return
        in_flight: asyncio.Queue[asyncio.Future[trading_pb2.StreamOrdersResponse] | None] = (
            asyncio.Queue(STREAM_BATCHES_IN_FLIGHT)
        )
        reader = asyncio.get_running_loop().create_task(
            self._read_batches(account_id, request_iterator, in_flight)
        )
        try:
            while (task := await in_flight.get()) is not None:
                try:
                    response = await task
                except UndecodableRequest:
                    raise  # refused by the DecodeErrorInterceptor's wrapper
                except Exception as error:  # noqa: BLE001  (answered by name, stream ends)
                    await abort(context, error)
                    return
                yield response
            await reader  # re-raises a failure of the reader itself
        finally:
            reader.cancel()

    async def _read_batches(
        self,
        account_id: str,
        request_iterator: AsyncIterator[trading_pb2.StreamOrdersRequest],
        in_flight: asyncio.Queue[asyncio.Future[trading_pb2.StreamOrdersResponse] | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for batch in request_iterator:
                # The batch is converted and handed to the intake right here, so batches
                # are logged in stream order; the task only waits for durability and answers.
                try:
                    task = self._answer_batch(account_id, batch)
                except Exception as error:  # noqa: BLE001  (e.g. BATCH_TOO_LARGE)
                    task = loop.create_task(_raise(error))
                await in_flight.put(task)
        except UndecodableRequest as refused:
            # Answered after the batches before it, in the stream's own task.
            await in_flight.put(loop.create_task(_raise(refused)))
        await in_flight.put(None)

    def _answer_batch(
        self, account_id: str, batch: trading_pb2.StreamOrdersRequest
    ) -> asyncio.Future[trading_pb2.StreamOrdersResponse]:
        """Convert and submit now (synchronously: the intake call starts at once); the
        returned awaitable answers once the batch is durable."""
        orders.batch_size(batch)
        convert = orders.place_order
        commands: list[OrderCommand] = []
        slots: list[RequestError | None] = []
        for item in batch.commands:
            try:
                if item.HasField("place"):
                    command: OrderCommand = convert(account_id, item.place)
                else:
                    command = orders.order_command(account_id, item)
            except RequestError as error:
                slots.append(error)
                continue
            commands.append(command)
            slots.append(None)
        submitted = asyncio.ensure_future(self._intake.submit(commands)) if commands else None
        return asyncio.ensure_future(self._respond(account_id, batch.batch_id, slots, submitted))

    async def _respond(
        self,
        account_id: str,
        batch_id: str,
        slots: list[RequestError | None],
        submitted: asyncio.Future[list[ApplyResult]] | None,
    ) -> trading_pb2.StreamOrdersResponse:
        results = await submitted if submitted is not None else []
        response = trading_pb2.StreamOrdersResponse(batch_id=batch_id)
        history = self._history
        by_id = history.records_by_order_id
        write_summary = orders.fill_order_summary_with_outcome
        add_result = response.results.add
        position = 0
        for slot in slots:
            item = add_result()
            if slot is not None:
                _write_request_error(item.error, slot)
                continue
            result = results[position]
            position += 1
            outcome = result.outcome
            if outcome.reason is not None:
                _write_rejection(item.error, outcome)
                continue
            cancelled = outcome.cancelled_order_ids
            if cancelled:
                order_id = cancelled[-1]
                item.cancelled_count = len(cancelled)
            else:
                order_id = outcome.order_id
            if order_id:
                record = by_id.get(order_id)
                if record is None or record.account_id != account_id:
                    record = history.order(account_id, order_id)  # evicted: the engine's view
                if record is not None:
                    write_summary(item.order, record, outcome)
                else:
                    self._write_order(item.order, account_id, order_id)
                    orders.write_outcome(item.order, outcome)
            else:
                orders.write_outcome(item.order, outcome)
            if len(result.events) > 2 or result.duplicate:
                self._add_fills(history.fills_of(account_id, result), item.fills)
        response.engine_seq = (
            max(result.outcome.engine_seq for result in results)
            if results
            else self._runtime.sequencer.engine_seq
        )
        return response


def _write_request_error(error: errors_pb2.CommandError, refused: RequestError) -> None:
    error.reason = refused.reason
    error.message = refused.message
    if refused.field:
        error.metadata["field"] = refused.field


def _write_rejection(error: errors_pb2.CommandError, outcome: Outcome) -> None:
    reason = outcome.reason
    if reason is None:
        return
    error.reason = rejection_reason(reason)
    error.message = reason.name
    if outcome.order_id:
        error.metadata["order_id"] = str(outcome.order_id)


async def _raise(error: Exception) -> trading_pb2.StreamOrdersResponse:
    raise error
