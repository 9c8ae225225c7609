"""The garbage collector's settings for the ledger's processes (the service and its planner)."""

from __future__ import annotations

import gc

# Young collections every 2,000 allocations, full ones practically never (as the core does,
# core/service/server.py): settlement allocates ~10 objects per event, and with the default
# thresholds the collector traversing a batch's live objects cost as much as the posting
# rules themselves (docs/adr/0010).
GC_THRESHOLDS = (2_000, 5, 1_000_000)


def tune_garbage_collector() -> None:
    """Freeze what start-up allocated and raise the collection thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
