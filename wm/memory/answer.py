"""Answering a query: check what it asks against the memory, then rank the clips of each
model version that holds any in the date range, with the query embedded by that version.
Nothing here prints."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone

from wm.base.clipids import parse_clip_id
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.memory.clips import STILL, ClipRecord
from wm.memory.labels import normalise_word, words
from wm.memory.output import local_time
from wm.memory.query_vectors import QueryVectors, VersionSkipped, encoders_for
from wm.memory.request import (
    QueryRequest,
    check_image,
    check_sound,
    date_range,
    parse_when,
    plan,
    range_text,
    read_audio,
    read_image,
)
from wm.memory.search import Hit, search
from wm.memory.store import Store

NEAR_SECONDS = 300  # --at finds the clip covering the instant, or the nearest this close
EMPTY = "the memory is empty: no clip has been committed yet (wm sleep --now)"


class NothingFound(WmError):
    """The query was fine but there is nothing to search: exit 3, like a search with no
    possible answer, not a usage error."""
    exit_code = 3


@dataclass
class Group:
    version: str
    searched: int       # clips held by this version in the date range
    method: str
    hits: list[Hit]


@dataclass
class Answer:
    source: str
    target: str
    groups: list[Group] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (version, why)
    anchor: ClipRecord | None = None


def _clip_by_id(store: Store, clip_id: str) -> ClipRecord:
    try:
        parse_clip_id(clip_id)
    except ValueError:
        raise WmError(f"'{clip_id}' is not a clip id (like 20250115T143012Z)") from None
    clip = store.clip(clip_id)
    if clip is None:
        raise WmError(f"clip {clip_id} is not in the memory")
    return clip


def _clip_at(store: Store, at: str) -> ClipRecord:
    try:
        when = parse_when(at)
    except ValueError as e:
        raise WmError(str(e)) from None
    before, after = store.clip_near(when.astimezone(timezone.utc).isoformat())

    def gap(c: ClipRecord | None) -> float:
        if c is None:
            return float("inf")
        end = c.start_time + timedelta(seconds=c.duration)
        return max(0.0, (c.start_time - when).total_seconds(), (when - end).total_seconds())

    best = min((before, after), key=gap)
    if gap(best) > NEAR_SECONDS:
        near = f"; the nearest is {local_time(best.start)}" if best else ""
        raise NothingFound(f"nothing was recorded around {when:%Y-%m-%d %H:%M:%S}{near}")
    return best


def _anchor(store: Store, req: QueryRequest, qkind: str) -> ClipRecord:
    anchor = _clip_by_id(store, req.clip) if req.clip is not None else _clip_at(store, req.at)
    needs = {"video": anchor.has_video, "audio": anchor.has_audio}
    if not needs.get(qkind, True):
        raise WmError(f"clip {anchor.clip_id} has no {qkind}")
    return anchor


def _examples(store: Store, text: str) -> list[ClipRecord]:
    word = normalise_word(text)
    taught = words(store)
    if word not in taught:
        known = ", ".join(sorted(taught)) or "none yet (teach one: wm label CLIP_ID WORD)"
        raise WmError(f"unknown word '{word}'; known words: {known}")
    found = [store.clip(c) for c in taught[word]]
    return [c for c in found if c is not None]


def answer(settings: Settings, paths: Paths, req: QueryRequest, load_encoders=None) -> Answer:
    """Run the search (no output). Raises WmError/NothingFound on bad input.
    `load_encoders(settings, paths, version=)` embeds pictures and sounds (default: the
    learn component's; tests pass their own)."""
    given = req.source()
    source = {"at": "clip"}.get(given, given)
    k = settings.memory.topk if req.topk is None else req.topk
    if k <= 0:
        raise WmError(f"--topk must be positive, got {k}")
    lo, hi = date_range(req)
    qkind, target = plan(source, req.modality)
    if source == "image":
        check_image(req.image)
    if source == "audio":
        check_sound(req.audio)
    if not paths.memory_db.exists():
        raise NothingFound(EMPTY)
    # The readers' lock: maintenance deletes no shard or index file this query may open.
    with Store(paths) as store, store.reading():
        # Each count reads an index of every clip (~0.1 s at 1M): none is made twice.
        total = store.count()
        if total == 0:
            raise NothingFound(EMPTY)
        anchor = _anchor(store, req, qkind) if source == "clip" else None
        examples = _examples(store, req.text) if source == "text" else None
        in_range = total if lo is None and hi is None else store.count(lo=lo, hi=hi)
        if in_range == 0:
            raise NothingFound(f"no memories {range_text(lo, hi)}")
        # Decoded only now: a picture or sound costs nothing when there is nothing to search.
        image = read_image(req.image) if source == "image" else None
        sound = read_audio(req.audio) if source == "audio" else None
        load = load_encoders or encoders_for(source)
        vectors = QueryVectors(settings, paths, store, source, qkind, load, image, sound,
                               anchor, examples)
        out = Answer(source=given, target=target, anchor=anchor)
        _rank(settings, store, vectors, out, k, lo, hi, in_range)
        if not out.groups:
            why = "; ".join(f"version {v}: {r}" for v, r in out.skipped)
            kind = "video" if target == STILL else target     # stills are its pictures
            raise NothingFound(f"no memories with {kind.replace('_', ' ')} vectors"
                               f" {range_text(lo, hi)}" + (f" ({why})" if why else ""))
        return out


def _rank(settings: Settings, store: Store, vectors: QueryVectors, out: Answer, k: int,
          lo: str | None, hi: str | None, in_range: int) -> None:
    """One group per version holding clips in lo..hi, newest version first."""
    exclude = frozenset([out.anchor.key]) if out.anchor else frozenset()
    versions = store.versions()
    for version in reversed(versions):
        # every clip in the range is held by the one version there is
        held = in_range if len(versions) == 1 else store.count(version=version, lo=lo, hi=hi)
        if held == 0:
            continue
        try:
            q = vectors.for_version(version)
        except VersionSkipped as e:
            out.skipped.append((version, e.reason))
            continue
        hits, method = search(store, version, out.target, q, k, lo, hi,
                              settings.memory.ann_min_rows, exclude)
        if hits:
            out.groups.append(Group(version, held, method, hits))
