"""The synthetic day: real clips on disk, a known scene per clip, reproducible, and a scene
structure that simple features can already see (so a learner has something to find)."""
from datetime import timedelta

import av
import cv2
import numpy as np
import pytest

from wm.base import config
from wm.base.manifest import Manifest
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.demo.lively import vary_sound
from wm.demo.synth import make_day, scene_sound, scene_still, write_recording

DATE = "2025-01-15"


@pytest.fixture
def env(tmp_path):
    return config.load(None), Paths(tmp_path / "home")


def test_make_day_writes_whole_clips_and_queues_nothing(env):
    settings, paths = env
    clips = make_day(settings, paths, DATE, n_clips=12, n_scenes=3, seed=1)
    assert len(clips) == 12
    assert {c.scene for c in clips} <= {0, 1, 2} and len({c.scene for c in clips}) >= 2
    for prev, c in zip(clips, clips[1:]):
        assert c.manifest.start_time - prev.manifest.start_time == timedelta(seconds=3)
    for c in clips:
        m = Manifest.read(c.manifest_path)
        assert m == c.manifest and m.date == DATE and m.has_audio and m.has_video
        samples, rate = read_wav(paths.data / m.audio)
        assert rate == 16000 and samples.dtype == np.int16 and samples.size == 48000
        assert len(m.frames) == 3
        img = cv2.imread(str(paths.data / m.frames[0]))
        assert img is not None and img.shape[2] == 3 and img.shape[0] <= 480
        with av.open(str(paths.data / m.video)) as f:
            assert f.streams.video and f.streams.audio
    assert Queue(paths.memory_db).counts()["queued"] == 0


def test_same_seed_same_day(env, tmp_path):
    settings, paths = env
    a = make_day(settings, paths, DATE, n_clips=5, seed=3)
    b = make_day(settings, Paths(tmp_path / "other"), DATE, n_clips=5, seed=3)
    assert [c.scene for c in a] == [c.scene for c in b]
    wa, _ = read_wav(paths.data / a[2].manifest.audio)
    wb, _ = read_wav(Paths(tmp_path / "other").data / b[2].manifest.audio)
    assert np.array_equal(wa, wb)


def _cos(x):
    x = x - x.mean(1, keepdims=True)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def _within_minus_between(features, labels):
    sim = _cos(features)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    return sim[same & off].mean() - sim[~same].mean()


def test_scenes_differ_more_than_jitter():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 6)
    # Sound: the log spectrum of the same scene agrees across clips, not across scenes.
    spec = np.stack([np.log(np.abs(np.fft.rfft(scene_sound(int(s), rng, 1.0)))[:4000]
                            .reshape(200, 20).mean(1) + 1) for s in labels])
    assert _within_minus_between(spec, labels) > 0.3
    # Image: colour histograms of the same scene agree, despite lighting and position.
    hist = []
    for s in labels:
        img = scene_still(int(s), rng, (96, 128))
        assert img.dtype == np.uint8 and img.shape == (96, 128, 3)
        hist.append(cv2.calcHist([img], [0, 1, 2], None, [4, 4, 4], [0, 256] * 3).ravel())
    assert _within_minus_between(np.log1p(np.stack(hist)), labels) > 0.2


def test_write_recording_is_one_playable_mp4(tmp_path):
    path = tmp_path / "rec" / "day.mp4"
    write_recording(path, seconds=7.0, scenes=[0, 2], scene_seconds=3.0, size=(120, 160))
    with av.open(str(path)) as f:
        v, a = f.streams.video[0], f.streams.audio[0]
        frames = [fr.to_ndarray(format="bgr24") for fr in f.decode(v)]
        # PyAV 18.1.1 refuses a stream's fields once its file is closed: read them inside.
        rate, audio_seconds = a.sample_rate, float(a.duration * a.time_base)
    assert len(frames) == 70 and frames[0].shape == (120, 160, 3)
    assert rate == 48000
    assert abs(audio_seconds - 7.0) < 0.1
    # A view holds for a second, and a new one comes at the scene change at 3 s.
    d_held = np.abs(frames[21].astype(int) - frames[29].astype(int)).mean()
    d_change = np.abs(frames[29].astype(int) - frames[30].astype(int)).mean()
    assert d_change > 5 * d_held


def _levels_db(x: np.ndarray, rate: int, window: float = 0.25) -> np.ndarray:
    n = int(window * rate)
    frames = x[: x.size // n * n].astype(float).reshape(-1, n)
    return 20 * np.log10(np.sqrt((frames ** 2).mean(1)) + 1e-9)


def test_a_lively_sound_varies_in_level_and_content_within_a_place():
    rate = 16000
    steady = scene_sound(1, np.random.default_rng(3), 6.0, rate)   # the noise band: no beat of its own
    lively = vary_sound(steady, np.random.default_rng(4), rate)
    assert lively.dtype == np.int16 and lively.shape == steady.shape
    # Within one visit the level wanders by several dB beyond the texture's own swell.
    assert np.ptp(_levels_db(lively, rate) - _levels_db(steady, rate)) > 3.0
    # Stray sounds of no place are mixed in: over many visits some add content, not just gain.
    rng = np.random.default_rng(5)
    added = []
    for _ in range(10):
        x = vary_sound(steady, rng, rate).astype(float)
        gain = np.dot(x, steady) / np.dot(steady.astype(float), steady)
        added.append(np.abs(x - gain * steady).max() / np.abs(x).max())
    assert max(added) > 0.2


def test_a_lively_recording_moves_between_views(tmp_path):
    path = tmp_path / "lively.mp4"
    write_recording(path, seconds=4.0, scenes=[0, 2], scene_seconds=2.0, size=(120, 160), lively=True)
    with av.open(str(path)) as f:
        frames = [fr.to_ndarray(format="bgr24") for fr in f.decode(f.streams.video[0])]
    assert len(frames) == 40
    # The camera moves from frame to frame within one view (a still view repeats exactly).
    steps = [np.abs(frames[i].astype(int) - frames[i + 1].astype(int)).mean() for i in range(1, 9)]
    assert min(steps) > 0.5
    d_change = np.abs(frames[19].astype(int) - frames[20].astype(int)).mean()
    assert d_change > 2 * np.median(steps)
