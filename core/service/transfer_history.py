"""Recent transfers per account, as `exchange.funding.v1.Transfer` messages.

The engine deduplicates funding by transfer_id durably; it does not keep the transfer's
reference, operator or time. This window does, in memory, bounded per account (FIFO), for
GetTransfer / ListTransfers and for answering a retried funding call with the original
transfer. After a restart, a retry is still answered correctly from the engine's outcome
(with an empty reference); the durable history of transfers is the ledger's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

from exchange.funding.v1 import funding_pb2

TRANSFERS_MAX_PER_ACCOUNT_DEFAULT: Final = 10_000


class TransferHistory:
    def __init__(
        self, *, transfers_max_per_account: int = TRANSFERS_MAX_PER_ACCOUNT_DEFAULT
    ) -> None:
        if transfers_max_per_account < 1:
            raise ValueError("transfers_max_per_account must be positive")
        self._max = transfers_max_per_account
        self._transfers: dict[str, OrderedDict[str, funding_pb2.Transfer]] = {}

    def add(self, transfer: funding_pb2.Transfer) -> None:
        transfers = self._transfers.setdefault(transfer.account_id, OrderedDict())
        transfers[transfer.transfer_id] = transfer
        transfers.move_to_end(transfer.transfer_id)
        if len(transfers) > self._max:
            transfers.popitem(last=False)

    def get(self, account_id: str, transfer_id: str) -> funding_pb2.Transfer | None:
        transfers = self._transfers.get(account_id)
        return None if transfers is None else transfers.get(transfer_id)

    def find(self, transfer_id: str) -> funding_pb2.Transfer | None:
        """Any account's transfer with this id (operators); the newest if several."""
        found = [
            transfers[transfer_id]
            for transfers in self._transfers.values()
            if transfer_id in transfers
        ]
        return max(found, key=lambda transfer: transfer.engine_seq) if found else None

    def newest_first(self, account_id: str) -> Iterator[funding_pb2.Transfer]:
        """One account's transfers ('' : every account's), newest first."""
        if account_id:
            yield from reversed(self._transfers.get(account_id, {}).values())
            return
        everything = [
            transfer for transfers in self._transfers.values() for transfer in transfers.values()
        ]
        everything.sort(key=lambda transfer: transfer.engine_seq, reverse=True)
        yield from everything
