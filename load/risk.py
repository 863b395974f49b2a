"""Verification with the risk rules on against off, in one run (issue 14, item 3: target on/off >= 0.9).

    ECARD_DATABASE_URL=... ECARD_REDIS_URL=... python load/risk.py [--rounds 3] [--seconds 5] [--devices 40]

Two `ecard serve` of this one tree side by side, `on` (the default, ECARD_RISK_RULES=1) and `off`
(ECARD_RISK_RULES=0), each with its own database (`<db>_ecard_risk_on` / `_off`, plus ECARD_LOAD_DB_SUFFIX), Redis
prefix and cardholders. Rounds of closed-loop verification alternate (on, off, off, on, ...) so that neighbours
on a shared machine disturb both alike; before each round both app processes must be idle, and after each the
tool waits for that side's app to go idle and adds the CPU it used meanwhile (the rules draining their queue) to
the round's, so that leftover work is charged to `on` and never to the `off` round after it. Every
accepted verification feeds the rules: the per-card step in Redis (`velocity` window, last place); `wl-030`
discloses no name or ID number and the load terminal has no registered place, so `merchant_harvest` and the
`impossible_travel` distance are not exercised.
Prints req/s and the app's CPU ms per verification, counting its CPU after the round until idle (medians over
rounds), the ratios on/off, and what the rules did (`ecard_risk_events_total`, `ecard_risk_dropped_total` from
`/metrics`); writes load/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from actors import set_up
from prebuild import Factory
from report import save
from scenarios import QUICK, Bench
from server import LONG_LIVED, Server, ecard_cli, forget_redis_keys, load_database, serving

SIDES = {"on": "1", "off": "0"}
TARGET = 0.9
# a side is idle when its app process used less than this share of a core over one probe
IDLE_SHARE = 0.05
IDLE_PROBE_S = 0.5
IDLE_BUDGET_S = 30.0
RISK_METRIC = re.compile(r"^(ecard_risk_(?:events|dropped)_total)(\{[^}]*\})? ([0-9.e+]+)$", re.MULTILINE)


def _env(side: str, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    if not (env.get("ECARD_DATABASE_URL") and env.get("ECARD_REDIS_URL")):
        raise SystemExit("risk.py needs ECARD_DATABASE_URL and ECARD_REDIS_URL (a configured PostgreSQL and Redis)")
    env.update(LONG_LIVED)
    env.update(
        ECARD_LOAD_ECHO="1",
        ECARD_RISK_RULES=SIDES[side],
        ECARD_REDIS_PREFIX=f"ecardrisk:{side}:{secrets.token_hex(4)}:",
        ECARD_DATA_DIR=str(data_dir),
    )
    env["ECARD_DATABASE_URL"] = load_database(env["ECARD_DATABASE_URL"], f"_ecard_risk_{side}")
    return env


@contextlib.contextmanager
def _side(side: str, folder: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = _env(side, folder / side)
    try:
        ecard_cli(env, "migrate")
        with serving(env) as server:
            yield server, env
    finally:
        forget_redis_keys(env)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _wait_idle(processes: list[psutil.Process]) -> tuple[float, list[float]]:
    """Wait until every app process is idle (capped at IDLE_BUDGET_S): the seconds waited, and the CPU seconds each
    process used meanwhile."""
    started = time.monotonic()
    first = [_cpu_s(p) for p in processes]
    while time.monotonic() - started < IDLE_BUDGET_S:
        before = [_cpu_s(p) for p in processes]
        time.sleep(IDLE_PROBE_S)
        if max(_cpu_s(p) - b for p, b in zip(processes, before, strict=True)) < IDLE_SHARE * IDLE_PROBE_S:
            break
    return time.monotonic() - started, [_cpu_s(p) - f for p, f in zip(processes, first, strict=True)]


def _risk_metrics(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return {f"{name}{labels or ''}": float(value) for name, labels, value in RISK_METRIC.findall(text)}


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating closed-loop rounds per side")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--devices", type=int, default=40, help="cardholders (one device each) per side")
    args = parser.parse_args(argv)
    plan = dataclasses.replace(QUICK, verify_s=args.seconds, devices=args.devices)
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="ecard-risk-") as tmp:
        folder = Path(tmp)
        with _side("on", folder) as (on, on_env), _side("off", folder) as (off, off_env):
            servers = {"on": on, "off": off}
            benches = {}
            for side, server, env in (("on", on, on_env), ("off", off, off_env)):
                benches[side] = Bench(
                    server,
                    Factory(set_up(server.base_url, env, plan.devices), server.port),
                    plan,
                    env["ECARD_DATABASE_URL"],
                    None,
                )
                benches[side].mint(plan.warmup)
            apps = [bench.app for bench in benches.values()]
            order = list(SIDES)
            for i in range(args.rounds):
                for side in order if i % 2 == 0 else order[::-1]:
                    _wait_idle(apps)
                    result = benches[side].verification()
                    # what the app did after the round's last answer until idle (the rules draining their queue)
                    waited, (drain_cpu_s,) = _wait_idle([benches[side].app])
                    result["drain_s"] = round(waited, 1)
                    result["drain_cpu_ms_per_req"] = round(1000 * drain_cpu_s / max(result["requests"], 1), 3)
                    result["cpu_ms_per_req_with_drain"] = (
                        result["server_cpu_ms_per_req"] + result["drain_cpu_ms_per_req"]
                    )
                    rounds[side].append(result)
                    print(f"round {i + 1} {side}: {_brief(result)}", flush=True)
            did = {side: _risk_metrics(servers[side]) for side in SIDES}
    rps = {side: _median(rounds[side], "rps") for side in SIDES}
    cpu = {side: _median(rounds[side], "cpu_ms_per_req_with_drain") for side in SIDES}
    ratio, by_cpu = rps["on"] / rps["off"], cpu["off"] / cpu["on"]
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rounds": rounds,
        "risk_metrics": did,
        "ratios": {
            "risk_on_over_off": {"value": round(ratio, 3), "target": TARGET, "met": ratio >= TARGET},
            "risk_on_over_off_by_cpu": round(by_cpu, 3),
        },
    }
    verdict = "met" if ratio >= TARGET else "NOT met"
    lines = [
        (
            f"\nrisk rules on / off, medians of {args.rounds} alternating rounds of {args.seconds:g} s, "
            f"{args.devices} cards a side"
        ),
        (
            f"verification req/s            on {rps['on']:.0f}  off {rps['off']:.0f}  on/off {ratio:.3f}"
            f" (target >= {TARGET}: {verdict})"
        ),
        f"app CPU ms/verification (+ drain) on {cpu['on']:.3f}  off {cpu['off']:.3f}  off/on {by_cpu:.3f}",
        f"what the rules did (on): {did['on']}",
        f"the same (off): {did['off']}",
        f"results: {save(results, time.strftime('%Y%m%dT%H%M%S') + '-risk')}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _brief(s: dict[str, Any]) -> str:
    return (
        f"{s['rps']:.0f} req/s, cpu {s['server_cpu_ms_per_req']:.3f} ms/req, p99 {s['latency_ms']['p99']:.2f} ms,"
        f" non-expected {s['unexpected']}; after it {s['drain_cpu_ms_per_req']:.3f} ms/req in {s['drain_s']:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
