"""Finding finished clips on disk: a clip exists once its manifest does (it is written
last), so queueing what capture wrote means reading manifests the queue does not know.
The watcher does it per event and at start-up; the nightly cycle does it for clips that
were written while no watcher ran."""
from __future__ import annotations

from pathlib import Path

from wm.base import log
from wm.base.manifest import Manifest
from wm.base.paths import Paths
from wm.base.queue import Queue


def queue_clip(paths: Paths, q: Queue, manifest_path: Path) -> bool:
    """Queue the clip whose manifest this is; False if it was known (or is unreadable)."""
    try:
        manifest = Manifest.read(manifest_path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.get("wm.watcher").warning("manifest_unreadable", file=str(manifest_path), error=str(e))
        return False
    new = q.enqueue(manifest, str(manifest_path.relative_to(paths.data)))
    if new:
        log.get("wm.watcher").debug("clip_queued", clip=manifest.id, date=manifest.date)
    return new


def queue_clips_on_disk(paths: Paths, q: Queue, since: float | None = None) -> int:
    """Queue every clip on disk that the queue does not know (events are lost while no
    watcher runs); returns how many were new. Reads only the manifests of unknown ids;
    with `since`, looks only in day folders changed since then (wall time)."""
    if not paths.clips_root.is_dir():
        return 0
    n = 0
    days = (p for p in paths.clips_root.iterdir() if p.is_dir())
    if since is not None:
        days = (p for p in days if p.stat().st_mtime >= since - 1)
    for day in sorted(days):
        known = {item.clip_id for item in q.items(date=day.name)}
        for manifest in sorted(day.glob("*.json")):
            if manifest.stem not in known and queue_clip(paths, q, manifest):
                n += 1
    return n
