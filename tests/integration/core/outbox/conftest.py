"""A Kafka-API broker whose data survives its own restart: Tansu on S3 storage, the S3
being moto's server (PyPI `moto[server]`, in memory, a separate process that outlives the
broker's restarts)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from infra.local.kafka_broker import TansuBroker
from infra.local.ports import free_port, wait_for_port

BUCKET = "tansu"


@pytest.fixture
def s3_kafka_broker() -> Iterator[TansuBroker]:
    port = free_port()
    s3_server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_seconds=30)
        endpoint = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        environment = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "outbox-test",
            "AWS_SECRET_ACCESS_KEY": "outbox-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
        }
        with TansuBroker(storage=f"s3://{BUCKET}/", environment=environment) as broker:
            yield broker
    finally:
        s3_server.terminate()
        s3_server.wait(timeout=10)
