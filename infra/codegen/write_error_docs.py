"""Writes docs/api/errors.md from proto/exchange/common/v1/errors.proto.

The table is generated, so it cannot drift from the contract: each reason with
its gRPC code, the HTTP status Envoy answers with, and the comment above it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
}
_VALUE = re.compile(
    r"^\s*ERROR_REASON_([A-Z0-9_]+) = (\d+) \[\(status_code\) = ([A-Z_]+)"
    r"(?:, \(http_status\) = (\d+))?\];"
)
_SECTION = re.compile(r"^\s*// ---- (.+) ----")
_COMMENT = re.compile(r"^\s*// ?(.*)")

_HEADER = """# Error reasons

Generated from `proto/exchange/common/v1/errors.proto` by
`infra/codegen/write_error_docs.py`; do not edit by hand.

Every error carries a `google.rpc.ErrorInfo` with `domain = "exchange"` and
`reason` = one of the names below. REST clients get the HTTP status through
Envoy and the same reason in the JSON error body; gRPC clients read it from the
status details. See `docs/adr/0003-errors.md`.

Every refusal has one JSON shape, Envoy's own replies included (unknown route,
transcoder and codec errors, an unreachable service; `docs/adr/0015-hostile-input-at-the-edge.md`):

```json
{"code": 3, "message": "DUPLICATE_FIELD: 'price' is set twice",
 "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
              "reason": "DUPLICATE_FIELD", "domain": "exchange", "metadata": {"field": "price"}}]}
```

Identifiers (`client_order_id`, `request_id`, `transfer_id`, `Idempotency-Key`, account
ids, symbols, asset codes) are 1..max characters of `[A-Za-z0-9._:-]` (client_order_id
64, symbol 32, asset 16, the others 128); anything else is `FIELD_INVALID` naming the
field. Free texts (memo, reason) refuse control characters. Integers travel as JSON
integers or strings of digits; JSON numbers with a fraction or an exponent are
`MALFORMED_REQUEST`. Header names outside `[0-9a-z_.-]` and header values outside
printable ASCII are `MALFORMED_REQUEST`.
"""


def render(proto_text: str) -> str:
    lines = [_HEADER]
    comment: list[str] = []
    for line in proto_text.splitlines():
        if section := _SECTION.match(line):
            lines += [
                "",
                f"## {section.group(1)}",
                "",
                "| reason | gRPC code | HTTP | meaning |",
                "|---|---|---|---|",
            ]
            comment = []
        elif value := _VALUE.match(line):
            name, _number, code, http_status = value.groups()
            if name != "UNSPECIFIED":
                meaning = " ".join(comment) or "-"
                http = http_status or _HTTP_STATUS[code]
                lines.append(f"| `{name}` | {code} | {http} | {meaning} |")
            comment = []
        elif text := _COMMENT.match(line):
            comment.append(text.group(1).strip())
        else:
            comment = []
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(source.read_text()), encoding="utf-8")
