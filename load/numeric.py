"""Numeric against EC1 verification throughput, in one run against one server (issue 15: target >= 0.8).

    ECARD_DATABASE_URL=... ECARD_REDIS_URL=... python load/numeric.py [--seconds 5] [--pool 4000]

The harness of load/run.py (its server, clients and drivers); each form's codes are pre-minted and each request
pre-signed before its timed loop, and the two loops alternate twice (EC1, numeric, EC1, numeric), so that both
meet the same machine. Prints both rates, the app's CPU per request and the ratios; writes load/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from actors import set_up
from drive import Job, run
from prebuild import CODES, Factory, mint_codes
from report import save, table
from scenarios import QUICK, Bench
from server import ecard_cli, forget_redis_keys, service_env, serving

NUMERIC = b'{"form":"numeric"}'
TARGET = 0.8


def mint_numeric(factory: Factory, count: int, conns: int) -> list[str]:
    devices = itertools.cycle(factory.cast.devices)
    requests = [factory.signed(next(devices), CODES, NUMERIC) for _ in range(count)]
    outcome = run(Job(factory.port, requests, expected=201, conns=conns, keep_bodies=True))
    if set(outcome.statuses) - {201}:
        raise RuntimeError(f"pre-minting numeric codes: {dict(outcome.statuses)} {outcome.unexpected}")
    return [str(json.loads(body)["code"]) for body in outcome.bodies]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each timed loop")
    parser.add_argument("--pool", type=int, default=4000, help="codes pre-minted for each loop")
    args = parser.parse_args(argv)
    plan = dataclasses.replace(QUICK, verify_s=args.seconds)
    with tempfile.TemporaryDirectory(prefix="ecard-load-") as folder:
        env = service_env(Path(folder) / "data")
        try:
            if env.get("ECARD_DATABASE_URL"):
                ecard_cli(env, "migrate")
            with serving(env) as server:
                factory = Factory(set_up(server.base_url, env, plan.devices), server.port)
                bench = Bench(server, factory, plan, env.get("ECARD_DATABASE_URL"), None)
                scenarios: dict[str, dict[str, Any]] = {}
                for round_ in (1, 2):
                    ec1, _ = mint_codes(factory, args.pool + plan.warmup, plan.conns)
                    scenarios[f"ec1_{round_}"] = bench.timed(
                        f"ec1_{round_}", factory.verifications(ec1), 200, plan.verify_s
                    )
                    numeric = mint_numeric(factory, args.pool + plan.warmup, plan.conns)
                    scenarios[f"numeric_{round_}"] = bench.timed(
                        f"numeric_{round_}", factory.verifications(numeric), 200, plan.verify_s
                    )
        finally:
            forget_redis_keys(env)
    rps = {form: sum(scenarios[f"{form}_{r}"]["rps"] for r in (1, 2)) / 2 for form in ("ec1", "numeric")}
    cpu = {
        form: sum(scenarios[f"{form}_{r}"]["server_cpu_ms_per_req"] for r in (1, 2)) / 2 for form in ("ec1", "numeric")
    }
    ratio = rps["numeric"] / rps["ec1"]
    by_cpu = cpu["ec1"] / cpu["numeric"]
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenarios": scenarios,
        "ratios": {
            "numeric_over_ec1": {"value": round(ratio, 3), "target": TARGET, "met": ratio >= TARGET},
            "numeric_over_ec1_by_cpu": round(by_cpu, 3),
        },
    }
    sys.stdout.write(table(scenarios) + "\n")
    sys.stdout.write(
        f"numeric / EC1 verification: {ratio:.3f} (target {TARGET}: {'met' if ratio >= TARGET else 'NOT met'});"
        f" by app CPU per request {by_cpu:.3f}\n"
    )
    sys.stdout.write(f"results: {save(results, time.strftime('%Y%m%dT%H%M%S') + '-numeric')}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
