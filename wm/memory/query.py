"""`wm query`: find moments by a picture, a sound, a clip, a time or a taught word.

Model versions never share a ranking. Each clip is searched through exactly one version,
the newest one it is embedded with; every version that holds clips in the date range is
searched separately with the query embedded by that version, and the results come in one
block per version, newest version first.

Exit codes: 0 results shown; 2 bad input (unreadable file, unknown clip id or word,
malformed time or dates); 3 nothing to search (empty memory, no clips in the date range,
none with the asked-for modality).

The parts: wm.memory.request (what was asked), wm.memory.query_vectors (the query per
model version), wm.memory.answer (the ranking), wm.memory.output (what is shown)."""
from __future__ import annotations

import io
import json

from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.memory import sheet
from wm.memory.answer import Answer, Group, NothingFound, answer
from wm.memory.output import media, render, to_json, write_sheet
from wm.memory.query_wire import Reply, emit
from wm.memory.request import QueryRequest, parse_when, plan

__all__ = ["Answer", "Group", "NothingFound", "QueryRequest", "Reply", "answer", "compose",
           "parse_when", "plan", "render", "run_query", "to_json", "write_sheet"]


def run_query(settings: Settings, paths: Paths, req: QueryRequest, load_encoders=None) -> int:
    """`wm query` done in this process (the query service's children do the same)."""
    return emit(compose(settings, paths, req, load_encoders))


def compose(settings: Settings, paths: Paths, req: QueryRequest, load_encoders=None) -> Reply:
    """Everything `wm query` shows, as a Reply: the in-process command and the query
    service both show it through query_wire.emit, so their output is the same. A WmError
    keeps what was already to be printed (the results before a contact sheet that failed)."""
    out, reply = io.StringIO(), Reply()
    try:
        _compose(settings, paths, req, load_encoders, out, reply)
    except WmError as e:
        reply.rc, reply.error, reply.exception = e.exit_code, str(e), e
    reply.out = out.getvalue()
    return reply


def _compose(settings: Settings, paths: Paths, req: QueryRequest, load_encoders,
             out: io.StringIO, reply: Reply) -> None:
    if req.show is not None:
        sheet.check_target(req.show)
    ans = answer(settings, paths, req, load_encoders)
    if req.as_json:
        print(json.dumps(to_json(paths, ans), indent=1), file=out)
    else:
        print(render(paths, ans), file=out)
    if req.show is not None:
        write_sheet(paths, ans, req.show)
        if not req.as_json:
            print(f"contact sheet: {req.show}", file=out)
    if req.open_best:
        if not ans.groups:
            raise NothingFound("nothing to open")
        best = ans.groups[0].hits[0].clip
        video, _ = media(paths, best)
        if video is None:
            reply.note = (f"wm: the best clip ({best.clip_id}) has no video to open: its media"
                          " was deleted")
        else:
            reply.open = str(video)
