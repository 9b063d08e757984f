"""What a crash leaves under the data root, found and removed.

- Stale `.partial` files: a write that died before its rename (in the media folders,
  `state/`, `checkpoints/`, `memory/embeddings/` and `reports/`). One whose writer (the
  pid in its name) is still alive is in flight, not stale: another `wm ingest`,
  `wm record` or `wm sleep` is writing it.
- Orphan clip media: a clip's mp4 and stills renamed into place, and the process died
  before its WAV or its manifest (written last). Nothing queues such files and they
  count toward `retention.max_gb`, so they go once they are older than a grace period
  (a clip being written right now has its manifest a second later).

`wm check --repair` and the daemon's start-up call `remove_partials` and
`remove_orphan_media`; `find_*` only look."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from wm.base.atomic import PARTIAL, partial_owner
from wm.base.clipids import parse_clip_id
from wm.base.paths import Paths
from wm.base.process import pid_alive

# A clip's files are all renamed into place within seconds of each other (an ingest
# writer encodes one clip at a time); media this old without a manifest is an orphan.
ORPHAN_GRACE_SECONDS = 300.0
# No single write takes this long (a checkpoint is seconds): a `.partial` file this old is
# stale even if a live process has its writer's pid (pids are reused after a crash).
OWNED_PARTIAL_MAX_SECONDS = 3600.0
MEDIA_SUFFIXES = (".mp4", ".jpg", ".wav")


@dataclass(frozen=True)
class OrphanMedia:
    path: Path
    date: str        # the day folder it is in
    clip_id: str
    bytes: int



def partial_is_stale(owner: int | None, age: float, min_age: float, me: int,
                     alive: bool) -> bool:
    """Whether a `.partial` file `age` seconds untouched may be deleted. Another live
    writer's file is in flight (until it is implausibly old); this process's own, a dead
    writer's and an unnamed one's are stale once `min_age` has passed."""
    if owner is not None and owner != me and alive:
        return age >= OWNED_PARTIAL_MAX_SECONDS
    return age >= min_age


def partial_dirs(paths: Paths) -> list[Path]:
    """Every folder a crash may leave `.partial` files in."""
    return [*paths.media_dirs(), paths.state, paths.checkpoints, paths.embeddings,
            paths.reports]


def find_stale_partials(paths: Paths, min_age: float = 0.0,
                        now: float | None = None) -> list[Path]:
    now = time.time() if now is None else now
    me, found = os.getpid(), []
    for folder in partial_dirs(paths):
        for p in folder.rglob(f"*{PARTIAL}") if folder.is_dir() else []:
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:   # its writer just finished it
                continue
            owner = partial_owner(p)
            alive = owner is not None and owner != me and pid_alive(owner)
            if partial_is_stale(owner, age, min_age, me, alive):
                found.append(p)
    return found


def remove_partials(paths: Paths, min_age: float = 0.0) -> list[Path]:
    """Delete the `.partial` files a crash left behind (only those untouched for `min_age`
    seconds when it is given: a younger one may be this process's write in progress);
    never those of another live writer. Returns what was removed."""
    removed = []
    for p in find_stale_partials(paths, min_age):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def media_clip_id(name: str) -> str | None:
    """The clip a media file name belongs to (`ID.mp4`, `ID.wav`, `ID_K.jpg`), or None
    for a name that is not clip media (left alone)."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or f".{suffix}" not in MEDIA_SUFFIXES:
        return None
    if suffix == "jpg":
        stem, underscore, k = stem.rpartition("_")
        if not underscore or not k.isdigit():
            return None
    try:
        parse_clip_id(stem)
    except ValueError:
        return None
    return stem


def _media_folders(paths: Paths) -> list[Path]:
    # thumbnails are retention's, kept after the media on purpose
    return [d for d in paths.media_dirs() if d.name != "thumbs"]


def _day_names(paths: Paths, days: int | None) -> list[str]:
    """The day folders holding media, all of them or the newest `days` (a crash leaves
    its orphans in the days it was writing, so start-up looks at the last two only)."""
    names = {d.name for f in _media_folders(paths) if f.is_dir() for d in f.iterdir()
             if d.is_dir()}
    ordered = sorted(names)
    return ordered if days is None else ordered[-days:] if days > 0 else []


def find_orphan_media(paths: Paths, grace: float = ORPHAN_GRACE_SECONDS,
                      now: float | None = None, days: int | None = None) -> list[OrphanMedia]:
    """Clip media files whose clip has no manifest, untouched for `grace` seconds, in
    every day folder or in the newest `days`. One listing per folder: a day of
    recording is ~100,000 files."""
    now = time.time() if now is None else now
    found = []
    for day in _day_names(paths, days):
        clips = paths.clips_dir(day)
        manifests = {p.stem for p in clips.glob("*.json")} if clips.is_dir() else set()
        for folder in (paths.clips_dir(day), paths.frames_dir(day), paths.audio_dir(day)):
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                cid = media_clip_id(p.name)
                if cid is None or cid in manifests:
                    continue
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                if now - st.st_mtime >= grace:
                    found.append(OrphanMedia(p, day, cid, st.st_size))
    return found


def remove_orphan_media(paths: Paths, grace: float = ORPHAN_GRACE_SECONDS,
                        now: float | None = None, days: int | None = None) -> list[OrphanMedia]:
    """Delete what find_orphan_media finds (re-checking the manifest just before: a clip
    finished meanwhile keeps its files). Returns what was removed."""
    removed = []
    for o in find_orphan_media(paths, grace, now, days):
        if paths.manifest(o.date, o.clip_id).exists():
            continue
        try:
            o.path.unlink()
            removed.append(o)
        except FileNotFoundError:
            pass
    return removed
