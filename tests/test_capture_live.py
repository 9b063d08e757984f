"""Live capture on real loopback devices, no mocks on the capture path: an MJPEG camera
served over HTTP on 127.0.0.1 and a PulseAudio null sink recorded through ALSA's `pulse`
device. Without pulseaudio/paplay/PortAudio these skip (and fail under CI=true)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback import (
    MjpegServer,
    PulseServer,
    free_port,
    require_tools,
    tone_onset,
    tone_wav,
)

from wm.base import config
from wm.base.manifest import FINAL, PADDED, Manifest
from wm.base.media import read_wav
from wm.base.paths import Paths

pytestmark = pytest.mark.slow

SECONDS = 3
SAMPLES = 48000


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    require_tools("pulseaudio", "pactl", "paplay", portaudio=False)
    server = PulseServer(tmp_path_factory.mktemp("pulse")).start()
    try:
        require_tools(portaudio=True)   # after the server: PortAudio's first look finds it
        yield server
    finally:
        server.stop()


@pytest.fixture
def camera():
    with MjpegServer(fps=10) as server:
        yield server


def fast_settings(**capture):
    """Defaults, but a device is declared lost and retried within seconds."""
    base = {"stall_seconds": 2.0, "reopen_max_seconds": 1.0}
    return config.load(None, overrides={"capture": {**base, **capture}})


def manifests(paths: Paths) -> list[Manifest]:
    return [Manifest.read(p) for p in sorted((paths.data / "clips").rglob("*.json"))]


def partials(paths: Paths) -> list[Path]:
    return sorted(paths.root.rglob("*.partial"))


def wait_for(cond, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def wav(paths: Paths, m: Manifest):
    samples, rate = read_wav(paths.data / m.audio)
    assert rate == 16000
    return samples


def start_of(m: Manifest) -> float:
    return m.start_time.timestamp()


class Clips:
    """on_clip callback that remembers each manifest and when it arrived."""

    def __init__(self):
        self.items: list[tuple[float, Manifest, Path]] = []

    def __call__(self, manifest, path):
        self.items.append((time.time(), manifest, path))

    @property
    def manifests(self) -> list[Manifest]:
        return [m for _, m, _ in self.items]


def test_recorder_places_a_tone_and_survives_the_camera_going_away(pulse, camera, home, tmp_path):
    from wm.capture.recorder import Recorder

    tone = tone_wav(tmp_path / "tone.wav", seconds=0.5, hz=1000)
    clips = Clips()
    rec = Recorder(fast_settings(), home, camera=camera.url, microphone="pulse", on_clip=clips)
    rec.start()
    try:
        wait_for(lambda: clips.items, 10, "the first clip")
        s0 = start_of(clips.manifests[0])
        sleep_until(s0 + 6.4)                     # 0.4 s into clip 2
        player, _ = pulse.play(tone)
        played_at = time.time()
        sleep_until(s0 + 9.5)                     # 0.5 s into clip 3
        camera.stop()
        stopped_at = time.time()
        time.sleep(1.2)
        during = rec.health()
        sleep_until(s0 + 11.5)
        camera.start()
        restarted_at = time.time()
        wait_for(lambda: any(start_of(m) >= s0 + 15 for m in clips.manifests), 12, "clip 5")
        after = rec.health()
        player.wait(5)
    finally:
        rec.stop()
    ms = clips.manifests
    by_offset = {round(start_of(m) - s0): m for m in ms}
    assert set(range(0, 16, 3)) <= set(by_offset), "clips are contiguous, 3 s apart"

    # every WAV has exactly 48,000 samples and audio never had a gap
    for m in ms:
        assert m.samples == SAMPLES and len(wav(home, m)) == SAMPLES
        assert [g for g in m.gaps if g.modality == "audio"] == []

    # the tone is in clip 2, where and when paplay started it (~0.1-0.5 s latency)
    for offset, m in by_offset.items():
        onset = tone_onset(wav(home, m))
        if offset != 6:
            assert onset is None, f"clip at +{offset} s is not silent"
    onset = tone_onset(wav(home, by_offset[6])) / 16000
    expected = played_at - (s0 + 6)
    assert expected - 0.05 <= onset <= expected + 0.8

    # the camera's outage is a video gap (device_lost) in the manifests, then video is back
    lost = [(start_of(m) - s0 + g.start, start_of(m) - s0 + g.end, g.reason)
            for m in ms for g in m.gaps if g.modality == "video"]
    assert lost and all(r == "device_lost" for _, _, r in lost)
    assert min(a for a, _, _ in lost) == pytest.approx(stopped_at - s0, abs=0.5)
    assert restarted_at - s0 <= max(b for _, b, _ in lost) <= restarted_at - s0 + 1.5
    assert len(by_offset[15].frames) == 3 and not [g for g in by_offset[15].gaps]
    assert during.camera == "reopening" and during.microphone == "ok"
    assert after.camera == "ok" and after.microphone == "ok"

    # each clip was on disk within a second of its end
    for arrived, m, path in clips.items:
        assert path.exists()
        assert arrived - (start_of(m) + m.duration) < 1.0, m.id
    assert after.clips_written >= 6 and after.last_clip_end is not None
    assert time.monotonic() - after.last_progress < 1.0
    assert partials(home) == []


def test_microphone_server_dies_and_comes_back(pulse, camera, home):
    from wm.capture.recorder import Recorder

    clips = Clips()
    rec = Recorder(fast_settings(), home, camera=camera.url, microphone="pulse", on_clip=clips)
    try:
        rec.start()
        wait_for(lambda: clips.items, 10, "the first clip")
        s0 = start_of(clips.manifests[0])
        sleep_until(s0 + 4.0)
        pulse.crash()
        down_at = time.time()
        wait_for(lambda: rec.health().microphone == "reopening", 4, "the microphone to be lost")
        sleep_until(down_at + 4.5)
        pulse.start()
        wait_for(lambda: rec.health().microphone == "ok", 8, "the microphone to come back")
        back = time.time()
        wait_for(lambda: any(start_of(m) > back + 0.5 for m in clips.manifests), 8,
                 "a clip after the microphone came back")
    finally:
        rec.stop()
        if pulse.proc is None:
            pulse.start()
    ms = clips.manifests
    audio_gaps = [(start_of(m) - s0 + g.start, start_of(m) - s0 + g.end, g.reason)
                  for m in ms for g in m.gaps if g.modality == "audio"]
    assert audio_gaps and {r for _, _, r in audio_gaps} == {"device_lost"}
    assert min(a for a, _, _ in audio_gaps) == pytest.approx(down_at - s0, abs=0.5)
    # the clip entirely inside the outage is video-only; video never stopped
    assert any(m.audio is None and "video_only" in m.flags and len(m.frames) == 3 for m in ms)
    assert all(len(m.frames) >= 1 and not [g for g in m.gaps if g.modality == "video"] for m in ms)
    assert ms[-1].audio is not None and len(wav(home, ms[-1])) == SAMPLES


def test_pause_for_and_resume_write_nothing_while_paused(pulse, camera, home, run_cli):
    from wm.capture.recorder import Recorder

    clips = Clips()
    rec = Recorder(fast_settings(), home, camera=camera.url, microphone="pulse", on_clip=clips)
    rec.start()
    try:
        wait_for(lambda: clips.items, 10, "the first clip")
        s0 = start_of(clips.manifests[0])
        sleep_until(s0 + 3.5)
        assert run_cli("pause", "--for", "2s").code == 0
        paused_at = time.time()
        wait_for(lambda: rec.health().paused, 2, "the recorder to pause")
        h = rec.health()
        assert (h.camera, h.microphone) == ("paused", "paused")
        wait_for(lambda: not rec.health().paused, 4, "the pause to expire by itself")
        resumed_at = time.time()
        wait_for(lambda: any(start_of(m) > resumed_at for m in clips.manifests), 10,
                 "a clip after the pause")
        assert run_cli("pause").code == 0
        wait_for(lambda: rec.health().paused, 2, "the recorder to pause again")
        time.sleep(0.6)                           # the clip cut short by the pause lands
        count = len(clips.items)
        time.sleep(2.0)
        assert len(clips.items) == count, "nothing is written while paused"
        assert run_cli("resume").code == 0
        wait_for(lambda: len(clips.items) > count, 10, "a clip after `wm resume`")
    finally:
        rec.stop()
    ms = clips.manifests
    # the clip in flight when the pause began is cut short, its rest marked as paused
    cut = next(m for m in ms if start_of(m) < paused_at < start_of(m) + SECONDS)
    assert PADDED in cut.flags and cut.duration < SECONDS
    assert start_of(cut) + cut.duration == pytest.approx(paused_at, abs=0.8)
    assert {(g.modality, g.reason, g.end) for g in cut.gaps} >= {("audio", "paused", 3.0),
                                                                 ("video", "paused", 3.0)}
    # no clip covers the paused time (it is a gap, not silence)
    for m in ms:
        a, b = start_of(m), start_of(m) + m.duration
        assert b <= paused_at + 0.8 or a >= resumed_at - 0.6
    assert all(len(wav(home, m)) == SAMPLES for m in ms if m.audio)


def record_cmd(camera_url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "wm", "record", "--camera", camera_url, "--mic", "pulse", *extra]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_wm_record_stops_cleanly_on_a_signal(pulse, camera, home, sig):
    proc = subprocess.Popen(record_cmd(camera.url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: manifests(home), 15, "the first clip")
        time.sleep(1.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ms = manifests(home)
    assert len(ms) >= 2
    final = ms[-1]
    assert FINAL in final.flags and PADDED in final.flags
    assert 0.5 < final.duration < SECONDS
    assert all(FINAL not in m.flags for m in ms[:-1])
    assert all(len(wav(home, m)) == SAMPLES for m in ms)
    assert partials(home) == []
    assert "clips written" in out


def test_kill_9_then_restart_removes_partials_and_keeps_the_rest(pulse, camera, home):
    proc = subprocess.Popen(record_cmd(camera.url), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(manifests(home)) >= 1, 15, "the first clip")
        # kill it in the middle of writing the next clip
        wait_for(lambda: partials(home), 8, "the next clip's .partial files", step=0.005)
        proc.kill()
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {m.id: m for m in manifests(home)}
    files = {p: p.read_bytes() for m in before.values()
             for p in [home.data / m.video, home.data / m.audio] + [home.data / f for f in m.frames]}
    assert partials(home), "kill -9 mid-write leaves .partial files"

    time.sleep(2.0)   # a service manager's restart delay: the .partial files are then stale
    out = subprocess.run(record_cmd(camera.url, "--duration", "4"), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert partials(home) == []
    after = {m.id: m for m in manifests(home)}
    assert set(before) < set(after)
    for p, data in files.items():
        assert p.read_bytes() == data, f"{p} changed"
    assert all(len(wav(home, m)) == SAMPLES for m in after.values())


def test_neither_device_is_a_clear_error_listing_what_is_there(pulse, home):
    dead = f"http://127.0.0.1:{free_port()}/stream"
    out = subprocess.run([sys.executable, "-m", "wm", "record", "--camera", dead,
                          "--mic", "no-such-microphone"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("wm:")]
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert dead in line and "no-such-microphone" in line
    assert "cameras found" in line and "pulse" in line      # what it could have used
    assert "Traceback" not in out.stderr
    assert manifests(home) == []


def test_wm_devices_lists_the_microphones(pulse, home):
    out = subprocess.run([sys.executable, "-m", "wm", "devices"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "microphones:" in out.stdout and "pulse" in out.stdout
    assert "cameras:" in out.stdout


def test_portaudio_missing_says_what_to_install(monkeypatch):
    """PortAudio cannot be uninstalled here, so sounddevice's import failure is simulated:
    this is exactly what `import sounddevice` raises without libportaudio2."""
    import importlib.abc

    from wm.base.errors import WmError
    from wm.capture import microphone

    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(WmError, match="install libportaudio2"):
        microphone.sounddevice()
    with pytest.raises(WmError, match="install libportaudio2"):
        microphone.find_device("default")
