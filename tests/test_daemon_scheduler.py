"""The sleep scheduler: the pure decisions (night window arithmetic across midnight and
daylight-saving changes, every start/stop condition) and the loop around them with a fake
clock and fake probes, starting the sleep STAND-IN (tests/sleep_standin.py; the real
sleep cycle is tested with the learning code) as a real child process."""
from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from zoneinfo import ZoneInfo

import pytest
from daemon_harness import events, standin_command, wait_for, write_config

from wm.base import config
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.base.queue import COMMITTED, QUEUED, Queue
from wm.daemon.probes import Idle
from wm.daemon.scheduler import (
    KEEP,
    START,
    STOP,
    WAIT,
    Done,
    NightWindow,
    Readings,
    Scheduler,
    budget_seconds,
    decide,
    first_instant,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(tz, *args) -> datetime:
    """An instant given as local wall time (first occurrence when it repeats)."""
    return datetime(*args, tzinfo=tz).astimezone(timezone.utc)


def hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


# -- the window ---------------------------------------------------------------------

def test_parse_and_reject():
    w = NightWindow.parse("01:00-06:00")
    assert (w.start, w.end) == (dtime(1), dtime(6))
    assert str(NightWindow.parse("23:30-05:15")) == "23:30-05:15"
    for bad in ("1-6", "25:00-06:00", "01:00-06:61", "01:00 06:00", ""):
        with pytest.raises(WmError, match="night window"):
            NightWindow.parse(bad)


def test_window_that_wraps_midnight():
    w, tz = NightWindow.parse("23:00-06:00"), BERLIN
    inside = [local(tz, 2025, 1, 15, 23, 0), local(tz, 2025, 1, 16, 0, 30),
              local(tz, 2025, 1, 16, 5, 59)]
    outside = [local(tz, 2025, 1, 15, 22, 59), local(tz, 2025, 1, 16, 6, 0),
               local(tz, 2025, 1, 16, 12, 0)]
    for t in inside:
        opens, closes = w.current(t, tz)
        assert opens == local(tz, 2025, 1, 15, 23, 0) and closes == local(tz, 2025, 1, 16, 6, 0)
    for t in outside:
        assert w.current(t, tz) is None
    # At noon the next window is tonight's, and it lasts 7 hours.
    opens, closes = w.next(local(tz, 2025, 1, 16, 12, 0), tz)
    assert opens == local(tz, 2025, 1, 16, 23, 0) and hours(opens, closes) == 7
    # Inside, `next` is the current one.
    assert w.next(local(tz, 2025, 1, 16, 1, 0), tz)[0] == local(tz, 2025, 1, 15, 23, 0)


def test_window_not_wrapping_and_whole_day():
    w = NightWindow.parse("01:00-06:00")
    assert w.current(local(BERLIN, 2025, 1, 16, 0, 59), BERLIN) is None
    assert w.next(local(BERLIN, 2025, 1, 16, 6, 0), BERLIN)[0] == local(BERLIN, 2025, 1, 17, 1, 0)
    always = NightWindow.parse("00:00-00:00")
    for h in (0, 7, 13, 23):
        assert always.current(local(BERLIN, 2025, 1, 16, h, 30), BERLIN) is not None


@pytest.mark.parametrize("tz, spring, fall", [
    (BERLIN, date(2025, 3, 30), date(2025, 10, 26)),      # 02:00 -> 03:00, 03:00 -> 02:00
    (NEW_YORK, date(2025, 3, 9), date(2025, 11, 2)),      # 02:00 -> 03:00, 02:00 -> 01:00
])
def test_window_lasts_the_real_time_across_daylight_saving(tz, spring, fall):
    w = NightWindow.parse("01:00-06:00")
    opens, closes = w.occurrence(spring, tz)
    assert hours(opens, closes) == 4          # an hour never happened
    opens, closes = w.occurrence(fall, tz)
    assert hours(opens, closes) == 6          # an hour happened twice
    ordinary = w.occurrence(spring - timedelta(days=7), tz)
    assert hours(*ordinary) == 5


def test_start_time_that_does_not_exist_opens_when_clocks_jump():
    # Berlin, 2025-03-30: at 02:00 CET (01:00 UTC) clocks jump to 03:00 CEST.
    w = NightWindow.parse("02:30-05:00")
    opens, closes = w.occurrence(date(2025, 3, 30), BERLIN)
    assert opens == datetime(2025, 3, 30, 1, 0, tzinfo=timezone.utc)
    assert opens.astimezone(BERLIN).strftime("%H:%M") == "03:00"
    assert closes == local(BERLIN, 2025, 3, 30, 5, 0)
    assert w.current(opens - timedelta(seconds=1), BERLIN) is None
    assert w.current(opens, BERLIN) == (opens, closes)


def test_start_time_that_repeats_opens_at_its_first_occurrence():
    # Berlin, 2025-10-26: 02:00-03:00 happens twice (CEST, then CET).
    w = NightWindow.parse("02:30-04:00")
    opens, closes = w.occurrence(date(2025, 10, 26), BERLIN)
    assert opens == datetime(2025, 10, 26, 0, 30, tzinfo=timezone.utc)   # 02:30 CEST
    assert hours(opens, closes) == 2.5
    # The second 02:15 (CET) reads earlier on the wall but is inside the window.
    second_0215 = datetime(2025, 10, 26, 1, 15, tzinfo=timezone.utc)
    assert second_0215.astimezone(BERLIN).strftime("%H:%M") == "02:15"
    assert w.current(second_0215, BERLIN) == (opens, closes)
    assert first_instant(date(2025, 10, 26), dtime(2, 30), BERLIN) == opens


# -- the decision -------------------------------------------------------------------

NIGHT = local(BERLIN, 2025, 1, 16, 2, 0)
DAY = local(BERLIN, 2025, 1, 16, 14, 0)
W = NightWindow.parse("01:00-06:00")


def readings(now=NIGHT, idle=True, source="logind", power=True, queued=10) -> Readings:
    return Readings(now=now, idle=Idle(idle, source), on_power=power, queued=queued)


def test_starts_only_when_every_condition_holds():
    assert decide(W, BERLIN, readings(), running=False).action == START
    cases = {
        "outside the night window": readings(now=DAY),
        "user is active": readings(idle=False),
        "on battery": readings(power=False),
        "nothing queued": readings(queued=0),
    }
    for why, r in cases.items():
        d = decide(W, BERLIN, r, running=False)
        assert d.action == WAIT and why in d.reason, (why, d)
    d = decide(W, BERLIN, readings(now=DAY, idle=False, power=False, queued=0), running=False)
    assert d.reason.count(";") == 3          # every unmet condition is named
    assert "opens Fri 01:00" in d.reason     # and when the window opens


def test_stops_when_the_user_returns_the_power_goes_or_the_window_closes():
    assert decide(W, BERLIN, readings(), running=True).action == KEEP
    assert decide(W, BERLIN, readings(idle=False), running=True) .reason == "the user is back"
    assert decide(W, BERLIN, readings(power=False), running=True).action == STOP
    closed = decide(W, BERLIN, readings(now=local(BERLIN, 2025, 1, 16, 6, 0)), running=True)
    assert (closed.action, closed.reason) == (STOP, "the night window closed")
    # Our own training raises the load average: that fallback cannot say the user is back.
    assert decide(W, BERLIN, readings(idle=False, source="load"), running=True).action == KEEP
    # The queue running dry is the cycle's own business: it finishes by itself.
    assert decide(W, BERLIN, readings(queued=0), running=True).action == KEEP


def test_one_finished_cycle_per_window():
    done = Done(W.current(NIGHT, BERLIN)[0], "already slept in this window")
    d = decide(W, BERLIN, readings(), running=False, done=done)
    assert d.action == WAIT and "already slept" in d.reason
    tomorrow = readings(now=NIGHT + timedelta(days=1))
    assert decide(W, BERLIN, tomorrow, running=False, done=done).action == START


def test_budget_is_capped_by_the_window(settings):
    s = settings            # the shipped defaults: sleep_budget_minutes 300
    assert budget_seconds(s, local(BERLIN, 2025, 1, 16, 1, 0), local(BERLIN, 2025, 1, 16, 6, 0)) == 5 * 3600
    assert budget_seconds(s, local(BERLIN, 2025, 1, 16, 0, 0), local(BERLIN, 2025, 1, 16, 6, 0)) == 5 * 3600
    assert budget_seconds(s, local(BERLIN, 2025, 1, 16, 5, 0), local(BERLIN, 2025, 1, 16, 6, 0)) == 3600


# -- the loop, with a real child ----------------------------------------------------

class Fake:
    """A settable clock and idle/power probes."""
    def __init__(self, now: datetime):
        self.t = now.timestamp()
        self.user_idle = True
        self.power = True

    def clock(self) -> float:
        return self.t

    def idle(self, min_seconds: float) -> Idle:
        return Idle(self.user_idle, "fake")

    def on_power(self) -> bool:
        return self.power


@pytest.fixture
def night(tmp_path, monkeypatch):
    home = tmp_path / "home"
    cfg = write_config(tmp_path / "config.yaml", daemon={"night_window": "01:00-06:00"})
    monkeypatch.setenv("WM_HOME", str(home))
    monkeypatch.setenv("WM_CONFIG", str(cfg))
    monkeypatch.setenv("STANDIN_WORK_SECONDS", "0.3")
    settings = config.load(None)
    paths = Paths.from_settings(settings)
    from wm.demo.synth import make_day

    clips = make_day(settings, paths, "2025-01-15", 12)
    q = Queue(paths.memory_db)
    for c in clips:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(paths.data)))
    fake = Fake(local(BERLIN, 2025, 1, 15, 22, 0))
    sched = Scheduler(settings, paths, fake, queued=lambda: q.counts()[QUEUED], clock=fake.clock,
                      tz=BERLIN, command=standin_command)
    yield sched, fake, q, home
    sched.stop(timeout=10)
    q.close()


