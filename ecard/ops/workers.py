"""Metrics shared by every worker of one `ecard serve`: prometheus_client's multiprocess folder, made ready."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics(data_dir: Path) -> Path:
    """Point PROMETHEUS_MULTIPROC_DIR at `<data_dir>/metrics`, emptied of an earlier run's values; the folder.

    Must come before prometheus_client is imported: it picks file-backed values at import."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("share_metrics() must run before prometheus_client is imported")
    folder = (data_dir / "metrics").resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder
