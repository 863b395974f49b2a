"""A test that hangs is reported, not waited for: after `HANG_S` the stacks of every thread and of every task on
its event loop are written to a file in `REPORTS` and the worker process ends. pytest-xdist names the test that
crashed it, and the run's summary prints the file (a worker's own stderr goes nowhere), so a hang fails the run in
minutes with the place it hung rather than running into CI's time limit with nothing printed. (In one process,
`-n 0`, the run ends at once and the file stays in an ecard-hangs-* folder of the temporary directory.)"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import io
import os
import tempfile
import threading
from pathlib import Path
from typing import Self

import psutil

# twenty times the slowest test of the suite (tests/payments/test_recovery.py, 43 s in a run on 2026-12-03)
HANG_S = float(os.environ.get("ECARD_TEST_HANG_S", "900"))
REPORTS = "ECARD_TEST_HANG_REPORTS"


def _loops() -> list[asyncio.AbstractEventLoop]:
    return [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()]


def _task_stacks() -> str:
    out = io.StringIO()
    for loop in _loops():
        for _ in range(5):  # the set of tasks may change under us; a few tries are enough for a report
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                continue
        else:
            tasks = []
        for task in tasks:
            print(f"--- {task.get_name()}", file=out)
            for line in _awaiting(task.get_coro()):
                print(f"    {line}", file=out)
    return out.getvalue()


def _awaiting(step: object) -> list[str]:
    """Where a suspended task is, outermost first: its coroutines down the chain of awaits, then what the
    innermost one waits for (a future, a lock's waiter). A task's own print_stack shows only the outermost."""
    lines = []
    while step is not None:
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None) or getattr(step, "ag_frame", None)
        if frame is None:
            lines.append(f"awaits {type(step).__name__}")
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None) or getattr(step, "ag_await", None)
    return lines


def _report(nodeid: str) -> None:
    folder = Path(os.environ.get(REPORTS) or tempfile.gettempdir())
    with (folder / f"hang-{os.getpid()}.txt").open("w") as out:
        print(f"=== {nodeid} still running after {HANG_S:.0f} s ===", file=out)
        out.flush()
        faulthandler.dump_traceback(file=out, all_threads=True)
        print(_task_stacks(), file=out)
    for child in psutil.Process().children(recursive=True):  # the stand-ins and live servers it started
        with contextlib.suppress(psutil.Error):
            child.kill()
    os._exit(70)


def reports(folder: Path) -> list[str]:
    return [path.read_text() for path in sorted(folder.glob("hang-*.txt"))]


class Watch:
    """Started when a test starts and stopped when its teardown ends."""

    def __init__(self, nodeid: str) -> None:
        self._timer = threading.Timer(HANG_S, _report, args=(nodeid,))
        self._timer.daemon = True

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
