"""The house: rooms meet only through their packages, kit stands below every room, services load no web framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ecard"
ROOMS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists() and p.name != "kit")
# the top-level modules that wire rooms together (and so may reach their controllers)
WIRING = {"app.py", "cli.py", "seed.py"}


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def _room_modules() -> list[Path]:
    return [p for room in ROOMS for p in sorted((PACKAGE / room).glob("*.py"))]


def test_kit_never_imports_a_room() -> None:
    offenders = [
        f"{path.name}: {name}"
        for path in sorted((PACKAGE / "kit").glob("*.py"))
        for name in _imports(path)
        if name.startswith("ecard.") and name.split(".")[1] not in ("kit", "config")
    ]
    assert offenders == []


def test_rooms_meet_only_through_what_their_package_exports() -> None:
    offenders = []
    for path in _room_modules():
        own = path.parent.name
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "ecard" and len(parts) > 2 and parts[1] not in (own, "kit"):
                offenders.append(f"{own}/{path.name}: {name}")
    assert offenders == []


def test_a_room_package_exports_no_http() -> None:
    offenders = [
        f"{room}: {name}"
        for room in ROOMS
        for name in _imports(PACKAGE / room / "__init__.py")
        if name.endswith(".http")
    ]
    assert offenders == []


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_without_its_http_edge_loads_no_web_framework(room: str) -> None:
    modules = [
        f"ecard.{room}.{p.stem}"
        for p in sorted((PACKAGE / room).glob("*.py"))
        if p.stem not in ("http", "standin", "__init__")
    ] or [f"ecard.{room}"]
    probe = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'litestar')[:3])"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"{room} loads Litestar: {loaded}"
