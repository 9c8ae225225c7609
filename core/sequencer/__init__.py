"""The sequencer of the trading core: orders commands, logs them durably, applies them.

Public API: `Sequencer` (open/recover, submit, snapshot, replay_check, close), its options and
reports, the named errors, and the WAL command codec. See core/sequencer/README.md.
"""

from __future__ import annotations

from core.sequencer.codec import (
    CodecError,
    CommandEncodeError,
    DecodedCommand,
    MalformedPayloadError,
    UnknownCommandTypeError,
    UnknownFormatVersionError,
    decode_command,
    encode_command,
)
from core.sequencer.sequencer import (
    SNAPSHOT_EVERY_COMMANDS_DEFAULT,
    Clock,
    EventSink,
    EventSinkStart,
    RecoveryError,
    ReplayCheck,
    ReplayMismatchError,
    ReplayUnavailableError,
    Sequencer,
    SequencerClosedError,
    SequencerError,
    SequencerFailedError,
    SequencerInvariantError,
    SequencerOptions,
    SequencerRecovery,
)

__all__ = [
    "SNAPSHOT_EVERY_COMMANDS_DEFAULT",
    "Clock",
    "CodecError",
    "CommandEncodeError",
    "DecodedCommand",
    "EventSink",
    "EventSinkStart",
    "MalformedPayloadError",
    "RecoveryError",
    "ReplayCheck",
    "ReplayMismatchError",
    "ReplayUnavailableError",
    "Sequencer",
    "SequencerClosedError",
    "SequencerError",
    "SequencerFailedError",
    "SequencerInvariantError",
    "SequencerOptions",
    "SequencerRecovery",
    "UnknownCommandTypeError",
    "UnknownFormatVersionError",
    "decode_command",
    "encode_command",
]
