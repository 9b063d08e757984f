"""Asking the demo's memory: every place by new pictures, new sounds and its taught word,
and every answer checked against where its clip is really from (its offset in the
recording looked up in the day's schedule)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wm.base.paths import Paths
from wm.demo.day import PLACES, SCENES, SCHEDULE, SEED
from wm.demo.folder import DemoFolder
from wm.demo.settings import TOPK

# New pictures and new sounds asked for per place: one query's answers mostly stand or
# fall together (its nearest clips are alike), so a hit rate needs several queries.
ASKED = 5


@dataclass(frozen=True)
class Kind:
    label: str          # its row in the scorecard
    title: str          # the heading of its query shown in full ({} = the place)
    shown: str | None   # the place whose query is shown in full, if any
    plain: str          # how to say it: "did not learn to tell the places apart ..."


KINDS = {
    "image": Kind("new pictures (--image)", "By picture: a new photo of the {}", "garden",
                  "by sight"),
    "image-shared": Kind("the same, --modality shared", "", None,
                         "by sight through the shared space"),
    "sound": Kind("new sounds (--audio)", "By sound: a new recording of the {}", "street",
                  "by sound"),
    "sound-video": Kind("new sounds -> pictures", "Sound to pictures: a new recording of the {}"
                        " finds its pictures", "desk", "from a sound to pictures"),
    "word": Kind("taught words (--text)", "By taught word: '{}' (its example clip left out)",
                 "kitchen", "by a taught word"),
}


@dataclass
class ResultRow:
    rank: int
    clip_id: str
    score: float
    place: str          # where the clip really is from (the schedule at its offset)
    right: bool


@dataclass
class QueryOutcome:
    kind: str           # a key of KINDS
    place: str          # the right answer
    query: str          # the picture or sound file, or the word
    results: list[ResultRow]
    chance: float       # share of the searched clips that are from `place`
    command: str        # the same query as a command line
    unanswered: str = ""   # why the memory had no answer (e.g. version 0 has no shared space)

    @property
    def right(self) -> int:
        return sum(r.right for r in self.results)


def manifests(paths: Paths, state: str | None = None) -> dict:
    """Clip id -> manifest, for the clips in the queue (in `state`)."""
    from wm.base.manifest import Manifest
    from wm.base.queue import Queue

    q = Queue(paths.memory_db)
    try:
        items = q.items(state=state)
    finally:
        q.close()
    return {i.clip_id: Manifest.read(paths.data / i.manifest) for i in items}


def truth(paths: Paths) -> dict[str, int]:
    """Where each clip in the memory is really from: its offset in the recording (from its
    manifest) looked up in the schedule the recording was made from."""
    from wm.base.queue import COMMITTED

    return {cid: SCHEDULE.clip_place(m.source.offset, m.duration)
            for cid, m in manifests(paths, COMMITTED).items()}


def example_clips(paths: Paths, where: dict[str, int]) -> dict[str, str]:
    """Word -> the clip nearest the middle of its place's first visit."""
    found = manifests(paths)
    out = {}
    for place, name in enumerate(PLACES):
        mid = SCHEDULE.visit_middle(place)
        out[name] = min((c for c, p in where.items() if p == place),
                        key=lambda c: abs(found[c].source.offset + found[c].duration / 2 - mid))
    return out


def ask(settings, paths: Paths, where: dict[str, int], kind: str, place: int, req,
        query: str, command: str, skip: frozenset[str] = frozenset()):
    """Run one query and check every result against where its clip is really from; returns
    the outcome and the memory's answer (for its contact sheet)."""
    from wm.memory.answer import NothingFound
    from wm.memory.query import answer

    pool = [p for c, p in where.items() if c not in skip]
    chance = round(sum(p == place for p in pool) / max(1, len(pool)), 4)
    try:
        ans = answer(settings, paths, req)
    except NothingFound as e:
        # Not a crash and not a miss: the memory's version cannot answer this kind at all.
        return QueryOutcome(kind, PLACES[place], query, [], chance, command, str(e)), None
    ans = replace(ans, groups=[replace(g, hits=[h for h in g.hits if h.clip.clip_id not in skip][:TOPK])
                               for g in ans.groups])
    hits = [h for g in ans.groups for h in g.hits][:TOPK]
    rows = [ResultRow(i, h.clip.clip_id, round(float(h.score), 4), PLACES[where[h.clip.clip_id]],
                      where[h.clip.clip_id] == place) for i, h in enumerate(hits, 1)]
    return QueryOutcome(kind, PLACES[place], query, rows, chance, command), ans


def queries(settings, paths: Paths, folder: DemoFolder, where: dict[str, int],
            examples: dict[str, str]) -> tuple[list[QueryOutcome], list[tuple[QueryOutcome, object]]]:
    """Every place asked for by new pictures (ranked two ways), new sounds and its taught
    word. Returns all outcomes, and those shown in full with their answers (see KINDS)."""
    import cv2

    from wm.base.media import write_wav
    from wm.demo.lively import vary_sound
    from wm.demo.synth import scene_sound, scene_still
    from wm.memory.query import QueryRequest

    rng = np.random.default_rng([SEED, 1])   # a new draw: no frame or sound of the recording
    rate = settings.capture.sample_rate
    folder.queries.mkdir(exist_ok=True)
    outcomes, detailed = [], []

    def run(kind, place, req, query, command, skip=frozenset()):
        o, ans = ask(settings, paths, where, kind, place, req, query, command, skip)
        outcomes.append(o)
        if KINDS[kind].shown == o.place and ans and not any(d.kind == kind for d, _ in detailed):
            detailed.append((o, ans))

    for place, name in enumerate(PLACES):
        for k in range(1, ASKED + 1):
            picture, sound = folder.queries / f"{name}-{k}.jpg", folder.queries / f"{name}-{k}.wav"
            cv2.imwrite(str(picture), scene_still(SCENES[place], rng, (480, 640)))
            write_wav(sound, vary_sound(scene_sound(SCENES[place], rng, 4.0, rate), rng, rate), rate)
            run("image", place, QueryRequest(image=picture, topk=TOPK), str(picture),
                f"wm query --image {picture}")
            run("image-shared", place, QueryRequest(image=picture, modality="shared", topk=TOPK),
                str(picture), f"wm query --image {picture} --modality shared")
            run("sound", place, QueryRequest(audio=sound, topk=TOPK), str(sound),
                f"wm query --audio {sound}")
            # The sound is new, so it cannot find a clip through that clip's own sound:
            # only the alignment's shared space leads from it to pictures.
            run("sound-video", place, QueryRequest(audio=sound, modality="video", topk=TOPK),
                str(sound), f"wm query --audio {sound} --modality video")
        # The example itself comes back first; it is no answer, so it is left out.
        run("word", place, QueryRequest(text=name, topk=TOPK + 1), name,
            f"wm query --text {name}", frozenset([examples[name]]))
    detailed.sort(key=lambda d: list(KINDS).index(d[0].kind))
    return outcomes, detailed


def write_sheets(paths: Paths, folder: DemoFolder, detailed) -> list[Path]:
    from wm.memory.query import write_sheet

    folder.sheets.mkdir(exist_ok=True)
    out = []
    for o, ans in detailed:
        target = folder.sheets / f"{o.kind}-{o.place}.jpg"
        write_sheet(paths, ans, target)
        out.append(target)
    return out
