"""What the risk rules cost per observation when verifications arrive one at a time, with and without the batch
window (`ECARD_RISK_BATCH_S`), in one run.

    ECARD_REDIS_URL=redis://127.0.0.1:6379/0 python load/risk_batch.py [--rate 1000] [--seconds 4] [--rounds 3]

In this process, against the configured Redis: the service's own rules loop (`RiskEvents.run`) is fed accepted
verifications of 5,000 cards at `--rate` per second, paced as an open-loop load arrives, for `--seconds`, then
waited for until it has seen them all. A round does it three times: the feeder alone (the rules off), the rules
with no window (`batch_s=0`: each observation takes whatever happens to be waiting, mostly nothing) and with the
default window. It prints the process CPU per observation of each, the feeder's own subtracted. The keys live
under a prefix of their own and are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time

import redis.asyncio as aioredis
import uvloop

from ecard.kit.clock import SystemClock
from ecard.risk import RiskEvents, RiskInbox, RiskSettings, Verified

CARDS = 5000
DEFAULT_WINDOW_S = RiskSettings().batch_s


async def fed(redis: aioredis.Redis, prefix: str, rate: int, seconds: float, batch_s: float | None) -> float:
    """Process CPU seconds spent feeding `rate * seconds` observations (to rules with window `batch_s`, or to
    none when it is None) until the rules have seen them all."""
    inbox = RiskInbox(100_000, enabled=batch_s is not None)
    # a velocity limit no card reaches: no event is raised, so no database is needed
    settings = RiskSettings(velocity_max=10**9, batch_s=batch_s or 0.0, prefix=prefix)
    rules = RiskEvents(None, redis, None, SystemClock(), settings, inbox)  # type: ignore[arg-type]
    task = asyncio.create_task(rules.run())
    loop = asyncio.get_running_loop()
    started_cpu, start = time.process_time(), loop.time()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        card = f"crd_{n % CARDS}"
        seen = Verified(card, "mer_load", "wl-030", discloses_identity=False, lat=None, lon=None, at=time.time())
        inbox.verified(seen)
    await inbox.settled()
    used = time.process_time() - started_cpu
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return used


async def main(args: argparse.Namespace) -> None:
    redis = aioredis.Redis.from_url(os.environ.get("ECARD_REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"load-risk-batch-{secrets.token_hex(4)}:"
    n = int(args.rate * args.seconds)
    unbatched: list[float] = []
    batched: list[float] = []
    try:
        for round_no in range(1, args.rounds + 1):
            feeder = await fed(redis, prefix, args.rate, args.seconds, None)
            alone = await fed(redis, prefix, args.rate, args.seconds, 0.0)
            windowed = await fed(redis, prefix, args.rate, args.seconds, DEFAULT_WINDOW_S)
            unbatched.append(1e6 * (alone - feeder) / n)
            batched.append(1e6 * (windowed - feeder) / n)
            print(
                f"round {round_no}: feeder {1e6 * feeder / n:.1f} us/observation; the rules' own CPU:"
                f" no window {unbatched[-1]:.1f} us, window {DEFAULT_WINDOW_S} s {batched[-1]:.1f} us",
                flush=True,
            )
    finally:
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(key)
        await redis.aclose()
    no_window, window = statistics.median(unbatched), statistics.median(batched)
    print(
        f"rules' CPU per observation at {args.rate}/s, medians of {args.rounds} rounds: no window {no_window:.1f} us,"
        f" window {DEFAULT_WINDOW_S} s {window:.1f} us, no window / window {no_window / window:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="observations per second, paced")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each side of a round")
    parser.add_argument("--rounds", type=int, default=3)
    uvloop.run(main(parser.parse_args()))
