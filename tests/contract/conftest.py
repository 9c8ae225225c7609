"""Fixtures over the generated contracts: every file, service, method and message of ours."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
from collections.abc import Iterator

import exchange
import pytest
from google.protobuf.descriptor import Descriptor, FileDescriptor, MethodDescriptor

from tests.paths import PROTO_ROOT, REPO_ROOT


def _our_files() -> list[FileDescriptor]:
    files: dict[str, FileDescriptor] = {}
    for module_info in pkgutil.walk_packages(exchange.__path__, "exchange."):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        descriptor: FileDescriptor = module.DESCRIPTOR
        files[descriptor.name] = descriptor
    return [files[name] for name in sorted(files)]


def _walk_messages(messages: list[Descriptor]) -> Iterator[Descriptor]:
    for message in messages:
        yield message
        yield from _walk_messages(list(message.nested_types))


@pytest.fixture(scope="session")
def proto_files() -> list[FileDescriptor]:
    files = _our_files()
    proto_sources = sorted(
        p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto")
    )
    # The generated package must hold exactly the sources: nothing missing, nothing stale.
    assert [f.name for f in files] == proto_sources
    return files


@pytest.fixture(scope="session")
def all_methods(proto_files: list[FileDescriptor]) -> list[MethodDescriptor]:
    return [
        method
        for file in proto_files
        for service in file.services_by_name.values()
        for method in service.methods
    ]


@pytest.fixture(scope="session")
def all_messages(proto_files: list[FileDescriptor]) -> list[Descriptor]:
    return [
        message
        for file in proto_files
        for message in _walk_messages(list(file.message_types_by_name.values()))
    ]


@pytest.fixture(scope="session")
def buf_executable() -> str:
    found = shutil.which("buf")
    if found is None:
        venv_buf = REPO_ROOT / ".venv" / "bin" / "buf"
        if not venv_buf.exists():
            pytest.fail("buf is not installed: run infra/bootstrap.sh")
        found = str(venv_buf)
    return found
