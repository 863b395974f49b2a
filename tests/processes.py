"""What the embedded servers left running: for the tests that check `ecard` leaves no orphans."""

from __future__ import annotations

from pathlib import Path

import psutil


def processes_for(data_dir: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line mentions data_dir: the embedded postgres and valkey."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(str(data_dir) in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def server_pids(data_dir: Path) -> set[int]:
    """The embedded servers' pids, with PostgreSQL's backends, as their pid files name them."""
    postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    valkey = int((data_dir / "valkey" / "valkey.pid").read_text().strip())
    backends = {child.pid for child in psutil.Process(postmaster).children(recursive=True)}
    return {postmaster, valkey} | backends


def gone(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return status == psutil.STATUS_ZOMBIE