def _exited(sched) -> bool:
    sched.poll()
    return not sched.running


def test_a_night_starts_stops_and_resumes(night):
    sched, fake, q, home = night
    assert sched.tick().action == WAIT and not sched.running          # 22:00: too early
    fake.t = local(BERLIN, 2025, 1, 16, 1, 30).timestamp()
    fake.user_idle = False
    assert sched.tick().action == WAIT                                # someone up late
    fake.user_idle = True
    assert sched.tick().action == START and sched.running
    first = wait_for(lambda: [e for e in events(home) if e["event"] == "start"], 10, "child start")
    # At the lowest CPU and IO priority.
    assert first[0]["nice"] == 19
    if sys.platform.startswith("linux"):
        assert first[0]["io_class"] == 3
    # Budget: 4.5 h left in the window, under the 5 h configured.
    assert first[0]["argv"] == ["--budget", str(int(4.5 * 3600))]
    wait_for(lambda: q.counts()[COMMITTED] >= 2, 10, "some work committed")

    fake.user_idle = False                                            # the user is back
    assert sched.tick().action == STOP
    wait_for(lambda: _exited(sched), 10, "the child to checkpoint and exit")
    ev = [e["event"] for e in events(home)]
    assert "sigint" in ev and events(home)[-1]["result"] == "interrupted"
    done_before = q.counts()[COMMITTED]
    assert 0 < done_before < 12 and q.counts()[QUEUED] == 12 - done_before   # claims given back

    fake.t += 1800                                                    # 02:00, away again
    fake.user_idle = True
    assert sched.tick().action == START                               # resumes this night
    wait_for(lambda: _exited(sched), 20, "the cycle to complete")
    assert events(home)[-1]["result"] == "completed"
    assert q.counts() == {QUEUED: 0, COMMITTED: 12, "purged": 0}
    # Nothing more this window even with new clips queued: one finished cycle a night.
    from wm.demo.synth import make_day
    for c in make_day(sched.settings, sched.paths, "2025-01-16", 2, seed=1,
                      start=datetime(2025, 1, 16, 2, 0, tzinfo=timezone.utc)):
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(sched.paths.data)))
    d = sched.tick()
    assert d.action == WAIT and "already slept" in d.reason
    fake.t = local(BERLIN, 2025, 1, 17, 1, 0).timestamp()             # next night
    assert sched.tick().action == START
    wait_for(lambda: _exited(sched), 20, "the next night's cycle")
    assert q.counts()[COMMITTED] == 14


