"""exchange.core.v1.CoreAdminService: reference data, modes, snapshots, hashes, reconciliation.

Every call requires an operator identity (`x-exchange-operator-id`): OPERATOR_REQUIRED
otherwise. State changes are commands through the command intake.

- CreateAsset / CreateMarket are idempotent on the state: listing what is already listed with
  the same rules answers success without logging anything (so a retry after a restart works);
  other rules are ASSET_ALREADY_EXISTS / MARKET_ALREADY_EXISTS. A market with an
  `initial_mode` is created and switched in ONE batch (one WAL append, consecutive seqs).
- SetMarketMode's `request_id` is durable: the engine keeps it per operator, in the WAL and
  the snapshots (ADR 0016); a retry answers the mode it set and the seq it was applied at.
  PlaceCanaryTrade's orders are keyed by client order ids derived from its `request_id`
  (durable); its answer is also remembered in memory (idempotent_responses.py).
- TakeSnapshot: the state hash and the snapshot are taken in the same event-loop step, so the
  hash is the one of the snapshot written at the returned seq.
- GetStateHash / GetEngineBalances at a seq: core/service/historical_state.py.
- GetProjectionSnapshot: core/service/projection_snapshot.py (docs/adr/0017).
- PlaceCanaryTrade: the canary maker (`exchange:canary-maker`) posts a post-only SELL of the
  market's minimum quantity at the best free price (the reference price, or one tick below the
  best ask), and the canary taker (`exchange:canary-taker`) buys it IOC at that price, in ONE
  batch. Both accounts must be funded by operators beforehand (deposits); with no free price
  the maker's post-only order is rejected POST_ONLY_WOULD_TAKE and nothing trades.
"""

from __future__ import annotations

from typing import Final

from exchange.common.v1 import errors_pb2
from exchange.core.v1 import core_admin_pb2, core_admin_pb2_grpc

from core.contracts import markets, validation
from core.contracts.enums import MARKET_MODE
from core.engine import (
    CancelOrder,
    Command,
    Engine,
    MarketMode,
    OrderType,
    PlaceOrder,
    SetMarketMode,
    Side,
    TimeInForce,
    TradeExecuted,
)
from core.service.errors import ServiceError
from core.service.identity import Context, caller_operator
from core.service.projection_snapshot import projection_snapshot
from core.service.rpc import unary
from core.service.runtime import CoreRuntime

CANARY_MAKER_ACCOUNT_ID: Final = "exchange:canary-maker"
CANARY_TAKER_ACCOUNT_ID: Final = "exchange:canary-taker"
_SYMBOL_UNKNOWN: Final = errors_pb2.ERROR_REASON_SYMBOL_UNKNOWN


