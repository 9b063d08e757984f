"""Showing an answer: the table, the JSON object and the contact sheet (the best clip is
opened in the player by wm.memory.query_wire, in the process the user ran). Each result
points at its clip's video while the media exists, and at its thumbnail once retention
has deleted it."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wm.base.paths import Paths
from wm.memory import sheet
from wm.memory.clips import STILL, ClipRecord
from wm.memory.search import Hit

if TYPE_CHECKING:
    from wm.memory.answer import Answer


def local_time(start_iso: str) -> str:
    return datetime.fromisoformat(start_iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def media(paths: Paths, clip: ClipRecord) -> tuple[Path | None, Path | None]:
    """(clip video while it exists, thumbnail once media is gone)."""
    video = paths.data / clip.video if clip.video else None
    if clip.media_gone is None and video is not None and video.exists():
        return video, None
    thumb = paths.thumbnail(clip.date, clip.clip_id)
    return None, (thumb if thumb.exists() else None)


def to_json(paths: Paths, ans: Answer) -> dict:
    def hit(rank: int, h: Hit, version: str) -> dict:
        video, thumb = media(paths, h.clip)
        return {"rank": rank, "score": round(h.score, 4), "clip_id": h.clip.clip_id,
                "time": h.clip.start_time.astimezone().isoformat(),
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


def space_name(kind: str) -> str:
    """How a line of output names what the clips were ranked by."""
    return "their stills" if kind == STILL else kind.replace("_", " ")


def render(paths: Paths, ans: Answer) -> str:
    lines = []
    if ans.anchor is not None:
        video, thumb = media(paths, ans.anchor)
        what = "then" if ans.source == "at" else "like"
        lines.append(f"{what}: clip {ans.anchor.clip_id} at {local_time(ans.anchor.start)}"
                     f" {video or thumb or '(media deleted)'}")
    space = space_name(ans.target)
    for g in ans.groups:
        lines.append(f"model version {g.version}: {len(g.hits)} best of {g.searched} clips by"
                     f" {space} ({g.method})")
        lines.append(f"{'rank':>4}  {'score':>6}  {'time':<19}  {'version':<14}  clip")
        for i, h in enumerate(g.hits, 1):
            video, thumb = media(paths, h.clip)
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
            gone = "" if media(paths, h.clip)[0] else "  media gone"
            cells.append((sheet.clip_picture(paths, h.clip),
                          [f"#{i}  score {h.score:.3f}", local_time(h.clip.start),
                           f"v {g.version}{gone}"]))
    sheet.write_image(target, sheet.contact_sheet(cells))