def test_the_window_closing_stops_the_cycle(night, monkeypatch):
    sched, fake, q, home = night
    fake.t = local(BERLIN, 2025, 1, 16, 5, 59).timestamp()
    assert sched.tick().action == START
    wait_for(lambda: events(home), 10, "child start")
    fake.t += 60
    d = sched.tick()
    assert (d.action, d.reason) == (STOP, "the night window closed")
    wait_for(lambda: _exited(sched), 10, "the child to exit")
    assert events(home)[-1]["result"] == "interrupted"
    # Interrupted is not finished: the next window resumes it.
    fake.t = local(BERLIN, 2025, 1, 17, 1, 0).timestamp()
    assert sched.tick().action == START


def test_a_failing_cycle_is_retried_then_left_for_the_night(night):
    sched, fake, q, home = night
    sched.command = lambda budget: [sys.executable, "-c", "raise SystemExit(1)"]
    fake.t = local(BERLIN, 2025, 1, 16, 2, 0).timestamp()
    starts = 0
    for _ in range(6):
        if sched.tick().action == START:
            starts += 1
        wait_for(lambda: _exited(sched), 10, "the failing child to exit")
    assert starts == 3
    assert "failed 3 times" in sched.tick().reason
    fake.t += 86400
    assert sched.tick().action == START           # a new night, a new try
