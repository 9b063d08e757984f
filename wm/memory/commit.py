"""The commit stage of a sleep cycle: embed every queued clip with the night's encoders and
store it in the memory; then re-embed clips still held under older model versions, newest
first, while their media exists; then bring the ANN indexes up to date and merge the
night's small shards.

Batches are claimed from the queue with a lease and their media is read (JPEG decode,
WAV) on a helper thread while the previous batch is being embedded.

A clip whose files cannot be read now (wm.memory.reading) is never taken for deleted: a
queued one stays queued, a re-embedded one keeps its older version, and both are tried
again at a later cycle (wm.memory.retry), up to settings.memory.read_attempts times.
Only files confirmed gone make a queued clip purged or a memory's media gone."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from wm.base import log
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.base.progress import Progress
from wm.base.queue import PURGED, QUEUED, UNREADABLE, Queue, QueueItem, owner_id
from wm.memory import reading
from wm.memory.clips import Clip
from wm.memory.maintenance import maintain, sweep_orphans
from wm.memory.reading import MISSING, OK, Loaded, MediaRead
from wm.memory.retry import GIVE_UP, PARTIAL, after_failure, retry_delay
from wm.memory.store import Store

if TYPE_CHECKING:
    from wm.learn.encoders import ClipEmbeddings

COMMIT_BATCH = 32
_log = log.get("wm.memory.commit")


@dataclass
class CommitResult:
    committed: int           # queued clips now in memory
    reembedded: int          # older clips moved to this version
    remaining: int           # clips still queued (stopped early, or waiting for a retry)
    stale: int = 0           # clips still held under an older version whose media exists
    unreadable: int = 0      # clips whose files could not be read now (tried again later)
    missing: int = 0         # clips whose files are confirmed gone
    set_aside: int = 0       # clips given up on after settings.memory.read_attempts tries


def read_media(paths: Paths, clip: Clip) -> Loaded | None:
    """A clip's stills and samples, or None if neither can be read (for callers that
    only need the media; the commit itself also needs to know why)."""
    return reading.read_media(paths, clip).loaded


def prepare(encoders, reads: list[MediaRead]) -> None:
    """What the encoders can do to the stills before their model runs (shrink them to its
    input), done here on the reading thread while the previous batch is embedded."""
    shrink = getattr(encoders, "prepare_stills", None)
    for r in reads if shrink is not None else ():
        if r.loaded is not None and r.loaded.stills:
            r.loaded.stills = shrink(r.loaded.stills)


def embed(encoders, loaded: list[Loaded]) -> ClipEmbeddings:
    """Every kind of vector for a batch (rows of NaN where a kind is absent)."""
    return encoders.embed_clips([x.stills for x in loaded], [x.audio for x in loaded])


@dataclass
class _Sorted:
    """One batch's reads, by what happens to each clip."""
    store: list[Loaded] = field(default_factory=list)
    missing: list[MediaRead] = field(default_factory=list)
    retry: list[tuple[MediaRead, int]] = field(default_factory=list)   # with attempts so far
    give_up: list[MediaRead] = field(default_factory=list)


def sort_reads(reads: list[tuple[MediaRead, int]], max_attempts: int) -> _Sorted:
    """(read, failed attempts before it) -> what to do with each clip."""
    out = _Sorted()
    for r, attempts in reads:
        if r.verdict == OK:
            out.store.append(r.loaded)
        elif r.verdict == MISSING:
            out.missing.append(r)
        else:
            choice = after_failure(attempts, max_attempts, r.loaded is not None)
            if choice == PARTIAL:
                _log.warning("clip_partly_unreadable", clip=r.clip.clip_id, problem=r.problem,
                             attempts=attempts + 1, note="stored with the parts that could be read")
                out.store.append(r.loaded)
            elif choice == GIVE_UP:
                out.give_up.append(r)
            else:
                out.retry.append((r, attempts))
    return out


def _defer(queue: Queue, retry: list[tuple[MediaRead, int]], owner: str | None,
           what: str) -> None:
    if not retry:
        return
    now = time.time()
    queue.defer([(r.clip.clip_id, now + retry_delay(n + 1)) for r, n in retry], owner=owner)
    first, attempts = retry[0]
    _log.warning("clips_unreadable", clips=len(retry), first=first.clip.clip_id,
                 problem=first.problem, attempt=attempts + 1,
                 retry_in_s=round(retry_delay(attempts + 1)), note=what)


def _warn(event: str, reads: list[MediaRead], **kw) -> None:
    if reads:
        _log.warning(event, clips=len(reads), first=reads[0].clip.clip_id,
                     problem=reads[0].problem, **kw)


