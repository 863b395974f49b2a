"""The measured scenarios: echo, verification, code issuance (JSON, PNG), fixed rate, memory, QR rendering."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sampling
from drive import Job, Outcome, run
from prebuild import PNG, Factory, mint_codes
from server import Server
from stats import Meter, figures, latency_ms, rss_mb

from ecard.kit import qr


@dataclass(frozen=True)
class Plan:
    """How long or how many of each scenario; every loop is bounded by time, by count, or both."""

    echo_s: float
    verify_s: float
    verify_cap: int
    json_s: float
    json_cap: int
    png_s: float
    png_cap: int
    fixed_s: float
    memory_n: int
    memory_step: int
    mint_budget_s: float
    memory_budget_s: float
    fixed_share: float = 0.7
    warmup: int = 500
    qr_n: int = 1000
    echo_cap: int = 1_500_000
    conns: int = 32
    procs: int = 1
    devices: int = 50
    crowd_conns: int = 1000
    crowd_s: float = 10


FULL = Plan(
    echo_s=15,
    verify_s=15,
    verify_cap=60_000,
    json_s=10,
    json_cap=60_000,
    png_s=10,
    png_cap=30_000,
    fixed_s=20,
    memory_n=100_000,
    memory_step=10_000,
    mint_budget_s=120,
    memory_budget_s=240,
)
QUICK = Plan(
    echo_s=5,
    verify_s=5,
    verify_cap=15_000,
    json_s=4,
    json_cap=15_000,
    png_s=4,
    png_cap=8_000,
    fixed_s=6,
    memory_n=10_000,
    memory_step=2_000,
    mint_budget_s=40,
    memory_budget_s=60,
    warmup=200,
    devices=20,
    crowd_s=5,
)
# Verification pools are sized from the rate codes were minted at; this much headroom over it.
POOL_HEADROOM = 2.5


class Bench:
    """Runs the scenarios against one server, each from requests built before its clock starts."""

    def __init__(
        self, server: Server, factory: Factory, plan: Plan, database_url: str | None, profile: Path | None
    ) -> None:
        self.app = server.app_process()
        self.factory = factory
        self.plan = plan
        self.database_url = database_url
        self.profile = profile
        self.mint_rps = 0.0
        self.profiles: dict[str, dict[str, Any]] = {}

    def mint(self, count: int) -> list[str]:
        codes, self.mint_rps = mint_codes(self.factory, count, self.plan.conns, self.plan.mint_budget_s)
        return codes

    def _job(self, requests: Sequence[bytes], expected: int, duration_s: float, rate: float = 0.0) -> Job:
        return Job(self.factory.port, requests, expected, self.plan.conns, duration_s, rate)

    def _sample(self, name: str, duration_s: float) -> sampling.Sampling | None:
        if self.profile is None or not math.isfinite(duration_s):
            return None
        return sampling.start(self.app.pid, duration_s - 1, self.profile / f"{name}.txt")

    def timed(self, name: str, requests: Sequence[bytes], expected: int, duration_s: float) -> dict[str, Any]:
        """Warm up on the first `warmup` requests (not counted), then drive the rest closed-loop and measure."""
        warm, rest = requests[: self.plan.warmup], requests[self.plan.warmup :]
        run(self._job(warm, expected, float("inf")), self.plan.procs)
        meter = Meter(self.app, self.database_url).start()
        sampler = self._sample(name, duration_s)
        outcome = run(self._job(rest, expected, duration_s), self.plan.procs)
        result = figures(outcome, expected, meter.read())
        result["exhausted"] = outcome.count >= len(rest)
        if sampler is not None:
            self.profiles[name] = sampler.finish()
        return result

    def echo(self, code: str) -> dict[str, Any]:
        request = self.factory.echo(code)
        return self.timed("echo", [request] * self.plan.echo_cap, 200, self.plan.echo_s)

    def verification(self) -> dict[str, Any]:
        pool = min(self.plan.verify_cap, max(2000, int(POOL_HEADROOM * self.mint_rps * self.plan.verify_s)))
        codes = self.mint(pool + self.plan.warmup)
        return self.timed("verification", self.factory.verifications(codes), 200, self.plan.verify_s)

    def codes(self, name: str, accept: str, duration_s: float, cap: int) -> dict[str, Any]:
        return self.timed(name, self.factory.mints(cap + self.plan.warmup, accept), 201, duration_s)

    def codes_json(self) -> dict[str, Any]:
        return self.codes("codes_json", "application/json", self.plan.json_s, self.plan.json_cap)

    def codes_png(self) -> dict[str, Any]:
        return self.codes("codes_png", PNG, self.plan.png_s, self.plan.png_cap)

    def fixed_rate(self, max_rps: float) -> dict[str, Any]:
        """Verification, open loop at `fixed_share` of the measured maximum; latency from the scheduled send."""
        rate = max_rps * self.plan.fixed_share
        requests = self.factory.verifications(self.mint(max(1, int(rate * self.plan.fixed_s))))
        meter = Meter(self.app, self.database_url).start()
        sampler = self._sample("fixed_rate", self.plan.fixed_s)
        outcome = run(self._job(requests, 200, float("inf"), rate), self.plan.procs)
        if sampler is not None:
            self.profiles["fixed_rate"] = sampler.finish()
        return {"target_rps": round(rate, 1), **figures(outcome, 200, meter.read())}

    def crowd(self, max_rps: float) -> dict[str, Any]:
        """Verification closed loop over `crowd_conns` connections at once: every 5xx, by its problem code.

        The answers a client may see are 200 or an explicit 503 `overloaded` (with Retry-After); anything else
        is a failure of the bounded queues."""
        codes = self.mint(max(2 * self.plan.crowd_conns, int(POOL_HEADROOM * max_rps * self.plan.crowd_s)))
        job = Job(
            self.factory.port,
            self.factory.verifications(codes),
            200,
            self.plan.crowd_conns,
            self.plan.crowd_s,
            keep_bodies=True,
        )
        meter = Meter(self.app, self.database_url).start()
        outcome = run(job, self.plan.procs)
        result = figures(outcome, 200, meter.read())
        answers = zip(outcome.body_statuses, outcome.bodies, strict=True)
        codes_5xx = Counter(_problem_code(body) for status, body in answers if status >= 500)
        result["conns"] = self.plan.crowd_conns
        result["5xx"] = sum(codes_5xx.values())
        result["5xx_by_code"] = dict(codes_5xx)
        result["5xx_not_overloaded"] = result["5xx"] - codes_5xx.get("overloaded", 0)
        return result

    def memory(self) -> dict[str, Any]:
        """RSS of the app process before, every `memory_step` and after `memory_n` verifications."""
        requests = self.factory.verifications(self.mint(self.plan.memory_n))
        samples = [(0, rss_mb(self.app))]
        total = Outcome()
        deadline = time.monotonic() + self.plan.memory_budget_s
        for at in range(0, len(requests), self.plan.memory_step):
            if time.monotonic() > deadline:
                break
            part = run(self._job(requests[at : at + self.plan.memory_step], 200, float("inf")), self.plan.procs)
            total.statuses.update(part.statuses)
            total.elapsed_s += part.elapsed_s
            total.latencies_s.extend(part.latencies_s)
            samples.append((total.count, rss_mb(self.app)))
        return _memory_figures(samples, total)


def _problem_code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("code", "?"))
    except (ValueError, AttributeError):
        return "not problem JSON"


def _memory_figures(samples: list[tuple[int, float]], total: Outcome) -> dict[str, Any]:
    first_step = samples[1][1] if len(samples) > 1 else samples[0][1]
    return {
        "verifications": total.count,
        "rps": round(total.rate, 1),
        "non_200": sum(v for k, v in total.statuses.items() if k != 200),
        "rss_mb": [[n, round(mb, 1)] for n, mb in samples],
        "rss_before_mb": round(samples[0][1], 1),
        "rss_after_mb": round(samples[-1][1], 1),
        "growth_mb": round(samples[-1][1] - samples[0][1], 1),
        "growth_after_first_step_mb": round(samples[-1][1] - first_step, 1),
    }


def qr_timing(codes: Sequence[str]) -> dict[str, float]:
    """In-process `ecard.kit.qr.png(code)`, once per code after a short warm-up: wall time and CPU time."""
    for code in codes[:50]:
        qr.png(code)
    wall, cpu = [], []
    for code in codes:
        started, started_cpu = time.perf_counter(), time.process_time()
        qr.png(code)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    wall_ms, cpu_ms = latency_ms(wall), latency_ms(cpu)
    return {
        "codes": len(wall),
        "mean_ms": round(wall_ms["mean"], 3),
        "p99_ms": round(wall_ms["p99"], 3),
        "cpu_mean_ms": round(cpu_ms["mean"], 3),
        "cpu_p99_ms": round(cpu_ms["p99"], 3),
    }
