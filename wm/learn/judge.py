"""Promotion, judged on held-out visits: the candidate, the version in use and version 0
embed the same held-out clips, and each answers three questions without labels. A hit is
a clip of the query's own visit (its time block) among the top TOP_K answers, the query
clip left out: a feature wins it by knowing the place, not by matching a clip to itself.
Top 5, not the nearest one, because 5 is what `wm query` shows, and because the nearest
neighbour rewards telling one visit from another visit of the same place: a colour
histogram does that by each visit's light, and a model that has learnt to see the place
past the light lost to it although it found the place as often (bench/learn.py, seeds 1
and 2: -0.08 and -0.17 by nearest neighbour, +0.06 and -0.03 by top 5).

  image->image   one still of the clip against the other clips' pictures
  audio->audio   the clip's sound against the other clips' sounds
  audio->video   the clip's sound against the other clips' pictures (shared space)

The candidate is promoted unless it collapsed or scores below the version in use by more
than the tolerance, on the questions both can answer. A day too small to judge is trained
and judged by the collapse checks alone, and says so."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wm.learn.data import ClipRef
from wm.learn.embeddings import Embedder
from wm.learn.holdout import JUDGE_MIN_CLIPS, VISIT_GAP_SECONDS, time_blocks
from wm.learn.stages import load_clip_media

QUESTIONS = ("image->image", "audio->audio", "audio->video")
TOP_K = 5                     # the answers `wm query` shows by default (memory.topk)
MIN_CLIPS = JUDGE_MIN_CLIPS   # a day with fewer clips is judged by the collapse checks only


@dataclass
class Retrieval:
    """One embedder on the held-out clips: the share of queries with a clip of their own
    visit among the top k, per question (None where it cannot answer), and chance for it."""
    embedder: str
    accuracy: dict[str, float | None]
    chance: float | None
    queries: int

    def score(self, questions: list[str]) -> float | None:
        vals = [self.accuracy[q] for q in questions if self.accuracy.get(q) is not None]
        return float(np.mean(vals)) if vals else None


@dataclass
class Judgement:
    judged: bool                       # False: too few clips, collapse checks only
    promoted: bool
    winner: str                        # "candidate" or the version that stays in use
    in_use: str                        # the version in use before this night
    margin: float | None               # candidate minus the version in use, mean accuracy
    questions: list[str]               # what the margin averages over
    tolerance: float
    reason: str
    results: list[Retrieval] = field(default_factory=list)


def top_hits(queries: np.ndarray, keys: np.ndarray, blocks: np.ndarray, k: int = TOP_K) -> float | None:
    """Share of queries i with a key of their own block among their top k (key i left out)."""
    if np.isnan(queries).any() or np.isnan(keys).any():
        return None
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    c = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    sim = q @ c.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return float((blocks[top] == blocks[:, None]).any(1).mean())


def top_chance(blocks: np.ndarray, k: int = TOP_K) -> float:
    """What random answers get: for a query with m visit-mates among the n - 1 other
    clips, the chance that k drawn without replacement hold at least one of them."""
    n = len(blocks)
    mates = np.bincount(blocks)[blocks] - 1
    k = min(k, n - 1)
    return float(np.mean([1 - math.comb(n - 1 - m, k) / math.comb(n - 1, k) for m in mates]))


def retrieval(embedder: Embedder, name: str, stills: list[list[np.ndarray]], audio: list[np.ndarray],
              blocks: np.ndarray) -> Retrieval:
    """The three questions for one embedder; clips already limited to those with a
    visit-mate among them, and with stills and sound."""
    emb = embedder.embed_clips(stills, audio)
    image_q = np.concatenate([embedder.embed_image(s[len(s) // 2]).video for s in stills])
    acc = {"image->image": top_hits(image_q, emb.video, blocks),
           "audio->audio": top_hits(emb.audio, emb.audio, blocks),
           "audio->video": top_hits(emb.shared_audio, emb.shared_video, blocks)}
    return Retrieval(name, acc, top_chance(blocks), len(blocks))


def held_out_media(clips: list[ClipRef]) -> tuple[list[list[np.ndarray]], list[np.ndarray], np.ndarray]:
    """Stills, sound and visit of each held-out clip that has both and a visit-mate."""
    clips = [c for c in clips if c.stills and c.audio]
    blocks = time_blocks(np.array([c.start for c in clips]), VISIT_GAP_SECONDS)
    mates = np.bincount(blocks, minlength=1)[blocks] > 1 if len(clips) else np.zeros(0, bool)
    keep = [c for c, m in zip(clips, mates) if m]
    stills, audio = load_clip_media(keep)
    return stills, audio, blocks[mates]


def judge(candidate: Embedder, in_use: Embedder, version0: Embedder, clips: list[ClipRef],
          day_clips: int, collapsed: list[str], tolerance: float) -> Judgement:
    """The verdict on the candidate against the version in use (version 0 is measured for
    the record, and is the version in use when none is promoted)."""
    if collapsed:
        return Judgement(False, False, in_use.version, in_use.version, None, [], tolerance,
                         f"collapse: {', '.join(collapsed)}")
    stills, audio, blocks = held_out_media(clips)
    visits = len(np.unique(blocks))
    if day_clips < MIN_CLIPS:
        return Judgement(False, True, "candidate", in_use.version, None, [], tolerance,
                         f"too small to judge ({day_clips} clips in the night; it takes {MIN_CLIPS}):"
                         " every clip trained on, collapse checks only")
    if visits < 2:
        return Judgement(False, True, "candidate", in_use.version, None, [], tolerance,
                         f"too small to judge ({len(blocks)} clips held out in {visits} visit; it"
                         " takes 2 visits): collapse checks only")
    results = [retrieval(candidate, "candidate", stills, audio, blocks)]
    others = [in_use] if in_use.version == version0.version else [in_use, version0]
    results += [retrieval(e, e.version, stills, audio, blocks) for e in others]
    cand, cur = results[0], results[1]
    common = [q for q in QUESTIONS if cand.accuracy[q] is not None and cur.accuracy[q] is not None]
    margin = cand.score(common) - cur.score(common) if common else None
    promoted = margin is None or margin >= -tolerance
    winner = "candidate" if promoted else in_use.version
    reason = (f"candidate {cand.score(common):.2f} vs {in_use.version} {cur.score(common):.2f} "
              f"({'+' if (margin or 0) >= 0 else ''}{margin or 0:.2f}) on {', '.join(common)}; "
              f"chance {cand.chance:.2f}" if common else "nothing in common to compare")
    return Judgement(True, promoted, winner, in_use.version, margin, common, tolerance, reason, results)