def commit_queued(settings: Settings, paths: Paths, encoders,
                  should_stop: Callable[[], bool], batch: int | None = None) -> CommitResult:
    """Every queued clip into the memory, `batch` clips at a time (default COMMIT_BATCH,
    read when called); then re-embedding and index upkeep while time is left."""
    batch = batch or COMMIT_BATCH
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
            todo = queue.count(QUEUED) + store.count_stale(version)
            with Progress(todo, "commit", "clips") as bar, ThreadPoolExecutor(1) as pool:
                _commit_new(settings, paths, store, queue, owner, encoders, should_stop, pool,
                            bar, result, batch)
                if not should_stop():
                    _reembed(settings, paths, store, queue, encoders, should_stop, pool, bar,
                             result, batch)
            if not should_stop():
                maintain(settings, store, should_stop)
        result.remaining = queue.count(QUEUED)
        result.stale = store.count_stale(version)
        _log.info("commit_done", version=version, committed=result.committed,
                  reembedded=result.reembedded, remaining=result.remaining, stale=result.stale,
                  unreadable=result.unreadable, missing=result.missing,
                  set_aside=result.set_aside)
        return result
    finally:
        queue.release(owner)
        queue.close()
        store.close()


def _read_queued(paths: Paths, item: QueueItem) -> MediaRead:
    clip, verdict, problem = reading.read_manifest(paths, item.manifest)
    if clip is None:
        # Stand-in for the clip whose manifest could not be read: only its id is used.
        stub = Clip(item.clip_id, item.date, item.start, 0.0, item.manifest, None, None, ())
        return MediaRead(stub, None, verdict, problem)
    return reading.read_media(paths, clip)


def _commit_new(settings, paths, store, queue, owner, encoders, should_stop, pool, bar,
                result, batch) -> None:
    lease = settings.daemon.lease_seconds

    def claim():
        items = queue.claim(owner, batch, lease)
        if not items:
            return None

        def read():
            reads = [_read_queued(paths, it) for it in items]
            prepare(encoders, reads)
            return list(zip(reads, [it.attempts for it in items]))
        return pool.submit(read)

    fut = claim()
    while fut is not None and not should_stop():
        reads = fut.result()
        fut = claim()  # read the next batch while this one is embedded
        todo = sort_reads(reads, settings.memory.read_attempts)
        if todo.missing:
            # Confirmed gone (the data folder lists, the files are not there): nothing
            # to commit, ever. Said in the log and the result, not dropped silently.
            _warn("clips_missing", todo.missing, state=PURGED)
            queue.mark([r.clip.clip_id for r in todo.missing], PURGED, owner=owner)
        _defer(queue, todo.retry, owner, "stays queued, tried again at a later cycle")
        if todo.give_up:
            _warn("clips_set_aside", todo.give_up, state=UNREADABLE,
                  note="every read attempt failed; files kept")
            queue.mark([r.clip.clip_id for r in todo.give_up], UNREADABLE, owner=owner)
        if todo.store:
            stored = store.add(encoders.version, [x.clip for x in todo.store],
                               embed(encoders, todo.store))
            result.committed += len(stored)
        result.missing += len(todo.missing)
        result.unreadable += len(todo.retry) + len(todo.give_up)
        result.set_aside += len(todo.give_up)
        bar.update(len(reads))


def _reembed(settings, paths, store, queue, encoders, should_stop, pool, bar, result,
             batch) -> None:
    version = encoders.version
    max_attempts = settings.memory.read_attempts
    cursor: list[str | None] = [None]

    def select():
        clips = store.stale_clips(version, batch, before=cursor[0],
                                  max_attempts=max_attempts, now=time.time())
        if not clips:
            return None
        cursor[0] = clips[-1].start
        def read():
            reads = [reading.read_media(paths, c) for c in clips]
            prepare(encoders, reads)
            return reads
        return pool.submit(read)

    fut = select()
    while fut is not None and not should_stop():
        reads = fut.result()
        fut = select()
        attempts = queue.attempts([r.clip.clip_id for r in reads])
        todo = sort_reads([(r, attempts.get(r.clip.clip_id, 0)) for r in reads], max_attempts)
        if todo.missing:
            # Its files are confirmed gone: the memory keeps the older version's vectors.
            gone = [r.clip.clip_id for r in todo.missing]
            store.mark_media_gone(gone, time.time())
            queue.mark(gone, PURGED)
        # Unreadable now: it stays under its older version, media and all.
        _defer(queue, todo.retry, None, "stays with its older version, tried again later")
        if todo.give_up:
            # The last failed try is counted too: that keeps it out of later selections.
            queue.defer([(r.clip.clip_id, time.time()) for r in todo.give_up])
            _warn("clips_set_aside", todo.give_up, note="every read attempt failed; it keeps"
                  " its older version's vectors and its files")
        if todo.store:
            stored = store.add(version, [x.clip for x in todo.store], embed(encoders, todo.store))
            result.reembedded += len(stored)
        result.missing += len(todo.missing)
        result.unreadable += len(todo.retry) + len(todo.give_up)
        result.set_aside += len(todo.give_up)
        bar.update(len(reads))