class CoreAdminServicer(core_admin_pb2_grpc.CoreAdminServiceServicer):
    def __init__(self, runtime: CoreRuntime) -> None:
        self._runtime = runtime

    async def _submit(self, commands: list[Command], metadata: dict[str, str]) -> int:
        """Submit; the first rejection is the error; returns the last engine seq."""
        results = await self._runtime.intake.submit(commands)
        for result in results:
            if result.outcome.reason is not None:
                raise ServiceError.rejected(result.outcome.reason, metadata)
        return results[-1].outcome.engine_seq

    def _market(self, symbol: str) -> core_admin_pb2.CreateMarketResponse:
        view = self._runtime.sequencer.engine.market(symbol)
        if view is None:
            raise ServiceError(_SYMBOL_UNKNOWN, "no such market", {"symbol": symbol})
        return core_admin_pb2.CreateMarketResponse(
            market=markets.market_message(view), engine_seq=self._runtime.sequencer.engine_seq
        )

    @unary
    async def CreateAsset(  # noqa: N802
        self, request: core_admin_pb2.CreateAssetRequest, context: Context
    ) -> core_admin_pb2.CreateAssetResponse:
        caller_operator(context)
        command = markets.create_asset(request)
        sequencer = self._runtime.sequencer
        if sequencer.engine.assets().get(command.asset) == command.scale:
            engine_seq = sequencer.engine_seq
        else:
            engine_seq = await self._submit([command], {"asset": command.asset})
        return core_admin_pb2.CreateAssetResponse(
            asset=markets.asset_message(command.asset, command.scale), engine_seq=engine_seq
        )

    @unary
    async def CreateMarket(  # noqa: N802
        self, request: core_admin_pb2.CreateMarketRequest, context: Context
    ) -> core_admin_pb2.CreateMarketResponse:
        caller_operator(context)
        command, initial_mode = markets.create_market(request)
        symbol = command.spec.symbol
        existing = self._runtime.sequencer.engine.market(symbol)
        if existing is None or existing.spec != command.spec:
            commands: list[Command] = [command]
            if initial_mode is not MarketMode.NORMAL:
                commands.append(SetMarketMode(symbol=symbol, mode=initial_mode))
            await self._submit(commands, {"symbol": symbol})
        return self._market(symbol)

    @unary
    async def SetMarketMode(  # noqa: N802
        self, request: core_admin_pb2.SetMarketModeRequest, context: Context
    ) -> core_admin_pb2.SetMarketModeResponse:
        command = markets.set_market_mode(caller_operator(context), request)
        engine_seq = await self._submit([command], {"symbol": command.symbol})
        view = self._runtime.sequencer.engine.market(command.symbol)
        if view is None:
            raise ServiceError(_SYMBOL_UNKNOWN, "no such market", {"symbol": command.symbol})
        # What the command did (a retry answers the same): its mode and its seq.
        return core_admin_pb2.SetMarketModeResponse(
            market=markets.market_spec_message(
                view.spec, command.mode, reference_price=view.reference_price
            ),
            engine_seq=engine_seq,
        )

    @unary
    async def TakeSnapshot(  # noqa: N802
        self,
        request: core_admin_pb2.TakeSnapshotRequest,  # noqa: ARG002  (empty)
        context: Context,
    ) -> core_admin_pb2.TakeSnapshotResponse:
        caller_operator(context)
        sequencer = self._runtime.sequencer
        # No await between the hash and the snapshot's capture (its first step is synchronous).
        state_hash = sequencer.engine.state_hash()
        hashed_seq = sequencer.engine_seq
        engine_seq = await sequencer.snapshot()
        if engine_seq != hashed_seq:
            msg = f"snapshot at {engine_seq} but hash at {hashed_seq}"
            raise RuntimeError(msg)
        response = core_admin_pb2.TakeSnapshotResponse(engine_seq=engine_seq, state_hash=state_hash)
        response.taken_at.FromNanoseconds(self._runtime.clock())
        return response

    @unary
    async def GetStateHash(  # noqa: N802
        self, request: core_admin_pb2.GetStateHashRequest, context: Context
    ) -> core_admin_pb2.GetStateHashResponse:
        caller_operator(context)
        return await self._runtime.historical.read_at(
            request.at_engine_seq,
            lambda engine, engine_seq, _last_event_engine_seq: core_admin_pb2.GetStateHashResponse(
                engine_seq=engine_seq, state_hash=engine.state_hash()
            ),
        )

    @unary
    async def GetEngineBalances(  # noqa: N802
        self, request: core_admin_pb2.GetEngineBalancesRequest, context: Context
    ) -> core_admin_pb2.GetEngineBalancesResponse:
        caller_operator(context)
        account_id = validation.optional_text(
            request.account_id, "account_id", validation.ACCOUNT_ID_LENGTH_MAX
        )
        asset = validation.optional_asset(request.asset)

        def read(
            engine: Engine, engine_seq: int, last_event_engine_seq: int
        ) -> core_admin_pb2.GetEngineBalancesResponse:
            views = (
                list(engine.balances(account_id).values()) if account_id else engine.all_balances()
            )
            return core_admin_pb2.GetEngineBalancesResponse(
                engine_seq=engine_seq,
                last_event_engine_seq=last_event_engine_seq,
                balances=[
                    markets.engine_balance_message(view)
                    for view in views
                    if not asset or view.asset == asset
                ],
            )

        return await self._runtime.historical.read_at(request.at_engine_seq, read)

    @unary
    async def GetProjectionSnapshot(  # noqa: N802
        self,
        request: core_admin_pb2.GetProjectionSnapshotRequest,  # noqa: ARG002  (empty)
        context: Context,
    ) -> core_admin_pb2.GetProjectionSnapshotResponse:
        caller_operator(context)
        runtime = self._runtime
        # One step, no await: the state and the outbox's position belong together.
        return projection_snapshot(
            runtime.sequencer.engine,
            engine_seq=runtime.sequencer.engine_seq,
            shard_id=runtime.shard_id,
            position=runtime.published_position(),
            clock_ns=runtime.clock,
        )

    @unary
    async def GetEngineStatus(  # noqa: N802
        self,
        request: core_admin_pb2.GetEngineStatusRequest,  # noqa: ARG002  (empty)
        context: Context,
    ) -> core_admin_pb2.GetEngineStatusResponse:
        caller_operator(context)
        runtime = self._runtime
        sequencer = runtime.sequencer
        engine = sequencer.engine
        response = core_admin_pb2.GetEngineStatusResponse(
            shard_id=runtime.shard_id,
            epoch=sequencer.epoch,
            engine_seq=sequencer.engine_seq,
            durable_engine_seq=sequencer.durable_engine_seq,
            published_engine_seq=runtime.published_engine_seq(),
            snapshot_engine_seq=sequencer.snapshot_seq,
            last_event_engine_seq=runtime.history_sink.last_event_engine_seq,
        )
        for symbol in engine.symbols():
            view = engine.market(symbol)
            if view is not None:
                response.markets.add(
                    symbol=symbol,
                    seq=view.seq,
                    mode=MARKET_MODE.to_proto(view.mode),
                )
        return response

    @unary
    async def PlaceCanaryTrade(  # noqa: N802
        self, request: core_admin_pb2.PlaceCanaryTradeRequest, context: Context
    ) -> core_admin_pb2.PlaceCanaryTradeResponse:
        operator_id = caller_operator(context)
        symbol = validation.symbol(request.symbol)
        request_id = validation.idempotency_key(request.request_id, "request_id")

        async def execute() -> core_admin_pb2.PlaceCanaryTradeResponse:
            return await self._canary_trade(symbol, request_id)

        return await self._runtime.responses.run(
            operator_id, "PlaceCanaryTrade", request_id, request, execute
        )

    async def _canary_trade(
        self, symbol: str, request_id: str
    ) -> core_admin_pb2.PlaceCanaryTradeResponse:
        maker, taker = self._canary_orders(symbol, request_id)
        maker_result, taker_result = await self._runtime.intake.submit([maker, taker])
        metadata = {"symbol": symbol, "price": str(maker.price)}
        if maker_result.outcome.reason is not None:
            raise ServiceError.rejected(maker_result.outcome.reason, metadata)
        if taker_result.outcome.reason is not None:
            await self._runtime.intake.submit(
                [
                    CancelOrder(
                        account_id=CANARY_MAKER_ACCOUNT_ID, order_id=maker_result.outcome.order_id
                    )
                ]
            )
            raise ServiceError.rejected(taker_result.outcome.reason, metadata)
        # A retry (the places are duplicates, no events): the fill the first taker made.
        trades = [
            (event.trade_id, event.price, event.quantity, event.engine_seq)
            for event in taker_result.events
            if type(event) is TradeExecuted
        ] or [
            (fill.trade_id, fill.price, fill.quantity, fill.engine_seq)
            for fill in self._runtime.history.fills_of(CANARY_TAKER_ACCOUNT_ID, taker_result)
        ]
        if not trades:
            msg = "the canary taker did not trade with the canary maker"
            raise RuntimeError(msg)
        trade_id, price, quantity, engine_seq = trades[0]
        return core_admin_pb2.PlaceCanaryTradeResponse(
            trade_id=str(trade_id),
            symbol=symbol,
            price=price,
            quantity=quantity,
            engine_seq=engine_seq,
        )

    def _canary_orders(self, symbol: str, request_id: str) -> tuple[PlaceOrder, PlaceOrder]:
        """The canary's two orders. Their client order ids derive from `request_id`, so the
        engine deduplicates them durably: a retry (also after a restart) resubmits the logged
        orders (not a new price from today's book), and the same key for another market is
        IDEMPOTENCY_KEY_REUSED."""
        engine = self._runtime.sequencer.engine
        length_max = validation.CLIENT_ORDER_ID_LENGTH_MAX
        maker_id = f"canary:{request_id}:maker"[:length_max]
        taker_id = f"canary:{request_id}:taker"[:length_max]
        known_maker = engine.placed_order_request(CANARY_MAKER_ACCOUNT_ID, maker_id)
        known_taker = engine.placed_order_request(CANARY_TAKER_ACCOUNT_ID, taker_id)
        if known_maker is not None and known_taker is not None:
            if known_maker.symbol != symbol:
                raise ServiceError(
                    errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_REUSED,
                    "request_id was used before with another request",
                    {"request_id": request_id},
                )
            return known_maker, known_taker
        view = engine.market(symbol)
        depth = engine.book_depth(symbol, levels_max=1)
        if view is None or depth is None:
            raise ServiceError(_SYMBOL_UNKNOWN, "no such market", {"symbol": symbol})
        price = view.reference_price
        if depth.asks and depth.asks[0].price <= price:
            price = depth.asks[0].price - view.spec.price_tick
        quantity = view.spec.min_quantity
        maker = PlaceOrder(
            account_id=CANARY_MAKER_ACCOUNT_ID,
            symbol=symbol,
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            quantity=quantity,
            price=price,
            post_only=True,
            client_order_id=maker_id,
        )
        taker = PlaceOrder(
            account_id=CANARY_TAKER_ACCOUNT_ID,
            symbol=symbol,
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            quantity=quantity,
            price=price,
            time_in_force=TimeInForce.IOC,
            client_order_id=taker_id,
        )
        return maker, taker
