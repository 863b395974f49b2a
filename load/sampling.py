"""Optional py-spy sampling of the app process during a scenario, summarised as its top functions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STDLIB = f"python{sys.version_info[0]}.{sys.version_info[1]}/"
_MARKERS = ("site-packages/", f"{Path(__file__).resolve().parent.parent}/", _STDLIB)
TOP = 20
PLUMBING = 0.4
# py-spy --native as well: C frames too, so that time in the garbage collector (gc_collect_main) shows
NATIVE = {"on": False}


@dataclass
class Sampling:
    """A py-spy `record` running against the app process, writing collapsed stacks."""

    proc: subprocess.Popen[bytes]
    out: Path

    def finish(self) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()
        if not self.out.exists():
            return {"error": "py-spy wrote nothing (is ptrace allowed?)"}
        return {"raw": str(self.out), **top_functions(self.out.read_text())}


def start(pid: int, duration_s: float, out: Path) -> Sampling | None:
    """Sample `pid` for `duration_s` seconds (py-spy must be on PATH), or None when it is not installed."""
    exe = shutil.which("py-spy")
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(duration_s))), "--rate", "250"]
    # native stacks need the process paused for each sample (py-spy refuses --native with --nonblocking)
    args += ["--native"] if NATIVE["on"] else ["--nonblocking"]
    args += ["--format", "raw", "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Sampling(proc, out)


def _short(frame: str) -> str:
    """`fn (path/to/module.py:12)` as `fn (module.py)`: lines merged, paths cut to the package."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in _MARKERS:
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def top_functions(collapsed: str) -> dict[str, Any]:
    """Self and inclusive shares of samples per function, from py-spy's collapsed stacks.

    The inclusive list leaves out the plumbing every request passes through (frames in more than
    PLUMBING of the samples: the event loop, uvicorn, Litestar's router), so that what is left is
    where requests differ.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        packages[_package(frames[-1])] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    if not total:
        return {"samples": 0, "self_pct": [], "inclusive_pct": [], "self_by_package_pct": []}
    below = Counter({name: n for name, n in inclusive.items() if n <= PLUMBING * total})
    return {
        "samples": total,
        "self_pct": _shares(own, total),
        "inclusive_pct": _shares(below, total),
        "self_by_package_pct": _shares(packages, total),
    }


def _package(frame: str) -> str:
    """Where a frame's code lives: `ecard/verify`, `asyncpg`, `asyncio`, ... (C calls count to their caller)."""
    path = frame.rpartition(" (")[2].rstrip(")")
    parts = path.split("/")
    if parts[0] == "ecard" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else path


def _shares(counter: Counter[str], total: int) -> list[list[Any]]:
    return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(TOP)]
