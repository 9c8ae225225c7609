"""Journal rows in PostgreSQL's COPY text format, built as one string per batch.

Building the payload with str.join is several times cheaper in CPython than a `write_row`
call per row; settlement and the benchmark's COPY ceiling use the same encoder, so the two
differ only in what settlement does beyond copying.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from ledger.journal import AccountKey, PlannedEntry

ENTRIES_COPY: Final = (
    "COPY journal_entries (entry_id, kind, reference, leg_count, source_event_id, shard_id, "
    "symbol, seq, engine_seq, epoch, transfer_id, occurred_at, memo) FROM STDIN"
)
POSTINGS_COPY: Final = "COPY postings (entry_id, leg, account_id, amount) FROM STDIN"

_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    return value.translate(_ESCAPES)


def entries_text(entries: Sequence[PlannedEntry], entry_ids: Sequence[int]) -> str:
    lines = []
    for entry, entry_id in zip(entries, entry_ids, strict=True):
        occurred_at = "\\N" if entry.occurred_at is None else entry.occurred_at.isoformat()
        texts = (
            entry.reference,
            entry.source_event_id,
            entry.shard_id,
            entry.symbol,
            entry.transfer_id,
            entry.memo,
        )
        joined = "".join(texts)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
            reference, source_event_id, shard_id, symbol, transfer_id, memo = map(_text, texts)
        else:  # nearly always: nothing to escape, one scan instead of six translations
            reference, source_event_id, shard_id, symbol, transfer_id, memo = texts
        lines.append(
            f"{entry_id}\t{int(entry.kind)}\t{reference}\t{len(entry.postings)}\t"
            f"{source_event_id}\t{shard_id}\t{symbol}\t{entry.seq}\t{entry.engine_seq}\t"
            f"{entry.epoch}\t{transfer_id}\t{occurred_at}\t{memo}\n"
        )
    return "".join(lines)


def postings_text(
    entries: Iterable[PlannedEntry], entry_ids: Iterable[int], account_ids: Mapping[AccountKey, int]
) -> str:
    lines = []
    for entry, entry_id in zip(entries, entry_ids, strict=True):
        for leg, (account, amount) in enumerate(entry.postings):
            lines.append(f"{entry_id}\t{leg}\t{account_ids[account]}\t{amount}\n")
    return "".join(lines)
