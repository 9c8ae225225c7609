"""`python -m infra.local.resident_parent COMMAND...`: run COMMAND as a child and stay its
parent until it exits, passing SIGTERM and SIGINT on; exits with its exit code.

Envoy asks the kernel for SIGTERM when its parent exits (PR_SET_PDEATHSIG), so a detached
Envoy started by the short-lived `python -m infra.local.stack up` stopped as soon as `up`
returned. Under this resident parent it lives until `down` signals the parent (and, should
the parent be killed, Envoy stops with it rather than lingering unseen).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from types import FrameType


def main(command: list[str]) -> int:
    if not command:
        sys.exit("usage: python -m infra.local.resident_parent COMMAND [ARGUMENT...]")
    child = subprocess.Popen(command)

    def forward(signal_number: int, _frame: FrameType | None) -> None:
        child.send_signal(signal_number)

    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
