"""Model checkpoints on disk (checkpoints/daily/{date}/), as retention sees them: the files
of each night, and the ones that must stay because a version still in use lives there."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from wm.base.paths import Paths
from wm.learn.versions import all_versions, latest_version


def night_files(paths: Paths) -> dict[str, list[Path]]:
    """Night folder name -> every file under it."""
    root = paths.daily_checkpoints
    out: dict[str, list[Path]] = {}
    try:
        nights = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for night in nights:
        out[night.name] = [Path(d) / n for d, _, names in os.walk(night.path) for n in names]
    return out


def versions_in_use(conn: sqlite3.Connection) -> set[str]:
    """Versions any clip's current vectors come from (one index probe per version, not a
    scan of every clip)."""
    return {v for (v,) in conn.execute(
        "SELECT version FROM memory_versions mv WHERE EXISTS"
        " (SELECT 1 FROM memory_clips c WHERE c.version = mv.version)")}


def kept_checkpoints(paths: Paths, conn: sqlite3.Connection) -> set[Path]:
    """Checkpoint files of the versions the memory uses and of the newest promoted one
    (what the next commit embeds with)."""
    keep = versions_in_use(conn)
    newest = latest_version(paths)
    if newest is not None:
        keep.add(newest.version)
    return {paths.root / v.checkpoint for v in all_versions(paths) if v.version in keep}


def delete_checkpoints(paths: Paths, files: list[Path]) -> tuple[int, int, list[str]]:
    """(files deleted, bytes freed, problems); night folders left empty go too."""
    n = freed = 0
    problems = []
    for f in files:
        try:
            size = f.stat().st_size
            f.unlink()
            n += 1
            freed += size
        except FileNotFoundError:
            continue
        except OSError as e:
            problems.append(f"{f}: {e.strerror or e}")
    for night in {f.relative_to(paths.daily_checkpoints).parts[0] for f in files}:
        for folder, _, _ in sorted(os.walk(paths.daily_checkpoints / night), reverse=True):
            try:
                os.rmdir(folder)
            except OSError:
                pass   # not empty
    return n, freed, problems
