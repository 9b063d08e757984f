"""The checks. Each takes the settings and paths and returns the problems it found, each
with its repair where one exists that loses no committed memory. Cheap checks (a few
directory listings and one query) run at every `wm run` start-up; the full set reads
every manifest and every shard header."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wm.base.config import Settings
from wm.base.paths import Paths
from wm.base.queue import PURGED, QUEUED, Queue
from wm.capture.orphans import find_orphan_media, find_stale_partials
from wm.capture.scan import queue_clip
from wm.check.problems import Problem
from wm.learn.modelfiles import check_model_files
from wm.learn.versions import mark_broken
from wm.memory import integrity
from wm.memory.store import Store

# A partial write younger than this may belong to a process writing it now (a clip takes
# seconds, an ANN index of a large memory minutes); older ones are left by a crash.
PARTIAL_GRACE_SECONDS = 15 * 60


@dataclass(frozen=True)
class Context:
    settings: Settings
    paths: Paths
    now: float | None = None
    # None: the defaults above; 0 when no wm process runs (everything unfinished is stale)
    grace: float | None = None


def _remove(path: Path) -> str:
    path.unlink(missing_ok=True)
    return f"removed {path}"


def stale_partials(ctx: Context) -> list[Problem]:
    """`.partial` files anywhere under the root left by a crash (older than the grace
    period, and not named for a writer that is still alive)."""
    paths = ctx.paths
    return [Problem("stale partial write", str(p.relative_to(paths.root)), "",
                    lambda p=p: _remove(p))
            for p in find_stale_partials(
                ctx.paths, min_age=PARTIAL_GRACE_SECONDS if ctx.grace is None else ctx.grace, now=ctx.now)]


def orphan_media(ctx: Context) -> list[Problem]:
    """Clip media without a manifest (a crash between the media and the manifest): the
    clip was never finished, so it was never queued nor counted."""
    paths = ctx.paths
    return [Problem("orphan media", str(o.path.relative_to(paths.root)), f"{o.bytes} bytes",
                    lambda o=o: _remove(o.path))
            for o in find_orphan_media(
                ctx.paths, **({} if ctx.grace is None else {"grace": ctx.grace}), now=ctx.now)]


def model_files(ctx: Context) -> list[Problem]:
    """Model versions whose file is missing or fails its checksum and that are still in
    use: the repair keeps them out of use (a state, the row and the file stay), so nights
    and queries fall back to the previous good version, or version 0."""
    paths = ctx.paths
    if not paths.memory_db.exists():
        return []
    return [Problem(f"model file {p.problem}", p.version, f"{p.checkpoint}: {p.detail}",
                    lambda p=p: _mark_broken(paths, p.version, f"{p.problem}: {p.detail}"))
            for p in check_model_files(paths) if not p.marked_broken]


def _mark_broken(paths: Paths, version: str, reason: str) -> str:
    mark_broken(paths, version, reason)
    return "kept out of use"


def memory_files(ctx: Context) -> list[Problem]:
    """Shard rows whose files are missing or truncated, index rows whose file is gone."""
    if not ctx.paths.memory_db.exists():
        return []
    with Store(ctx.paths) as store:
        damaged = integrity.damaged_shards(store)
        lost = integrity.missing_indexes(store)
    found = [Problem("damaged memory shard", f"{d.shard.version}/{d.shard.date}/{d.shard.kind}",
                     d.reason, lambda d=d: _drop_shard(ctx.paths, d.shard)) for d in damaged]
    found += [Problem("missing memory index", f"{v}/{k}", f,
                      lambda v=v, k=k: _drop_index(ctx.paths, v, k)) for v, k, f in lost]
    return found


def _drop_shard(paths: Paths, shard) -> str:
    with Store(paths) as store, store.writer():
        integrity.drop_shard(store, shard)
    return f"row dropped: {shard.rows} clips lose these vectors until the next version embeds them"


def _drop_index(paths: Paths, version: str, kind: str) -> str:
    with Store(paths) as store, store.writer():
        integrity.drop_index(store, version, kind)
    return "searched exactly until the next maintenance rebuilds it"


def dead_claims(ctx: Context) -> list[Problem]:
    """Queue claims held by processes of this machine that no longer exist."""
    paths = ctx.paths
    if not paths.memory_db.exists():
        return []
    q = Queue(paths.memory_db)
    try:
        dead = q.dead_owners()
    finally:
        q.close()
    return [Problem("claim of a dead process", owner, "its clips wait for the lease",
                    lambda o=owner: _release(paths, o)) for owner in dead]


def _release(paths: Paths, owner: str) -> str:
    q = Queue(paths.memory_db)
    try:
        return f"released {q.release(owner)} clips"
    finally:
        q.close()


def queue_and_files(ctx: Context) -> list[Problem]:
    """Queued clips whose manifest is gone, and finished clips on disk the queue does not
    know (a watcher that was down, a database restored from a backup)."""
    paths = ctx.paths
    if not paths.memory_db.exists() and not paths.clips_root.is_dir():
        return []
    q = Queue(paths.memory_db)
    try:
        known = {i.clip_id: i for i in q.items()}
    finally:
        q.close()
    found = []
    for item in known.values():
        if item.state == QUEUED and not (paths.data / item.manifest).exists():
            found.append(Problem("queued clip without files", item.clip_id, item.manifest,
                                 lambda i=item: _mark_gone(paths, i.clip_id)))
    if paths.clips_root.is_dir():
        for manifest in sorted(paths.clips_root.glob("*/*.json")):
            if manifest.stem not in known:
                found.append(Problem("clip not queued yet", manifest.stem,
                                     str(manifest.relative_to(paths.root)),
                                     lambda m=manifest: _enqueue(paths, m)))
    return found


def _mark_gone(paths: Paths, clip_id: str) -> str:
    q = Queue(paths.memory_db)
    try:
        q.mark([clip_id], PURGED)
    finally:
        q.close()
    return "marked purged (its files are gone)"


def _enqueue(paths: Paths, manifest: Path) -> str:
    q = Queue(paths.memory_db)
    try:
        return "queued" if queue_clip(paths, q, manifest) else "unreadable manifest, left alone"
    finally:
        q.close()
