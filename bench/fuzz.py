"""The long fuzz: schemathesis over every REST route (tests/support/rest_fuzz.py) against a
fresh local exchange, then the descriptor-generated gRPC hostile messages over every method
of every service, through Envoy and on each service's own port. Prints the counts per
status / reason and per route, and the gRPC codes.

    .venv/bin/python bench/fuzz.py --cases-per-operation 400 --seed 1

Exits 1 when an aim is not met: a response >= 500, a refusal without an ErrorInfo.reason,
or a gRPC answer of UNKNOWN / INTERNAL (ADR 0015).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter

from exchange.apikey.v1 import apikey_pb2  # noqa: F401 - registers the services' descriptors
from exchange.core.v1 import core_admin_pb2  # noqa: F401
from exchange.funding.v1 import funding_pb2  # noqa: F401
from exchange.ledger.v1 import ledger_pb2  # noqa: F401
from exchange.marketdata.v1 import marketdata_pb2  # noqa: F401
from exchange.trading.v1 import trading_pb2  # noqa: F401

from infra.local.components import DEMO_SYMBOLS, markets_listed
from tests.support.grpc_hostile import is_fault, probe
from tests.support.local_stack import local_stack, wait_until
from tests.support.rest_fuzz import RestFuzzer

SERVICES_BY_PORT = {
    "core": [
        "exchange.trading.v1.TradingService",
        "exchange.funding.v1.FundingService",
        "exchange.core.v1.CoreAdminService",
    ],
    "ledger": ["exchange.ledger.v1.LedgerService"],
    "gateway_grpc": [
        "exchange.marketdata.v1.MarketDataService",
        "exchange.apikey.v1.ApiKeyService",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases-per-operation", type=int, default=400)
    parser.add_argument("--seed", type=int, default=None)
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    print(f"seed {seed}", flush=True)
    failed = False
    with local_stack() as stack:
        stack.environment["EDGE_RATE_LIMIT_PER_MINUTE"] = "100000000"
        started = time.monotonic()
        stack.up()
        wait_until(
            "the edge lists the markets",
            lambda: markets_listed(stack.edge_url, DEMO_SYMBOLS),
            timeout_seconds=60,
        )
        print(f"stack up in {time.monotonic() - started:.1f} s", flush=True)
        keys = stack.keys()
        fuzzer = RestFuzzer(stack.edge_url, trader=keys["demo-alice"], operator=keys["operator"])
        report = fuzzer.run(arguments.cases_per_operation, seed=seed)
        print("REST:")
        print("\n".join(report.lines()))
        for exchange in report.server_errors + report.refusals_without_reason:
            print(f"  ! {exchange.route} {exchange.target[:120]} {exchange.status}")
            print(f"    {exchange.body[:300]!r}")
        failed |= bool(report.server_errors or report.refusals_without_reason)

        addresses = {
            "core": stack.core_address,
            "ledger": stack.ledger_address,
            "gateway_grpc": stack.gateway_grpc_address,
            "streaming": f"127.0.0.1:{stack.ports.streaming}",
        }
        print("gRPC (hostile messages per method, on each service's port):")
        for name, services in SERVICES_BY_PORT.items():
            outcomes = probe(addresses[name], services)
            codes = Counter(outcome.code.name for outcome in outcomes)
            faults = [outcome for outcome in outcomes if is_fault(outcome)]
            print(
                f"  {name}: {len(outcomes)} calls over "
                f"{len({o.method for o in outcomes})} methods, "
                f"{dict(sorted(codes.items()))}, {len(faults)} without a reason or a server fault"
            )
            for fault in faults:
                print(f"  ! {fault}")
            failed |= bool(faults)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
