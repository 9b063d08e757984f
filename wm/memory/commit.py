"""The commit stage of a sleep cycle: embed every queued clip with the night's encoders and
store it in the memory; then re-embed clips still held under older model versions, newest
first, while their media exists; then bring the ANN indexes up to date and merge the
night's small shards.

Batches are claimed from the queue with a lease and their media is read (JPEG decode,
WAV) on a helper thread while the previous batch is being embedded."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from wm.base import log
from wm.base.config import Settings
from wm.base.manifest import Manifest
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.base.progress import Progress
from wm.base.queue import PURGED, QUEUED, Queue, QueueItem, owner_id
from wm.memory import ann
from wm.memory.clips import Clip
from wm.memory.maintenance import compact, sweep_orphans
from wm.memory.shards import KINDS
from wm.memory.store import Store

if TYPE_CHECKING:
    from wm.learn.encoders import ClipEmbeddings

COMMIT_BATCH = 32
_log = log.get("wm.memory.commit")


@dataclass
class CommitResult:
    committed: int           # queued clips now in memory
    reembedded: int          # older clips moved to this version
    remaining: int           # clips still queued (stopped early, or unreadable ones purged)
    stale: int = 0           # clips still held under an older version whose media exists
    unreadable: int = 0      # queued clips whose media could not be read (marked purged)


@dataclass
class _Loaded:
    clip: Clip
    stills: list[np.ndarray]
    audio: np.ndarray | None


def read_media(paths: Paths, clip: Clip) -> _Loaded | None:
    """A clip's stills and samples, or None if neither can be read."""
    files = [paths.data / f for f in clip.frames]
    stills = [im for im in (cv2.imread(str(f)) for f in files if f.exists()) if im is not None]
    audio = None
    if clip.audio and (paths.data / clip.audio).exists():
        try:
            audio, _ = read_wav(paths.data / clip.audio)
        except (OSError, EOFError, ValueError) as e:
            _log.warning("audio_unreadable", clip=clip.clip_id, error=str(e))
    if not stills and audio is None:
        return None
    return _Loaded(clip, stills, audio)


def _queued_clip(paths: Paths, item: QueueItem) -> Clip | None:
    try:
        m = Manifest.read(paths.data / item.manifest)
    except (OSError, ValueError, TypeError, KeyError) as e:
        _log.warning("manifest_unreadable", clip=item.clip_id, file=item.manifest, error=str(e))
        return None
    return Clip.from_manifest(m, item.manifest)


def embed(encoders, loaded: list[_Loaded]) -> ClipEmbeddings:
    """Every kind of vector for a batch (rows of NaN where a kind is absent)."""
    return encoders.embed_clips([x.stills for x in loaded], [x.audio for x in loaded])


def commit_queued(settings: Settings, paths: Paths, encoders,
                  should_stop: Callable[[], bool]) -> CommitResult:
    version = encoders.version
    store = Store(paths)
    queue = Queue(paths.memory_db)
    owner = owner_id()
    result = CommitResult(0, 0, 0)
    try:
        with store.writer():
            swept = sweep_orphans(store)
            if swept:
                _log.info("orphans_removed", files=len(swept))
            store.register_version(version)
            todo = queue.counts()[QUEUED] + store.count_stale(version)
            with Progress(todo, "commit", "clips") as bar, ThreadPoolExecutor(1) as pool:
                _commit_new(settings, paths, store, queue, owner, encoders, should_stop, pool,
                            bar, result)
                if not should_stop():
                    _reembed(paths, store, queue, encoders, should_stop, pool, bar, result)
            if not should_stop():
                _maintain(settings, store, should_stop)
        result.remaining = queue.counts()[QUEUED]
        result.stale = store.count_stale(version)
        _log.info("commit_done", version=version, committed=result.committed,
                  reembedded=result.reembedded, remaining=result.remaining, stale=result.stale,
                  unreadable=result.unreadable)
        return result
    finally:
        queue.release(owner)
        queue.close()
        store.close()


def _commit_new(settings, paths, store, queue, owner, encoders, should_stop, pool, bar,
                result) -> None:
    lease = settings.daemon.lease_seconds

    def claim():
        items = queue.claim(owner, COMMIT_BATCH, lease)
        if not items:
            return None
        clips, broken = [], []
        for it in items:
            c = _queued_clip(paths, it)
            if c is None:
                broken.append(it.clip_id)
            else:
                clips.append(c)
        return pool.submit(lambda: ([read_media(paths, c) for c in clips], clips, broken))

    fut = claim()
    while fut is not None and not should_stop():
        loaded, clips, broken = fut.result()
        fut = claim()  # read the next batch while this one is embedded
        broken += [c.clip_id for c, x in zip(clips, loaded) if x is None]
        loaded = [x for x in loaded if x is not None]
        if broken:
            _log.warning("clips_unreadable", clips=len(broken), first=broken[0])
            queue.mark(broken, PURGED, owner=owner)
            result.unreadable += len(broken)
        if loaded:
            stored = store.add(encoders.version, [x.clip for x in loaded], embed(encoders, loaded))
            result.committed += len(stored)
        bar.update(len(loaded) + len(broken))


def _reembed(paths, store, queue, encoders, should_stop, pool, bar, result) -> None:
    version = encoders.version
    cursor: list[str | None] = [None]

    def select():
        clips = store.stale_clips(version, COMMIT_BATCH, before=cursor[0])
        if not clips:
            return None
        cursor[0] = clips[-1].start
        return pool.submit(lambda: [(c, read_media(paths, c)) for c in clips])

    fut = select()
    while fut is not None and not should_stop():
        pairs = fut.result()
        fut = select()
        gone = [c.clip_id for c, x in pairs if x is None]
        loaded = [x for _, x in pairs if x is not None]
        if gone:
            # Its files vanished under us: the memory keeps the older version's vectors.
            store.mark_media_gone(gone, time.time())
            queue.mark(gone, PURGED)
        if loaded:
            stored = store.add(version, [x.clip for x in loaded], embed(encoders, loaded))
            result.reembedded += len(stored)
        bar.update(len(pairs))


def _maintain(settings, store: Store, should_stop) -> None:
    """Index every version whose vectors changed, then merge small shards. Both may be
    skipped or cut short safely: queries scan unindexed shards exactly."""
    mem = settings.memory
    for v in store.versions():
        for kind in KINDS:
            if should_stop():
                return
            ann.sync_index(store, v, kind, mem.ann_min_rows, mem.ann_nprobe, settings.learn.seed)
    compact(store)
