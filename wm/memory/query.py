"""`wm query`: find moments by a picture, a sound, a clip, a time or a taught word.

Model versions never share a ranking. Each clip is searched through exactly one version,
the newest one it is embedded with; every version that holds clips in the date range is
searched separately with the query embedded by that version, and the results come in one
block per version, newest version first.

Exit codes: 0 results shown; 2 bad input (unreadable file, unknown clip id or word,
malformed time or dates); 3 nothing to search (empty memory, no clips in the date range,
none with the asked-for modality)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from wm.base.clipids import parse_clip_id
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.memory import sheet
from wm.memory.search import Hit, search
from wm.memory.store import ClipRecord, Store

SAMPLE_RATE = 16000
NEAR_SECONDS = 300  # --at finds the clip covering the instant, or the nearest this close


class NothingFound(WmError):
    """The query was fine but there is nothing to search: exit 3, like a search with no
    possible answer, not a usage error."""
    exit_code = 3


@dataclass(frozen=True)
class QueryRequest:
    image: Path | None = None
    audio: Path | None = None
    clip: str | None = None
    at: str | None = None
    text: str | None = None
    modality: str | None = None      # "video" | "audio" | "shared"; None: the query's own
    topk: int | None = None
    date: str | None = None
    since: str | None = None
    until: str | None = None
    as_json: bool = False
    show: Path | None = None
    open_best: bool = False


# (what the query is, ranking modality) -> (kind of query vector, kind of stored vector).
# A picture is compared with how clips look in the vision encoder's own space, and with how
# they sound (or both) through the shared space; a sound likewise. A clip, a time or a word
# is compared in whichever space is asked for, with its own vector of that kind.
PLANS: dict[tuple[str, str], tuple[str, str]] = {
    ("image", "video"): ("video", "video"),
    ("image", "audio"): ("shared_video", "shared_audio"),
    ("image", "shared"): ("shared_video", "shared"),
    ("audio", "audio"): ("audio", "audio"),
    ("audio", "video"): ("shared_audio", "shared_video"),
    ("audio", "shared"): ("shared_audio", "shared"),
    **{(src, m): (m, m) for src in ("clip", "text") for m in ("video", "audio", "shared")},
}
DEFAULT_MODALITY = {"image": "video", "audio": "audio", "clip": "shared", "text": "shared"}


def plan(source: str, modality: str | None) -> tuple[str, str]:
    return PLANS[(source, modality or DEFAULT_MODALITY[source])]


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """'yesterday 14:30', 'today 9:05', '14:30', '2025-01-15 14:30', ISO 8601 (naive means
    local time), '2h ago'. ValueError naming the text otherwise."""
    now = (now or datetime.now().astimezone())
    t = text.strip().lower()
    m = re.fullmatch(r"(?:(today|yesterday)\s+)?(\d{1,2}):(\d{2})(?::(\d{2}))?", t)
    if m:
        day, hh, mm, ss = m.groups()
        if int(hh) > 23 or int(mm) > 59 or int(ss or 0) > 59:
            raise ValueError(f"'{text}' is not a time of day")
        base = now - timedelta(days=1) if day == "yesterday" else now
        return base.replace(hour=int(hh), minute=int(mm), second=int(ss or 0), microsecond=0)
    m = re.fullmatch(r"(.+)\s+ago", t)
    if m:
        from wm.base.durations import parse_duration

        return now - timedelta(seconds=parse_duration(m.group(1)))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"'{text}' is not a time (try \"yesterday 14:30\", \"2025-01-15 14:30\""
                         " or \"2h ago\")") from None
    return when if when.tzinfo else when.astimezone()


def date_range(req: QueryRequest) -> tuple[str | None, str | None]:
    if req.date and (req.since or req.until):
        raise WmError("--date cannot be combined with --since/--until")
    lo, hi = (req.date, req.date) if req.date else (req.since, req.until)
    if lo and hi and lo > hi:
        raise WmError(f"--since {lo} is after --until {hi}")
    return lo, hi


def read_image(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise WmError(f"{path}: no such file")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise WmError(f"{path}: not a readable image (JPEG, PNG, BMP, TIFF, WebP ...)")
    return img


def read_audio(path: Path) -> np.ndarray:
    """Any audio file PyAV can decode, as 16 kHz mono int16."""
    import av

    if not path.is_file():
        raise WmError(f"{path}: no such file")
    try:
        with av.open(str(path)) as f:
            if not f.streams.audio:
                raise WmError(f"{path}: has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in f.decode(f.streams.audio[0]):
                chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(frame)]
            chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as e:
        raise WmError(f"{path}: not a readable audio file ({e})") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if len(samples) < SAMPLE_RATE // 10:
        raise WmError(f"{path}: has less than 0.1 s of sound")
    return samples.astype(np.int16)


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


class _QueryVectors:
    """The query as a vector of one kind, per model version (encoders loaded lazily)."""

    def __init__(self, settings: Settings, paths: Paths, store: Store, source: str, kind: str,
                 load, image=None, sound=None, anchor: ClipRecord | None = None,
                 examples: list[ClipRecord] | None = None):
        self.settings, self.paths, self.store, self.load = settings, paths, store, load
        self.source, self.kind = source, kind
        self.image, self.sound, self.anchor, self.examples = image, sound, anchor, examples
        self._encoders: dict = {}

    def encoders(self, version: str):
        if version not in self._encoders:
            self._encoders[version] = self.load(self.settings, self.paths, version=version)
        return self._encoders[version]

    def for_version(self, version: str) -> np.ndarray | str:
        """The vector, or why there is none for this version."""
        try:
            if self.source == "image":
                return getattr(self.encoders(version).embed_image(self.image), self.kind)[0]
            if self.source == "audio":
                return getattr(self.encoders(version).embed_sound(self.sound), self.kind)[0]
        except WmError as e:
            return f"its model cannot be loaded ({e})"
        if self.source == "text":
            vecs = [v for v in (self.store.vector(c, version, self.kind) for c in self.examples)
                    if v is not None]
            if not vecs:
                return "no example of the word has vectors of this version"
            return np.mean(vecs, axis=0)
        vec = self.store.vector(self.anchor, version, self.kind)
        if vec is None:
            vec = self._embed_anchor(version)
        return vec if vec is not None else "the clip has no vectors of this version"

    def _embed_anchor(self, version: str) -> np.ndarray | None:
        from wm.memory.commit import embed, read_media
        from wm.memory.store import NewClip

        a = self.anchor
        if a.media_gone is not None:
            return None
        loaded = read_media(self.paths, NewClip(a.clip_id, a.date, a.start, a.duration,
                                                a.manifest, a.video, a.audio, a.frames))
        try:
            row = embed(self.encoders(version), [loaded])[self.kind][0] if loaded else None
        except WmError:
            return None
        return None if row is None or np.isnan(row).any() else row


def _anchor_clip(store: Store, req: QueryRequest) -> ClipRecord:
    if req.clip is not None:
        try:
            parse_clip_id(req.clip)
        except ValueError:
            raise WmError(f"'{req.clip}' is not a clip id (like 20250115T143012Z)") from None
        clip = store.clip(req.clip)
        if clip is None:
            raise WmError(f"clip {req.clip} is not in the memory")
        return clip
    try:
        when = parse_when(req.at)
    except ValueError as e:
        raise WmError(str(e)) from None
    iso = when.astimezone(timezone.utc).isoformat()
    before, after = store.clip_near(iso)

    def gap(c: ClipRecord | None) -> float:
        if c is None:
            return float("inf")
        start = datetime.fromisoformat(c.start)
        end = start + timedelta(seconds=c.duration)
        return max(0.0, (start - when).total_seconds(), (when - end).total_seconds())

    best = min((before, after), key=gap)
    if gap(best) > NEAR_SECONDS:
        near = f"; the nearest is {local_time(best.start)}" if best else ""
        raise NothingFound(f"nothing was recorded around {when:%Y-%m-%d %H:%M:%S}{near}")
    return best


def _load_encoders(settings: Settings, paths: Paths, version: str):
    from wm.learn.encoders import load_encoders

    return load_encoders(settings, paths, version=version)


def answer(settings: Settings, paths: Paths, req: QueryRequest, load_encoders=None) -> Answer:
    """Run the search (no output). Raises WmError/NothingFound on bad input.
    `load_encoders(settings, paths, version=)` embeds pictures and sounds (default: the
    learn component's; tests pass their own)."""
    sources = [s for s in ("image", "audio", "clip", "at", "text") if getattr(req, s) is not None]
    if len(sources) != 1:
        raise WmError("give exactly one of --image, --audio, --clip, --at, --text")
    source = {"at": "clip"}.get(sources[0], sources[0])
    k = settings.memory.topk if req.topk is None else req.topk
    if k <= 0:
        raise WmError(f"--topk must be positive, got {k}")
    lo, hi = date_range(req)
    qkind, target = plan(source, req.modality)
    image = read_image(req.image) if source == "image" else None
    sound = read_audio(req.audio) if source == "audio" else None
    if not paths.memory_db.exists():
        raise NothingFound("the memory is empty: no clip has been committed yet (wm sleep --now)")
    with Store(paths) as store:
        if store.count() == 0:
            raise NothingFound("the memory is empty: no clip has been committed yet"
                               " (wm sleep --now)")
        anchor, examples = None, None
        if source == "clip":
            anchor = _anchor_clip(store, req)
            needs = {"video": anchor.has_video, "audio": anchor.has_audio}
            if not needs.get(qkind, True):
                raise WmError(f"clip {anchor.clip_id} has no {qkind}")
        if source == "text":
            from wm.memory.labels import normalise_word

            word = normalise_word(req.text)
            words = store.words()
            if word not in words:
                known = ", ".join(sorted(words)) or "none yet (teach one: wm label CLIP_ID WORD)"
                raise WmError(f"unknown word '{word}'; known words: {known}")
            found = [store.clip(c) for c in words[word]]
            examples = [c for c in found if c is not None]
        if store.count(lo=lo, hi=hi) == 0:
            raise NothingFound(f"no memories {_range_text(lo, hi)}")
        vectors = _QueryVectors(settings, paths, store, source, qkind,
                                load_encoders or _load_encoders, image, sound, anchor, examples)
        out = Answer(source=sources[0], target=target, anchor=anchor)
        exclude = frozenset([anchor.key]) if anchor else frozenset()
        for version in reversed(store.versions()):
            held = store.count(version=version, lo=lo, hi=hi)
            if held == 0:
                continue
            q = vectors.for_version(version)
            if isinstance(q, str):
                out.skipped.append((version, q))
                continue
            hits, method = search(store, version, target, q, k, lo, hi,
                                  settings.memory.ann_min_rows, exclude)
            if hits:
                out.groups.append(Group(version, held, method, hits))
        if not out.groups:
            why = "; ".join(f"version {v}: {r}" for v, r in out.skipped)
            raise NothingFound(f"no memories with {target.replace('_', ' ')} vectors"
                               f" {_range_text(lo, hi)}" + (f" ({why})" if why else ""))
        return out


def _range_text(lo: str | None, hi: str | None) -> str:
    if lo and lo == hi:
        return f"on {lo}"
    if lo and hi:
        return f"from {lo} to {hi}"
    return f"from {lo} on" if lo else (f"up to {hi}" if hi else "at all")


def local_time(start_iso: str) -> str:
    return datetime.fromisoformat(start_iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _media(paths: Paths, clip: ClipRecord) -> tuple[Path | None, Path | None]:
    """(clip video while it exists, thumbnail once media is gone)."""
    video = paths.data / clip.video if clip.video else None
    if clip.media_gone is None and video is not None and video.exists():
        return video, None
    thumb = paths.thumbnail(clip.date, clip.clip_id)
    return None, (thumb if thumb.exists() else None)


def to_json(paths: Paths, ans: Answer) -> dict:
    def hit(rank: int, h: Hit, version: str) -> dict:
        video, thumb = _media(paths, h.clip)
        return {"rank": rank, "score": round(h.score, 4), "clip_id": h.clip.clip_id,
                "time": datetime.fromisoformat(h.clip.start).astimezone().isoformat(),
                "date": h.clip.date, "version": version,
                "media": "present" if video else "gone",
                "clip": str(video) if video else None,
                "thumbnail": str(thumb) if thumb else None}

    return {
        "query": ans.source, "ranked_by": ans.target,
        "anchor": hit(0, Hit(ans.anchor, 1.0), ans.anchor.version) if ans.anchor else None,
        "groups": [{"version": g.version, "searched": g.searched, "method": g.method,
                    "results": [hit(i + 1, h, g.version) for i, h in enumerate(g.hits)]}
                   for g in ans.groups],
        "skipped": [{"version": v, "reason": why} for v, why in ans.skipped],
    }


def render(paths: Paths, ans: Answer) -> str:
    lines = []
    if ans.anchor is not None:
        video, thumb = _media(paths, ans.anchor)
        what = "then" if ans.source == "at" else "like"
        lines.append(f"{what}: clip {ans.anchor.clip_id} at {local_time(ans.anchor.start)}"
                     f" {video or thumb or '(media deleted)'}")
    space = ans.target.replace("_", " ")
    for g in ans.groups:
        lines.append(f"model version {g.version}: {len(g.hits)} best of {g.searched} clips by"
                     f" {space} ({g.method})")
        lines.append(f"{'rank':>4}  {'score':>6}  {'time':<19}  {'version':<14}  clip")
        for i, h in enumerate(g.hits, 1):
            video, thumb = _media(paths, h.clip)
            where = str(video) if video else (
                f"media deleted (thumbnail {thumb})" if thumb else "media deleted")
            lines.append(f"{i:>4}  {h.score:>6.3f}  {local_time(h.clip.start):<19}"
                         f"  {g.version:<14}  {where}")
    for v, why in ans.skipped:
        lines.append(f"model version {v}: not searched: {why}")
    return "\n".join(lines)


def write_sheet(paths: Paths, ans: Answer, target: Path) -> None:
    cells = []
    for g in ans.groups:
        for i, h in enumerate(g.hits, 1):
            gone = "" if _media(paths, h.clip)[0] else "  media gone"
            cells.append((sheet.clip_picture(paths, h.clip),
                          [f"#{i}  score {h.score:.3f}", local_time(h.clip.start),
                           f"v {g.version}{gone}"]))
    sheet.write_image(target, sheet.contact_sheet(cells))


def open_in_player(path: Path) -> None:
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    exe = shutil.which(opener)
    if exe is None:
        raise WmError(f"cannot open {path}: '{opener}' was not found")
    subprocess.Popen([exe, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def run_query(settings: Settings, paths: Paths, req: QueryRequest, load_encoders=None) -> int:
    if req.show is not None:
        sheet.check_target(req.show)
    ans = answer(settings, paths, req, load_encoders)
    if req.as_json:
        print(json.dumps(to_json(paths, ans), indent=1))
    else:
        print(render(paths, ans))
    if req.show is not None:
        write_sheet(paths, ans, req.show)
        if not req.as_json:
            print(f"contact sheet: {req.show}")
    if req.open_best:
        if not ans.groups:
            raise NothingFound("nothing to open")
        best = ans.groups[0].hits[0].clip
        video, _ = _media(paths, best)
        if video is None:
            print(f"wm: the best clip ({best.clip_id}) has no video to open: its media was"
                  " deleted", file=sys.stderr)
        else:
            open_in_player(video)
    return 0
