"""The character set of every identifier a client chooses (client order ids, request ids,
transfer ids, account ids, API key ids): one rule for the core, the ledger and the edge.

NUL, control characters and anything outside printable ASCII are refused (ADR 0015): they
would travel into logs, the event log and PostgreSQL text, which cannot hold a NUL.
"""

from __future__ import annotations

import re
from typing import Final

ID_CHARACTERS: Final = "A-Za-z0-9._:-"
_IDENTIFIER: Final = re.compile(f"[{ID_CHARACTERS}]+")


def is_identifier(value: str) -> bool:
    """Only `ID_CHARACTERS` (printable ASCII letters, digits and `._:-`)."""
    return _IDENTIFIER.fullmatch(value) is not None
