"""`wm ingest`: real media files made with PyAV (tests/mediagen.py) go through the real
decoder, writer and file system; the tests look at what a user would find on disk."""
from __future__ import annotations

import os
import shutil
import wave
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import cv2
import mediagen as mg
import numpy as np
import pytest

from wm.base.clipids import clip_id, local_date
from wm.base.manifest import AUDIO_ONLY, FINAL, PADDED, VIDEO_ONLY, Manifest
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.capture import writer
from wm.capture.ingest.index import fingerprint
from wm.capture.ingest.probe import parse_creation_time
from wm.capture.ingest.run import ingest_files
from wm.capture.ingest.timeline import AudioTrack, fit_size, timeline_start

DATE = "2025-01-15"
# the flash and the click happen at 4.0 s: clip 1 (3-6 s), its second still, 1.0 s into its WAV
MARK = 4.0
MAIN = mg.Spec(seconds=7.5, audio_start=0.5, flash=MARK, click=MARK)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def main_file(media) -> Path:
    """29.97 fps video from 0 s, 44.1 kHz stereo AAC from 0.5 s, 7.5 s long."""
    return mg.write(media / "main.mp4", MAIN)


def manifests(paths: Paths, date: str = DATE) -> list[Manifest]:
    found = [Manifest.read(p) for p in paths.clips_dir(date).glob("*.json")]
    return sorted(found, key=lambda m: (m.source.name, m.source.offset))


def brightest_still(paths: Paths, mans: list[Manifest]) -> tuple[int, int]:
    """(clip number, still number k) of the brightest still."""
    means = {(i, k): cv2.imread(str(paths.data / f)).mean()
             for i, m in enumerate(mans) for k, f in enumerate(m.frames)}
    return max(means, key=means.get)


def loudest_instant(paths: Paths, mans: list[Manifest]) -> tuple[int, float]:
    """(clip number, seconds into its WAV) of the loudest 5 ms."""
    best = (-1.0, 0, 0.0)
    for i, m in enumerate(mans):
        samples, rate = read_wav(paths.data / m.audio)
        win = rate // 200
        energy = np.abs(samples.astype(np.float64)).reshape(-1, win).sum(axis=1)
        j = int(energy.argmax())
        best = max(best, (float(energy[j]), i, j * win / rate))
    return best[1], best[2]


def all_files(paths: Paths) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in paths.data.rglob("*") if p.is_file()}


def partials(paths: Paths) -> list[Path]:
    return list(paths.root.rglob("*.partial"))


# -- the main path ---------------------------------------------------------------------------------

