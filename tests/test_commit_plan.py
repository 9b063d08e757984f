"""The night's plan: the commit of the queued clips is reserved out of the budget before
training gets the rest, and `wm sleep` says the plan."""
import pytest
from learn_support import day, one_thread, queue_day, tiny_settings  # noqa: F401 (autouse)

from wm.base.paths import Paths
from wm.nightly.cycle import sleep_cycle
from wm.nightly.plan import plan_budget

MIN = 60.0


def test_a_small_day_keeps_the_old_split():
    p = plan_budget(300 * MIN, 200, 0.1)
    assert p.train_s == pytest.approx(0.85 * 300 * MIN)


def test_a_long_day_reserves_its_commit_before_training():
    # 16 hours of recording at 0.08 s/clip: 25.6 min of embedding, 32 min with the margin.
    p = plan_budget(300 * MIN, 19_200, 0.08)
    assert p.commit_s == pytest.approx(32 * MIN)
    assert p.train_s == pytest.approx((300 - 32 - 15) * MIN)
    assert p.budget_s - p.train_s >= p.commit_s
    assert p.note() == ("commit: 19,200 clips planned at 0.080 s/clip = 32 min;"
                        " training: 253 min of the 300 min budget")


def test_a_huge_backlog_still_leaves_training_its_minimum():
    p = plan_budget(60 * MIN, 200_000, 0.1)
    assert p.train_s == pytest.approx(0.4 * 60 * MIN)


def test_sleep_says_its_plan(tmp_path):
    settings = tiny_settings(jepa={"steps": 30}, cpc={"steps": 10}, align={"steps": 10})
    paths = Paths(tmp_path)
    queue_day(settings, paths, day(1), 12, seed=1)
    out = sleep_cycle(settings, paths, None, 600.0, lambda: False)
    assert out.result == "completed"
    assert out.stages["plan"].startswith("commit: 12 clips planned at ")
    assert "of the 10 min budget" in out.stages["plan"]
    assert out.stages["commit"].startswith("12 committed") and " s/clip" in out.stages["commit"]
