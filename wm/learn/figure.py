"""The nightly report's figure (reports/{date}.png), drawn with matplotlib from the same
numbers the report's JSON holds, so that what a person sees is what a script reads.

Everything here works on plain dicts (the report as written to JSON), never on the
evaluation's dataclass: the evaluation grows fields from release to release, and a
figure must draw whatever a night (or an older night in the history) has, and skip what
it lacks. matplotlib is imported inside `draw_figure` only: `wm query` and `wm status`
import this package and must not pay a second for a plotting library they never use."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

STAGES = (("jepa", "JEPA (vision)", "smooth-L1 loss (layer-normed features)"),
          ("cpc", "CPC (audio)", "InfoNCE loss (nats)"),
          ("align", "alignment (audio-visual)", "symmetric InfoNCE loss (nats)"))
# Keys of a retrieval score and of its chance level, in any version's block of the evaluation.
SCORE_WORDS = ("recall", "precision", "hit")
HISTORY_NIGHTS = 30     # the history panel shows at most this many nights, the newest last
COLOURS = {"candidate": "tab:blue", "current": "tab:orange", "version 0": "tab:gray"}


@dataclass
class Retrieval:
    """One version's held-out retrieval scores: metric name -> value, and the chance level
    of the same metrics where the evaluation gives it."""
    name: str
    scores: dict[str, float]
    chance: dict[str, float]


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _is_score(key: str) -> bool:
    return any(w in key for w in SCORE_WORDS) and "chance" not in key


def _retrieval_block(name: str, d: dict) -> Retrieval | None:
    """A dict's retrieval numbers (recall_at_5, precision_at_5 ..., or an `accuracy` dict
    of questions such as image->image) and their chance levels (recall_chance_at_5,
    chance_recall_at_5, or one `chance` for all), or None if it has none."""
    scores = {k: v for k, v in ((k, _num(v)) for k, v in d.items()) if v is not None and _is_score(k)}
    if isinstance(d.get("accuracy"), dict):
        scores.update({k: v for k, v in ((k, _num(v)) for k, v in d["accuracy"].items()) if v is not None})
    if not scores:
        return None
    chance: dict[str, float] = {}
    for k, v in d.items():
        if "chance" not in k or _num(v) is None:
            continue
        target = k.replace("_chance", "").replace("chance_", "")
        for s in scores:
            if k == "chance" or s == target:
                chance.setdefault(s, float(v))
    # recall@1 has no chance field of its own: among n clips it is k/n.
    n = _num(d.get("retrieval_clips")) or _num(d.get("n"))
    for s in scores:
        k = s.rsplit("_at_", 1)[-1]
        if s not in chance and n and "_at_" in s and k.isdigit():
            chance[s] = min(int(k), n) / n
    return Retrieval(name, scores, chance)


def _label(key: str) -> str:
    low = key.lower()
    if low in ("candidate", "night", "new", "trained"):
        return "candidate"
    if low in ("version0", "version_0", "v0", "fixed", "baseline", "0"):
        return "version 0"
    if low in ("current", "in_use", "incumbent", "previous"):
        return "current"
    return f"current {key}" if low[:1].isdigit() else key.replace("_", " ")


def _nested(key: str, value, depth: int = 0) -> list[tuple[str, dict]]:
    """The named blocks under one evaluation field: itself if it is a version's block, else
    the blocks among its entries (a dict of versions, a list of them, or a verdict that
    holds such a list)."""
    if isinstance(value, dict):
        if _retrieval_block(key, value):
            return [(key, value)]
        if depth >= 2:
            return []
        return [b for k, v in value.items() for b in _nested(k, v, depth + 1)]
    if isinstance(value, list) and depth <= 2:
        return [(str(v.get("embedder") or v.get("name") or v.get("label") or v.get("version") or i), v)
                for i, v in enumerate(value) if isinstance(v, dict)]
    return []


def retrievals(evaluation: dict) -> list[Retrieval]:
    """Every version the evaluation measured retrieval for: its own flat fields are the
    night's candidate; nested blocks (the current version, version 0, ...) are drawn next
    to it, wherever they sit. The same version's blocks are merged. The candidate first,
    then the current version, then version 0, then anything else."""
    found: dict[str, Retrieval] = {}
    blocks = [("candidate", evaluation)] + [b for k, v in evaluation.items() for b in _nested(k, v)]
    for name, block in blocks:
        r = _retrieval_block(_label(name), block)
        if r is None:
            continue
        if r.name in found:
            found[r.name].scores.update(r.scores)
            found[r.name].chance.update(r.chance)
        else:
            found[r.name] = r
    order = {"candidate": 0, "current": 1, "version 0": 2}
    return sorted(found.values(), key=lambda r: order.get(r.name.split(" ")[0] if r.name.startswith("current")
                                                          else r.name, 3))


def draw_figure(report: dict, accuracy: list[list[float]], history: list[dict]) -> bytes:
    """PNG bytes: a loss panel per stage, CPC accuracy against chance, held-out retrieval
    per version, and the nights so far. `accuracy`: CPC's training accuracy as
    [step, mean] points; `history`: earlier reports (dicts), oldest first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    stages = report.get("stages") or {}
    for ax, (key, title, unit) in zip(axes[0], STAGES):
        _loss_panel(ax, stages.get(key), title, unit)
    ev = report.get("evaluation") or {}
    _accuracy_panel(axes[1][0], accuracy, ev)
    _retrieval_panel(axes[1][1], retrievals(ev))
    _history_panel(axes[1][2], history + [report])
    fig.suptitle(_headline(report), fontsize=12)
    fig.get_layout_engine().set(h_pad=0.12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _headline(r: dict) -> str:
    verdict = "promoted" if r.get("promoted") else "NOT promoted"
    ev = r.get("evaluation") or {}
    collapse = f"; collapsed: {', '.join(ev['collapse'])}" if ev.get("collapse") else ""
    verdict_why = (ev.get("judgement") or {}).get("reason") if isinstance(ev.get("judgement"), dict) else None
    return (f"wm night {r.get('date')}: version {r.get('version') or '-'}, {verdict}{collapse}\n"
            + (f"{verdict_why}\n" if verdict_why else "")
            + f"{r.get('clips_train', 0)} clips trained, {r.get('clips_held_out', 0)} held out,"
            f" {r.get('clips_replay', 0)} replayed; {r.get('seconds', 0):.0f} s on {r.get('device', '?')}")


def _loss_panel(ax, stage: dict | None, title: str, unit: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    points = (stage or {}).get("loss_curve") or []
    if not points:
        ax.text(0.5, 0.5, "not trained this night", ha="center", va="center", transform=ax.transAxes)
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.plot(xs, ys, color="tab:red", lw=0.8, alpha=0.35, label="per step")
    ax.plot(xs, _smooth(ys), color="tab:red", lw=1.8, label="running mean")
    for k, step in enumerate(stage.get("resumed_at") or []):
        ax.axvline(step, color="gray", ls=":", lw=1, label="resumed here" if k == 0 else None)
    rate = stage.get("per_second") or 0
    speed = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
    ax.set_title(f"{title}\n{stage.get('steps')}/{stage.get('max_steps')} steps in"
                 f" {stage.get('seconds', 0):.0f} s ({speed} {stage.get('unit', '')}/s)", fontsize=10)
    if stage.get("note"):
        ax.text(0.02, 0.02, stage["note"], fontsize=8, transform=ax.transAxes, wrap=True)
    ax.legend(fontsize=8, loc="upper right")


def _smooth(ys: list[float]) -> list[float]:
    """A centred running mean over about a twentieth of the curve: the trend under the
    step-to-step noise of small batches."""
    half = max(1, len(ys) // 40)
    return [sum(ys[max(0, i - half):i + half + 1]) / len(ys[max(0, i - half):i + half + 1])
            for i in range(len(ys))]


def _accuracy_panel(ax, accuracy: list[list[float]], ev: dict) -> None:
    ax.set_title("CPC: picking the true future frame", fontsize=10)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (share of predictions right)")
    ax.grid(alpha=0.3)
    if accuracy:
        ax.plot([p[0] for p in accuracy], [p[1] for p in accuracy], color="tab:green", lw=1.3,
                label="training batches")
    held = _num(ev.get("cpc_accuracy"))
    if held is not None:
        ax.axhline(held, color="tab:blue", lw=1.5, label=f"held-out clips: {held:.2f}")
    chance = _num(ev.get("cpc_chance"))
    if chance is not None:
        ax.axhline(chance, color="black", ls="--", lw=1, label=f"chance: {chance:.3f}")
    per_step = [a for a in ev.get("cpc_accuracy_per_step") or [] if _num(a) is not None]
    if per_step:
        ax.text(0.98, 0.97, f"held out, 1..{len(per_step)} frames ahead:\n"
                + " ".join(f"{a:.2f}" for a in per_step), ha="right", va="top", fontsize=8,
                transform=ax.transAxes)
    ax.set_ylim(0, 1)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, loc="upper left")


def _retrieval_panel(ax, found: list[Retrieval]) -> None:
    ax.set_title("held-out clips: retrieval per version, on the same clips", fontsize=10)
    ax.set_ylabel("hit rate (share of held-out queries)")
    ax.set_ylim(0, 1.32)     # room above 1 for the legend
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.grid(alpha=0.3, axis="y")
    metrics = list(dict.fromkeys(m for r in found for m in r.scores))
    if not metrics:
        ax.text(0.5, 0.5, "no retrieval measured\n(too few held-out clips with sound and pictures)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    width = 0.8 / len(found)
    for i, r in enumerate(found):
        xs = [j - 0.4 + width * (i + 0.5) for j, m in enumerate(metrics) if m in r.scores]
        ys = [r.scores[m] for m in metrics if m in r.scores]
        colour = next((c for k, c in COLOURS.items() if r.name.startswith(k)), None)
        bars = ax.bar(xs, ys, width * 0.9, label=r.name, color=colour)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    labelled = False
    for j, m in enumerate(metrics):
        chance = next((r.chance[m] for r in found if m in r.chance), None)
        if chance is not None:
            ax.hlines(chance, j - 0.45, j + 0.45, colors="black", linestyles="--", lw=1,
                      label=None if labelled else "chance")
            labelled = True
    ax.set_xticks(range(len(metrics)), [_metric(m) for m in metrics], fontsize=8)
    ax.set_xlabel("recall@k: a clip's sound finds its own pictures in the top k\n"
                  "a->b: an a finds a b of its own visit in the top 5", fontsize=8)
    ax.legend(fontsize=8, loc="upper center", ncols=len(found) + 1)


def _metric(name: str) -> str:
    if "->" in name:
        a, b = name.split("->", 1)
        return f"{a}\n-> {b}"
    return name.replace("_at_", "@").replace("_", " ")


def _night_points(night: dict) -> dict[str, float]:
    """The numbers a night contributes to the history: the candidate's held-out recall@5
    (and its chance), the mean over the judged questions (image->image ...) of the
    candidate and of version 0, and the held-out CPC accuracy."""
    ev = night.get("evaluation") or {}
    out = {}
    for r in retrievals(ev):
        if r.name == "candidate" and "recall_at_5" in r.scores:
            out["candidate recall@5"] = r.scores["recall_at_5"]
            if "recall_at_5" in r.chance:
                out["chance of recall@5"] = r.chance["recall_at_5"]
        questions = [v for k, v in r.scores.items() if "->" in k]
        if questions and r.name in ("candidate", "version 0"):
            out[f"{r.name}, mean of {len(questions)} judged questions"] = sum(questions) / len(questions)
    acc = _num(ev.get("cpc_accuracy"))
    if acc is not None:
        out["CPC accuracy"] = acc
    return out


def _history_panel(ax, nights: list[dict]) -> None:
    nights = nights[-HISTORY_NIGHTS:]
    ax.set_title(f"the last {len(nights)} night{'s' if len(nights) != 1 else ''}: is it getting better?",
                 fontsize=10)
    ax.set_ylabel("held-out score (0..1)")
    ax.set_ylim(0, 1.08)
    ax.grid(alpha=0.3)
    points = [_night_points(n) for n in nights]
    names = list(dict.fromkeys(k for p in points for k in p))
    promoted = [bool(n.get("promoted")) for n in nights]
    for name in names:
        xs = [i for i, p in enumerate(points) if name in p]
        ys = [points[i][name] for i in xs]
        colour = {"candidate recall@5": "tab:blue", "CPC accuracy": "tab:green"}.get(name) or (
            "tab:purple" if name.startswith("candidate") else "tab:gray" if "version 0" in name else None)
        if name.startswith("chance"):   # a short bar per night: visible for a single night too
            ax.plot(xs, ys, color="black", ls="--", lw=1, marker="_", markersize=18, label=name)
            continue
        line, = ax.plot(xs, ys, label=name, color=colour, ls=":" if "version 0" in name else "-")
        # Filled: that night's version was promoted; hollow: it was not.
        ax.scatter(xs, ys, edgecolors=line.get_color(), zorder=3,
                   facecolors=[line.get_color() if promoted[i] else "white" for i in xs])
    ax.set_xticks(range(len(nights)), [str(n.get("date", "?"))[5:] for n in nights],
                  rotation=45 if len(nights) > 6 else 0, fontsize=8)
    ax.set_xlabel("night (month-day); hollow marker: not promoted")
    if names:
        ax.legend(fontsize=8, loc="best")