def test_clips_frames_and_sound_land_where_the_source_put_them(main_file, run_cli, home):
    r = run_cli("ingest", main_file, "--date", DATE)
    assert r.code == 0, r.err
    assert "1 file, 3 clips, 7.5 s" in r.out
    mans = manifests(home)
    assert len(mans) == 3   # 3 + 3 + a 1.5 s remainder (over min_tail_seconds): kept, padded

    for m in mans:
        with wave.open(str(home.data / m.audio)) as w:
            assert (w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()) == \
                (48000, 16000, 1, 2)
        assert m.samples == 48000 and m.sample_rate == 16000
        assert m.source.video_stream.startswith("#0 h264 160x120")
        assert m.source.audio_stream.startswith("#1 aac 44100 Hz 2 ch")
        for f in m.frames:
            assert cv2.imread(str(home.data / f)).shape == (120, 160, 3)
    full, tail = mans[:2], mans[2]
    assert [len(m.frames) for m in full] == [3, 3]
    assert [m.duration for m in full] == [3.0, 3.0]
    assert not any(PADDED in m.flags or FINAL in m.flags for m in full)
    assert PADDED in tail.flags and FINAL in tail.flags
    assert tail.duration == pytest.approx(1.5, abs=0.05) and len(tail.frames) == 1
    # the padding after the real content is silence
    samples, _ = read_wav(home.data / tail.audio)
    assert not samples[int(1.6 * 16000):].any() and samples[:16000].any()

    assert [m.source.offset for m in mans] == [0.0, 3.0, 6.0]
    starts = [m.start_time for m in mans]
    assert [(b - a).total_seconds() for a, b in zip(starts, starts[1:])] == [3.0, 3.0]
    assert [m.id for m in mans] == sorted(m.id for m in mans)
    # the audio track starts 0.5 s after the video (less the AAC priming): a gap, not a shift
    (gap,) = mans[0].gaps
    assert gap.modality == "audio" and gap.start == 0 and 0.45 < gap.end <= 0.5

    assert brightest_still(home, mans) == (1, 1)
    clip, at = loudest_instant(home, mans)
    assert clip == 1 and at == pytest.approx(1.0, abs=0.015)

    with av.open(str(home.data / full[0].video)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        frames = list(c.decode(video=0))
    assert len(frames) == 30 and (frames[0].width, frames[0].height) == (160, 120)


@pytest.mark.parametrize("name, spec, tolerance", [
    # 5.1 at 48 kHz in Matroska: downmixed to mono
    ("surround.mkv", mg.Spec(seconds=7.5, flash=MARK, click=MARK, layout="5.1",
                             audio_rate=48000), 0.02),
    ("vp8-opus.webm", mg.Spec(seconds=7.5, flash=MARK, click=MARK, audio_rate=48000), 0.025),
    # AVI cannot say how long MP3's encoder delay is: the click arrives ~40 ms late
    ("mpeg4-mp3.avi", mg.Spec(seconds=7.5, flash=MARK, click=MARK), 0.05),
    ("h264-aac-25fps.mov", mg.Spec(seconds=7.5, flash=MARK, click=MARK, fps=Fraction(25)), 0.015),
    # 5 fps: each frame fills two slots of the 10 fps clip video, some across clip borders
    ("low-rate.mp4", mg.Spec(seconds=7.5, flash=MARK, click=MARK, fps=Fraction(5)), 0.015),
    # the video starts 0.4 s after the sound: the timeline starts with the sound
    ("late-video.mp4", mg.Spec(seconds=7.5, flash=MARK, click=MARK, video_start=0.4), 0.015),
])
def test_containers_and_layouts(media, settings, home, name, spec, tolerance):
    src = mg.write(media / name, spec)
    summary = ingest_files(settings, home, [src], DATE, show_progress=False)
    assert summary.errors == [] and summary.clips == 3 and summary.files == 1
    mans = manifests(home)
    assert [len(m.frames) for m in mans] == [3, 3, 1]
    for m in mans:
        samples, rate = read_wav(home.data / m.audio)
        assert (len(samples), rate) == (48000, 16000)
    assert brightest_still(home, mans) == (1, 1)
    clip, at = loudest_instant(home, mans)
    assert clip == 1 and at == pytest.approx(1.0, abs=tolerance)
    with av.open(str(home.data / mans[1].video)) as c:
        assert len(list(c.decode(video=0))) == 30
    if spec.video_start:
        assert [(g.modality, g.start, g.end) for g in mans[0].gaps] == [("video", 0.0, 0.4)]


def test_the_best_of_several_streams_is_used_and_named(media, settings, home):
    src = mg.write(media / "several.mp4", MAIN, extra_streams=True)
    with av.open(str(src)) as c:
        assert len(c.streams.video) == 2 and len(c.streams.audio) == 2
    summary = ingest_files(settings, home, [src], DATE, show_progress=False)
    assert summary.errors == []
    mans = manifests(home)
    for m in mans:
        assert m.source.video_stream.startswith("#1 h264 160x120")
        assert "largest frame of 2 video streams" in m.source.video_stream
        assert m.source.audio_stream.startswith("#3 aac 44100 Hz 2 ch")
    assert cv2.imread(str(home.data / mans[0].frames[0])).shape == (120, 160, 3)
    assert loudest_instant(home, mans)[0] == 1


def test_a_video_without_sound_gives_frames_only_clips(media, settings, home):
    src = mg.write(media / "silent.mp4", mg.Spec(seconds=6.5, audio_rate=None, flash=MARK))
    summary = ingest_files(settings, home, [src], DATE, show_progress=False)
    # 6.5 s: two clips; the 0.5 s remainder is under min_tail_seconds (1 s) and is dropped
    assert (summary.clips, summary.errors) == (2, [])
    assert summary.dropped == pytest.approx(0.5, abs=0.05)
    assert "dropped 0.5 s" in summary.line()
    mans = manifests(home)
    for m in mans:
        assert m.audio is None and VIDEO_ONLY in m.flags and len(m.frames) == 3
        with av.open(str(home.data / m.video)) as c:
            assert len(c.streams.audio) == 0 and len(c.streams.video) == 1
    assert not home.audio_dir(DATE).exists()
    assert brightest_still(home, mans) == (1, 1)


def test_sound_without_pictures_gives_sound_only_clips(media, settings, home):
    src = mg.write(media / "voice.mp4",
                   mg.Spec(seconds=6.0, size=None, click=MARK))
    summary = ingest_files(settings, home, [src], DATE, show_progress=False)
    assert (summary.clips, summary.errors) == (2, [])
    mans = manifests(home)
    assert all(m.frames == [] and AUDIO_ONLY in m.flags and m.source.video_stream is None
               for m in mans)
    clip, at = loudest_instant(home, mans)
    assert clip == 1 and at == pytest.approx(1.0, abs=0.015)


def test_a_large_video_is_scaled_down_keeping_its_shape(media, settings, home):
    src = mg.write(media / "big.mkv",
                   mg.Spec(seconds=2.0, size=(960, 540), fps=Fraction(24), flash=1.0))
    summary = ingest_files(settings, home, [src], DATE, show_progress=False)
    assert summary.errors == []
    (m,) = manifests(home)   # 2 s: one padded clip, 2 stills
    assert PADDED in m.flags and len(m.frames) == 2
    assert cv2.imread(str(home.data / m.frames[0])).shape == (360, 640, 3)
    assert brightest_still(home, [m]) == (0, 1)
    with av.open(str(home.data / m.video)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (640, 360)
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    # every slot holds its own moment: the bar moves, the flash is at 1.0 s only
    assert len(frames) == 20
    assert [i for i, f in enumerate(frames) if f.mean() > 200] == [9, 10, 11]
    assert not np.array_equal(frames[0], frames[5])


def test_creation_time_names_the_clips_and_their_day(media, settings, home):
    src = mg.write(media / "stamped.mp4",
                   mg.Spec(seconds=6.0, creation_time="2025-03-09T23:59:58Z"))
    summary = ingest_files(settings, home, [src], None, show_progress=False)
    assert summary.errors == []
    start = datetime(2025, 3, 9, 23, 59, 58, tzinfo=timezone.utc)
    second = datetime(2025, 3, 10, 0, 0, 1, tzinfo=timezone.utc)
    # no --date: each clip goes to the local day of its own start (here UTC midnight lies
    # between them; in the local zone the days may or may not differ)
    mans = [m for day in sorted({local_date(start), local_date(second)})
            for m in manifests(home, day)]
    assert sorted(m.id for m in mans) == [clip_id(start), clip_id(second)]
    assert sorted(m.start_time for m in mans) == [start, second]
    assert all(m.date == local_date(m.start_time) for m in mans)


def test_without_creation_time_the_start_is_mtime_minus_duration(main_file, settings, home,
                                                                 tmp_path):
    src = tmp_path / "copy.mp4"
    shutil.copy(main_file, src)
    end = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    mg.set_mtime(src, end)
    ingest_files(settings, home, [src], DATE, show_progress=False)
    with av.open(str(src)) as c:
        seconds = c.duration / av.time_base
    first = manifests(home)[0]
    assert first.start_time.timestamp() == pytest.approx(end - seconds, abs=1e-3)


def test_date_puts_the_clips_on_that_day_at_their_own_time_of_day(main_file, run_wm, home,
                                                                   tmp_path):
    """`--date D`: the recording's start moves onto D at the same local wall-clock time, so
    a clip's day folder, its id and its start (what `wm query --at` searches) agree; one
    running past midnight goes on into the next day. Here in Berlin, from a winter day
    (UTC+1) to a summer one (UTC+2)."""
    berlin = ZoneInfo("Europe/Berlin")
    src = tmp_path / "late.mp4"
    shutil.copy(main_file, src)
    with av.open(str(src)) as c:
        seconds = c.duration / av.time_base
    began = datetime(2025, 3, 2, 23, 59, 57, tzinfo=berlin)   # by its modification time
    mg.set_mtime(src, began.timestamp() + seconds)
    r = run_wm("ingest", src, "--date", "2025-07-15", env={"TZ": "Europe/Berlin"})
    assert r.code == 0, r.err
    mans = manifests(home, "2025-07-15") + manifests(home, "2025-07-16")
    local = [m.start_time.astimezone(berlin).strftime("%Y-%m-%d %H:%M:%S") for m in mans]
    assert local == ["2025-07-15 23:59:57", "2025-07-16 00:00:00", "2025-07-16 00:00:03"]
    assert [m.date for m in mans] == ["2025-07-15", "2025-07-16", "2025-07-16"]
    assert [m.id for m in mans] == ["20250715T215957Z", "20250715T220000Z", "20250715T220003Z"]


# -- doing it twice --------------------------------------------------------------------------------

def test_ingesting_the_same_file_twice_adds_nothing(main_file, run_cli, home, tmp_path):
    assert run_cli("ingest", main_file, "--date", DATE).code == 0
    before = all_files(home)
    again = run_cli("ingest", main_file, "--date", DATE)
    assert again.code == 0 and "0 files, 0 clips" in again.out and "skipped 1" in again.out
    # a copy (another name, another mtime) is the same recording
    copy = tmp_path / "renamed.mp4"
    shutil.copy(main_file, copy)
    assert "skipped 1" in run_cli("ingest", copy, "--date", DATE).out
    assert all_files(home) == before


def test_an_interrupted_ingest_finishes_without_duplicates(main_file, settings, home):
    ingest_files(settings, home, [main_file], DATE, show_progress=False)
    mans = manifests(home)
    # as if the run had died before its last clip and before noting the file as done
    last = mans[-1]
    home.manifest(DATE, last.id).unlink()
    home.ingest_index.unlink()
    summary = ingest_files(settings, home, [main_file], DATE, show_progress=False)
    assert summary.clips == 1
    assert [m.id for m in manifests(home)] == [m.id for m in mans]


def test_different_files_with_the_same_start_get_distinct_ids(media, settings, home):
    a = mg.write(media / "cam-a.mp4", mg.Spec(seconds=3.0, flash=1.0))
    b = mg.write(media / "cam-b.mp4", mg.Spec(seconds=3.0, click=1.0))
    when = datetime(2025, 1, 15, 9, 0, 3, tzinfo=timezone.utc).timestamp()
    mg.set_mtime(a, when)
    mg.set_mtime(b, when)
    summary = ingest_files(settings, home, [a, b], DATE, show_progress=False)
    assert summary.clips == 2
    mans = manifests(home)
    first = min(m.id for m in mans)
    assert first.startswith("20250115T0859") and sorted(m.id for m in mans) == [first, first + "-1"]
    assert len({m.source.fingerprint for m in mans}) == 2


# -- bad input -------------------------------------------------------------------------------------

def test_bad_files_get_one_line_each_and_the_others_still_go_in(media, main_file, run_wm, home,
                                                                 tmp_path):
    good_mkv = mg.write(media / "to-cut.mkv", mg.Spec(seconds=7.5))
    bad = {
        "corrupt": mg.corrupt(main_file, tmp_path / "corrupt.mp4"),
        "truncated mp4": mg.truncated(main_file, tmp_path / "cut.mp4"),
        "truncated mkv": mg.truncated(good_mkv, tmp_path / "cut.mkv"),
        "empty": mg.empty(tmp_path / "empty.mov"),
        "not media": mg.not_media(tmp_path / "notes.avi"),
        "missing": tmp_path / "never-recorded.mp4",
    }
    r = run_wm("ingest", *bad.values(), main_file, "--date", DATE)
    assert r.code == 1
    assert "Traceback" not in r.err
    for what, path in bad.items():
        lines = [line for line in r.err_lines if path.name in line]
        assert len(lines) == 1, (what, r.err)
    reasons = "\n".join(r.err_lines)
    assert "empty file" in reasons and "no such file" in reasons and "truncated" in reasons
    assert "6 failed" in r.out
    # the good file went in whole; the readable part of the cut mkv is kept
    names = [Path(m.source.name).name for m in manifests(home)]
    assert names.count("main.mp4") == 3 and names.count("cut.mkv") == 1
    assert partials(home) == []


def test_a_write_failure_leaves_no_half_clip(main_file, settings, home, monkeypatch):
    # a full disk cannot be arranged here: the WAV writer fails instead, on the clip that
    # holds the click (clip 1; clips are written two at a time, so not "the second call")
    real = writer.write_wav

    def failing(path, samples, rate):
        if np.abs(samples).max() > 20000:
            writer.partial_name(path).write_bytes(b"RIFF")   # what a dying write leaves
            raise OSError(28, "No space left on device")
        real(path, samples, rate)

    monkeypatch.setattr(writer, "write_wav", failing)
    summary = ingest_files(settings, home, [main_file], DATE, show_progress=False)
    assert len(summary.errors) == 1 and "No space left on device" in summary.errors[0]
    assert partials(home) == []
    mans = manifests(home)
    # the clip whose WAV failed is gone whole; the one after may already have been written
    offsets = [m.source.offset for m in mans]
    assert offsets in ([0.0], [0.0, 6.0])
    ids = {m.id for m in mans}
    for p in home.data.rglob("*"):
        if p.is_file():   # every media file belongs to a clip that has its manifest
            assert p.stem.split("_")[0] in ids, p
    # the file is not marked done: the next run writes the rest
    monkeypatch.setattr(writer, "write_wav", real)
    again = ingest_files(settings, home, [main_file], DATE, show_progress=False)
    assert again.clips == 3 - len(mans) and len(manifests(home)) == 3


# -- the raw folder --------------------------------------------------------------------------------

def test_no_paths_ingests_the_days_raw_folder(main_file, media, run_cli, home):
    raw = home.raw_dir(DATE)
    raw.mkdir(parents=True)
    shutil.copy(main_file, raw / "morning.mp4")
    mg.write(raw / "evening.mkv", mg.Spec(seconds=3.0))
    (raw / "notes.txt").write_text("not a recording")
    r = run_cli("ingest", "--date", DATE)
    assert r.code == 0, r.err
    assert "2 files, 4 clips" in r.out
    assert {Path(m.source.name).name for m in manifests(home)} == {"morning.mp4", "evening.mkv"}


def test_no_paths_needs_a_date_and_a_raw_folder(run_cli):
    r = run_cli("ingest")
    assert r.code == 2 and len(r.err_lines) == 1 and "--date" in r.err
    r = run_cli("ingest", "--date", "2024-02-29")
    assert r.code == 2 and len(r.err_lines) == 1
    assert "raw" in r.err and "2024-02-29" in r.err and "no such folder" in r.err


# -- pure pieces -----------------------------------------------------------------------------------

@pytest.mark.parametrize("size, limit, want", [
    ((1920, 1080), (640, 480), (640, 360)),
    ((640, 480), (640, 480), (640, 480)),
    ((160, 120), (640, 480), (160, 120)),      # never enlarged
    ((1080, 1920), (640, 480), (270, 480)),    # portrait
    ((721, 405), (640, 480), (640, 360)),
    ((1000, 564), (640, 480), (640, 360)),     # 360.96 -> 361 -> even 360
    ((331, 201), (640, 480), (330, 200)),      # an odd source size too
])
def test_fit_size(size, limit, want):
    assert fit_size(*size, *limit) == want


def test_timeline_start():
    assert timeline_start(0.0, 0.5) == 0.0             # sound starts late
    assert timeline_start(0.4, 0.0) == 0.0             # picture starts late
    assert timeline_start(0.0, -1024 / 44100) == 0.0   # AAC priming is not sound
    assert timeline_start(1.0, 0.97) == 1.0            # nor is it when streams start late
    assert timeline_start(1.0, 0.5) == 0.5
    assert timeline_start(None, -0.02) == 0.0
    assert timeline_start(None, 2.0) == 2.0
    assert timeline_start(1.5, None) == 1.5
    assert timeline_start(None, None) == 0.0


def test_parse_creation_time():
    utc = timezone.utc
    assert parse_creation_time("2025-01-15T14:30:12.000000Z") == \
        datetime(2025, 1, 15, 14, 30, 12, tzinfo=utc)
    assert parse_creation_time("2025-01-15 14:30:12") == \
        datetime(2025, 1, 15, 14, 30, 12, tzinfo=utc)
    assert parse_creation_time("1904-01-01T00:00:00Z") is None   # an unset camera clock
    assert parse_creation_time("yesterday") is None
    assert parse_creation_time(None) is None


def test_audio_track_places_samples_by_timestamp():
    t = AudioTrack(16000)
    ones = np.ones(1600, np.int16)
    t.put(800, ones)                 # starts 50 ms in: a hole before it
    t.put(2400 + 100, 2 * ones)      # 6 ms late: within tolerance, taken as contiguous
    t.put(None, 3 * ones)            # no timestamp: contiguous
    t.put(4800 + 4000, 4 * ones)     # 250 ms late: a gap
    t.put(9600, 5 * ones)            # 800 samples overlap the previous block: cut
    out, holes = t.take(0, 12000)
    assert holes == [(0, 800), (5600, 8800), (11200, 12000)]
    assert (out[:800] == 0).all() and (out[800:2400] == 1).all() and (out[2400:4000] == 2).all()
    assert (out[4000:5600] == 3).all() and (out[5600:8800] == 0).all()
    assert (out[8800:10400] == 4).all() and (out[10400:11200] == 5).all()
    # samples before timeline zero are dropped
    t2 = AudioTrack(16000)
    t2.put(-100, np.arange(300, dtype=np.int16))
    out, holes = t2.take(0, 400)
    assert out[0] == 100 and holes == [(200, 400)]


def test_fingerprint_follows_content_not_name(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(os.urandom(3 << 20))
    b = tmp_path / "b.bin"
    shutil.copy(a, b)
    assert fingerprint(a) == fingerprint(b)
    data = bytearray(b.read_bytes())
    data[-10] ^= 0xFF
    b.write_bytes(bytes(data))
    assert fingerprint(a) != fingerprint(b)
