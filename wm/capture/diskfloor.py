"""The disk floor, `retention.min_free_gb`: under it capture writes nothing. The recorder
skips clips (a gap) until there is room again; `wm ingest` does not start, or stops
between clips, keeping every clip it finished and nothing half-written."""
from __future__ import annotations

import shutil
from pathlib import Path

from wm.base.errors import WmError


class DiskLow(WmError):
    """Free space is under the floor (the message says how much is free)."""

    exit_code = 1


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent:
    the data root may not exist yet)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def below_floor(free: int, min_free_gb: float) -> bool:
    return free < min_free_gb * 1e9


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def floor_message(free: int, min_free_gb: float) -> str:
    return f"only {_size(free)} free, under retention.min_free_gb ({_size(min_free_gb * 1e9)})"


def check_room(root: Path, min_free_gb: float, what: str) -> None:
    """DiskLow naming `what` when the disk of `root` is under the floor."""
    free = free_bytes(root)
    if below_floor(free, min_free_gb):
        raise DiskLow(f"{what}: {floor_message(free, min_free_gb)}")
