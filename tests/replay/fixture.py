"""The replay-equivalence fixture: a committed WAL, a snapshot in its middle, and what the
engine made of them when they were written (docs/adr/0021-replay-equivalence-gate.md).

    tests/replay/fixture/wal/          the WAL segments (core.wal.log, as the core writes them)
    tests/replay/fixture/snapshots/    the engine's snapshot at `snapshot_engine_seq`
    tests/replay/fixture/expected.json the state hash at the snapshot and at the end, and the
                                       digest of every command's outcome and event envelopes

`replay()` applies the committed WAL to the current engine and computes the same figures;
tests/replay/test_replay_equivalence.py fails on any difference. When the engine's behaviour
changes on purpose, regenerate in the same commit and say why there:

    .venv/bin/python -m tests.replay.fixture --write
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from core.contracts.event_wire import EnvelopeSerializer
from core.contracts.events import market_specs_of
from core.engine import Engine, EngineConfig
from core.engine.commands import Command
from core.engine.results import ApplyResult
from core.sequencer.codec import decode_command, encode_command
from core.wal.log import WriteAheadLog
from core.wal.snapshots import SnapshotStore
from tests.replay.workload import ENGINE_CONFIG, TIMESTAMP_NS_START, Workload

FIXTURE_DIRECTORY: Final = Path(__file__).parent / "fixture"
SEED: Final = 20261207
COMMAND_COUNT: Final = 20_000
SHARD_ID: Final = "replay"
EPOCH: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFigures:
    """What an engine made of the fixture's commands."""

    engine_seq: int
    snapshot_engine_seq: int
    state_hash_at_snapshot: str
    state_hash: str
    outcome_digest: str  # every command's outcome, in engine order
    event_digest: str  # every command's event envelopes as the outbox journals them
    event_count: int


class _Digests:
    """Running sha256 digests of outcomes and event envelopes, command by command."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.outcomes = hashlib.sha256()
        self.events = hashlib.sha256()
        self.event_count = 0
        self.serializer = EnvelopeSerializer(
            shard_id=SHARD_ID, epoch=EPOCH, market_spec=market_specs_of(engine)
        )

    def add(self, command: Command, result: ApplyResult) -> None:
        outcome = result.outcome
        line = (
            f"{outcome.engine_seq}|{outcome.reason}|{outcome.order_id}|{outcome.status}|"
            f"{outcome.filled_quantity}|{','.join(map(str, outcome.cancelled_order_ids))}|"
            f"{outcome.priority_kept}|{result.duplicate}\n"
        )
        self.outcomes.update(line.encode())
        for envelope in self.serializer(result.events, command=command):
            self.events.update(len(envelope).to_bytes(4, "big"))
            self.events.update(envelope)
            self.event_count += 1


def _timestamps() -> Iterable[int]:
    timestamp_ns = TIMESTAMP_NS_START
    step = 1
    while True:
        step = (step * 1_103_515_245 + 12_345) % 2**31  # deterministic, uneven gaps
        timestamp_ns += 1_000 + step % 5_000_000
        yield timestamp_ns


def write(directory: Path, *, seed: int = SEED, command_count: int = COMMAND_COUNT) -> None:
    """Generate the commands, apply them, and write the WAL, the snapshot and expected.json
    into `directory` (replacing what is there)."""
    if directory.exists():
        shutil.rmtree(directory)
    engine = Engine(ENGINE_CONFIG)
    workload = Workload(engine, seed=seed)
    digests = _Digests(engine)
    store = SnapshotStore(directory / "snapshots", keep_count=1)
    snapshot_after = command_count // 2
    state_hash_at_snapshot = ""
    engine_seq = 0
    with WriteAheadLog.open(directory / "wal", epoch=EPOCH) as wal:
        for command, timestamp_ns in zip(
            workload.commands(command_count), _timestamps(), strict=False
        ):
            engine_seq = wal.append([encode_command(command, timestamp_ns=timestamp_ns)])[0]
            digests.add(
                command, engine.apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)
            )
            if workload.counter == snapshot_after and not state_hash_at_snapshot:
                store.write(engine_seq, engine.snapshot())
                state_hash_at_snapshot = engine.state_hash()
                snapshot_engine_seq = engine_seq
        wal.sync()
    engine.check_invariants()
    figures = ReplayFigures(
        engine_seq=engine_seq,
        snapshot_engine_seq=snapshot_engine_seq,
        state_hash_at_snapshot=state_hash_at_snapshot,
        state_hash=engine.state_hash(),
        outcome_digest=digests.outcomes.hexdigest(),
        event_digest=digests.events.hexdigest(),
        event_count=digests.event_count,
    )
    expected = {
        "seed": seed,
        "command_count": command_count,
        "engine_config": dataclasses.asdict(ENGINE_CONFIG),
        "shard_id": SHARD_ID,
        "epoch": EPOCH,
        **dataclasses.asdict(figures),
    }
    (directory / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def expected(directory: Path = FIXTURE_DIRECTORY) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "expected.json").read_text())
    return data


def _working_copy(directory: Path, into: Path) -> Path:
    """Opening a WAL recovers and may write: replay a copy, never the committed files."""
    target = into / "wal"
    shutil.copytree(directory / "wal", target)
    return target


def commands(directory: Path, into: Path) -> list[tuple[int, Command, int]]:
    """(engine_seq, command, timestamp_ns) of every record of the fixture's WAL."""
    with WriteAheadLog.open(_working_copy(directory, into), epoch=EPOCH) as wal:
        records = list(wal.replay())
    decoded = []
    for record in records:
        command = decode_command(record.payload)
        decoded.append((record.seq, command.command, command.timestamp_ns))
    return decoded


