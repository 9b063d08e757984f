"""Running the checks and saying what they found: `wm check` (exit 0 when nothing is
left wrong, 1 when something is) and the cheap part at `wm run` start-up."""
from __future__ import annotations

from typing import Callable

from wm.base import log
from wm.base.config import Settings
from wm.base.paths import Paths
from wm.check import checks
from wm.check.problems import CheckResult, Problem

Check = Callable[..., list[Problem]]
CHEAP: tuple[Check, ...] = (checks.stale_partials, checks.dead_claims)
FULL: tuple[Check, ...] = CHEAP + (checks.orphan_media, checks.queue_and_files, checks.model_files,
                                   checks.memory_files)

_log = log.get("wm.check")


def check(settings: Settings, paths: Paths, repair: bool, which: tuple[Check, ...] = FULL,
          now: float | None = None, grace: float | None = None) -> CheckResult:
    ctx = checks.Context(settings, paths, now, grace)
    found: list[Problem] = []
    for c in which:
        found += c(ctx)
    result = CheckResult(found, [], [])
    if repair:
        for p in found:
            if p.repair is None:
                continue
            try:
                result.repaired.append((p, p.repair()))
            except OSError as e:
                result.failed.append((p, e.strerror or str(e)))
    if found:
        _log.warning("check_done", found=len(found), repaired=len(result.repaired),
                     failed=len(result.failed), kinds=sorted({p.kind for p in found}))
    return result


def startup_check(settings: Settings, paths: Paths) -> CheckResult:
    """What `wm run` does before it records: the cheap checks, repaired."""
    return check(settings, paths, repair=True, which=CHEAP)


def report_lines(r: CheckResult, per_kind: int = 5) -> list[str]:
    """One line per problem, at most `per_kind` of each kind and then a count (a crash
    can leave thousands of one kind)."""
    fixed = {id(p): did for p, did in r.repaired}
    broken = {id(p): why for p, why in r.failed}
    lines, shown = [], {}
    for p in r.found:
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if shown[p.kind] > per_kind:
            continue
        if id(p) in fixed:
            lines.append(f"repaired  {p.line()}: {fixed[id(p)]}")
        elif id(p) in broken:
            lines.append(f"FAILED    {p.line()}: {broken[id(p)]}")
        else:
            hint = "" if p.repairable else " (cannot be repaired automatically)"
            lines.append(f"found     {p.line()}{hint}")
    lines += [f"          ... and {n - per_kind} more of kind '{kind}'"
              for kind, n in shown.items() if n > per_kind]
    return lines


def run_check(settings: Settings, paths: Paths, repair: bool, grace: float | None = None) -> int:
    r = check(settings, paths, repair, grace=grace)
    if not r.found:
        print(f"wm check: {paths.root}: nothing wrong")
        return 0
    for line in report_lines(r):
        print(line)
    left = r.left
    print(f"wm check: {len(r.found)} problems found, {len(r.repaired)} repaired, {len(left)} left"
          + ("" if repair or not any(p.repairable for p in left) else "; run `wm check --repair`"))
    return 1 if left else 0
