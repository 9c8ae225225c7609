"""The sequencer of the trading core: orders commands, logs them durably, applies them.

See core/sequencer/README.md for the design and its guarantees.
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

__all__ = [
    "CodecError",
    "CommandEncodeError",
    "DecodedCommand",
    "MalformedPayloadError",
    "UnknownCommandTypeError",
    "UnknownFormatVersionError",
    "decode_command",
    "encode_command",
]
