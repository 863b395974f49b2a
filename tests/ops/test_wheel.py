"""The built wheel, installed in a fresh virtualenv away from the repository, migrates a new database and serves.

Offline and quick: the wheel is built without build isolation (setuptools is a dev dependency), installed without
its dependencies, which the fresh venv borrows from this one's site-packages."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import httpx

from ecard.kit.crypto import b64u
from ecard.kit.infra import MIGRATIONS_DIR, recreate_database
from tests.live import REPO, ServerProcess


class WheelServe(ServerProcess):
    """`ecard serve` as the wheel's console script installed it, run from a folder without the sources."""

    name = "wheel-serve"
    ready_path = "/readyz"

    def __init__(self, folder: Path, program: Path, env: dict[str, str]) -> None:
        super().__init__(folder, env)
        self.program = program
        self.cwd = folder

    def command(self) -> list[str]:
        return ["serve", "--port", str(self.port)]

    def argv(self) -> list[str]:
        return [str(self.program), *self.command()]


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # a PYTHONPATH naming the source tree (a run without the editable install) would import it instead of the wheel
    clean = {name: value for name, value in (os.environ if env is None else env).items() if name != "PYTHONPATH"}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=clean, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _built_wheel(folder: Path) -> Path:
    """The wheel of a copy of the sources (a build writes build/ and *.egg-info beside them)."""
    source = folder / "source"
    shutil.copytree(REPO / "ecard", source / "ecard", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", source / "pyproject.toml")
    wheels = folder / "wheels"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        source,
        cwd=folder,
    )
    [wheel] = wheels.glob("ecard-*.whl")
    return wheel


def _fresh_venv(folder: Path) -> Path:
    """A new virtualenv whose own site-packages comes first, with this environment's packages behind it."""
    env_dir = folder / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=folder).stdout
    (Path(purelib.strip()) / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def test_the_wheel_installed_elsewhere_migrates_a_new_database_and_serves(
    service_urls: tuple[str, str], tmp_path: Path
) -> None:
    wheel = _built_wheel(tmp_path)
    env_dir = _fresh_venv(tmp_path)
    python = env_dir / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path
    )
    where = _run(python, "-c", "import ecard; print(ecard.__file__)", cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(env_dir), f"ecard imported from {where}, not from the installed wheel"

    database_url, redis_url = service_urls
    fresh = asyncio.run(recreate_database(database_url, "_wheel"))  # empty: not a copy of the migrated template
    env = {name: value for name, value in os.environ.items() if not name.startswith("ECARD_")}
    env.update(
        ECARD_DATABASE_URL=fresh,
        ECARD_REDIS_URL=redis_url,
        ECARD_REDIS_PREFIX=f"ecardwheel:{os.urandom(6).hex()}:",
        ECARD_SECRET_KEY=b64u(os.urandom(32)),
        ECARD_DATA_DIR=str(tmp_path / "data"),
        PYTHONUNBUFFERED="1",
    )
    program = env_dir / "bin" / "ecard"
    migrated = _run(program, "migrate", cwd=tmp_path, env=env)
    shipped = sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert json.loads(migrated.stdout)["applied"] == shipped
    assert json.loads(_run(program, "migrate", cwd=tmp_path, env=env).stdout)["applied"] == []

    served = WheelServe(tmp_path / "serve", program, env)
    served.start()  # until /readyz answers 200
    try:
        ready = httpx.get(f"{served.base}/readyz", timeout=10)
        assert ready.json() == {"status": "ready", "database": "ok", "cache": "ok"}
        # package data beside the code: the seeded catalog, and the reference page's script
        assert httpx.get(f"{served.base}/v1/catalog/items", timeout=10).json()["items"]
        assert httpx.get(f"{served.base}/schema/assets/redoc.standalone.js", timeout=10).status_code == 200
    finally:
        served.stop()