def replay(
    directory: Path = FIXTURE_DIRECTORY,
    *,
    into: Path,
    engine_type: type[Engine] = Engine,
) -> ReplayFigures:
    """The current engine's figures over the fixture's WAL, from seq 1 (`into`: a scratch
    directory). `engine_type` lets a test prove the gate sees a changed engine."""
    config = EngineConfig(**expected(directory)["engine_config"])
    engine = engine_type(config)
    digests = _Digests(engine)
    snapshot_engine_seq = SnapshotStore(directory / "snapshots").engine_seqs()[-1]
    state_hash_at_snapshot = ""
    engine_seq = 0
    for engine_seq, command, timestamp_ns in commands(directory, into):
        digests.add(
            command, engine.apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)
        )
        if engine_seq == snapshot_engine_seq:
            state_hash_at_snapshot = engine.state_hash()
    engine.check_invariants()
    return ReplayFigures(
        engine_seq=engine_seq,
        snapshot_engine_seq=snapshot_engine_seq,
        state_hash_at_snapshot=state_hash_at_snapshot,
        state_hash=engine.state_hash(),
        outcome_digest=digests.outcomes.hexdigest(),
        event_digest=digests.events.hexdigest(),
        event_count=digests.event_count,
    )


def replay_from_snapshot(directory: Path = FIXTURE_DIRECTORY, *, into: Path) -> tuple[str, str]:
    """(the committed snapshot's state hash once decoded by the current engine, the state
    hash after the WAL records that follow it): the restart path of the core."""
    store = SnapshotStore(directory / "snapshots")
    snapshot_engine_seq = store.engine_seqs()[-1]
    engine = Engine.from_snapshot(store.load(snapshot_engine_seq).state_bytes)
    restored_hash = engine.state_hash()
    for engine_seq, command, timestamp_ns in commands(directory, into):
        if engine_seq > snapshot_engine_seq:
            engine.apply(command, engine_seq=engine_seq, timestamp_ns=timestamp_ns)
    return restored_hash, engine.state_hash()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate the committed fixture")
    parser.add_argument("--directory", type=Path, default=FIXTURE_DIRECTORY)
    arguments = parser.parse_args()
    if arguments.write:
        write(arguments.directory)
    with tempfile.TemporaryDirectory() as scratch:
        figures = replay(arguments.directory, into=Path(scratch))
    print(json.dumps(dataclasses.asdict(figures), indent=2))


if __name__ == "__main__":
    main()
