"""Benchmark: live capture cost and timeliness on loopback devices.

Records SECONDS from an MJPEG camera (640x480 @ 30 fps, served by a separate process so
its cost is not counted) and a PulseAudio null-sink microphone (a tone playing into it),
twice, each in its own child process:
  baseline: the bare devices (OpenCV grab of every frame, decode of the kept third;
            a 16 kHz sounddevice stream into a list), nothing cut or written;
  recorder: wm's Recorder, writing clips.
Prints for each: CPU as % of one core (process CPU time / wall, median of 10 s windows and
over the whole run), peak RSS; for the recorder also audio samples lost, frames dropped
and clip-emission delay (clip on disk minus its end: median and max), and the ratio of
its CPU to the baseline's.

    .venv/bin/python bench/capture.py [--seconds 60] [--video FILE]

--video serves 10 s of a real video's frames instead of the synthetic test pattern: real
footage costs the H.264 encoder about twice as much.

Targets: recorder under 10% of one core, 0 samples lost, under 1% frames dropped, every
clip within 1 s of its end. Needs pulseaudio, pulseaudio-utils and libportaudio2."""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

WINDOW = 10.0


def cpu_windows(seconds: float, stop: threading.Event | None = None) -> tuple[list[float], float]:
    """Sample this process's CPU time every WINDOW seconds for `seconds`: (% per window, % overall)."""
    t0, c0 = time.monotonic(), time.process_time()
    windows, tw, cw = [], t0, c0
    while time.monotonic() - t0 < seconds:
        time.sleep(min(WINDOW, seconds - (time.monotonic() - t0)))
        t, c = time.monotonic(), time.process_time()
        if t - tw >= WINDOW * 0.5:
            windows.append(100 * (c - cw) / (t - tw))
        tw, cw = t, c
    return windows, 100 * (time.process_time() - c0) / (time.monotonic() - t0)


def peak_rss_mb() -> float:
    """VmHWM: unlike ru_maxrss it starts afresh at exec (not at the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_baseline(url: str, seconds: float) -> dict:
    import cv2
    import sounddevice as sd

    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    blocks = []
    stream = sd.InputStream(device="pulse", samplerate=16000, channels=1, dtype="int16",
                            blocksize=1600, callback=lambda d, *a: blocks.append(d.copy()))
    stream.start()
    stop = threading.Event()
    counts = {"grabbed": 0}

    def read():
        while not stop.is_set() and cap.grab():
            counts["grabbed"] += 1
            if counts["grabbed"] % 3 == 0:
                cap.retrieve()

    reader = threading.Thread(target=read)
    reader.start()
    windows, overall = cpu_windows(seconds)
    stop.set()
    reader.join()
    stream.stop()
    stream.close()
    return {"cpu_windows": windows, "cpu": overall, "rss_mb": peak_rss_mb(),
            "frames_grabbed": counts["grabbed"], "samples": sum(len(b) for b in blocks)}


def child_recorder(url: str, seconds: float, home: str) -> dict:
    from wm.base import config, log
    from wm.base.paths import Paths
    from wm.capture.recorder import Recorder

    log.setup(None, "warning")
    settings = config.load(None)
    rec = Recorder(settings, Paths(Path(home)), camera=url, microphone="pulse")
    rec.start()
    windows, overall = cpu_windows(seconds)
    rec.stop()
    s = rec.stats()
    return {"cpu_windows": windows, "cpu": overall, "rss_mb": peak_rss_mb(),
            "samples": s.samples, "samples_lost": s.samples_lost, "overflows": s.overflows,
            "frames_grabbed": s.frames_grabbed, "frames_kept": s.frames_kept,
            "frames_dropped": s.frames_dropped, "clips": s.clips_written,
            "delays": s.emission_delays}


def video_gap_seconds(home: Path) -> tuple[float, float]:
    """(seconds of video gaps, seconds recorded) over the manifests written."""
    from wm.base.manifest import Manifest

    gaps = total = 0.0
    for p in sorted((home / "data" / "clips").rglob("*.json")):
        m = Manifest.read(p)
        total += m.duration
        gaps += sum(g.end - g.start for g in m.gaps if g.modality == "video")
    return gaps, total


def run_child(mode: str, url: str, seconds: float, home: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url,
                          "--seconds", str(seconds), "--home", str(home)],
                         capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--child", choices=["baseline", "recorder"])
    ap.add_argument("--url")
    ap.add_argument("--home")
    ap.add_argument("--video", type=Path, help="camera shows this video's frames")
    a = ap.parse_args()
    if a.child == "baseline":
        print(json.dumps(child_baseline(a.url, a.seconds)))
        return
    if a.child == "recorder":
        print(json.dumps(child_recorder(a.url, a.seconds, a.home)))
        return
    with tempfile.TemporaryDirectory(prefix="wm-bench-capture-") as tmp:
        report(a, Path(tmp))


def report(a, work: Path) -> None:
    from loopback import PulseServer, free_port, tone_wav

    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "loopback.py"), "mjpeg",
                               "--port", str(port), "--fps", "30",
                               *(["--video", str(a.video)] if a.video else [])],
                              stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    url = f"http://127.0.0.1:{port}/stream"
    results = {}
    with PulseServer(work / "pulse") as pulse:
        wav = tone_wav(work / "tone.wav", seconds=2 * a.seconds + 30, hz=440, amplitude=0.2,
                       rate=16000)
        player, _ = pulse.play(wav)
        try:
            for mode in ("baseline", "recorder"):
                results[mode] = run_child(mode, url, a.seconds, work / "home")
        finally:
            player.terminate()
            player.wait()
            server.terminate()
            server.wait()
    b, r = results["baseline"], results["recorder"]
    gaps, recorded = video_gap_seconds(work / "home")
    med = statistics.median
    delays = r["delays"]
    shows = a.video.name if a.video else "test pattern"
    print(f"capture benchmark: {a.seconds:.0f} s, MJPEG 640x480 @ 30 fps ({shows}) "
          "+ PulseAudio 16 kHz mono")
    print(f"{'':28}{'baseline':>12}{'recorder':>12}")
    print(f"{'CPU % of one core (median)':28}{med(b['cpu_windows']):12.1f}{med(r['cpu_windows']):12.1f}")
    print(f"{'CPU % of one core (overall)':28}{b['cpu']:12.1f}{r['cpu']:12.1f}")
    print(f"{'peak RSS MB':28}{b['rss_mb']:12.0f}{r['rss_mb']:12.0f}")
    print(f"{'frames grabbed':28}{b['frames_grabbed']:12d}{r['frames_grabbed']:12d}")
    print(f"recorder / baseline CPU: {med(r['cpu_windows']) / max(med(b['cpu_windows']), 1e-9):.2f}x")
    print(f"audio samples lost: {r['samples_lost']} of {r['samples']} (overflows: {r['overflows']})")
    print(f"frames dropped: {r['frames_dropped']} of {r['frames_kept']} kept "
          f"({100 * r['frames_dropped'] / max(r['frames_kept'], 1):.2f}%); "
          f"video gaps in clips: {gaps:.2f} s of {recorded:.1f} s ({100 * gaps / max(recorded, 1e-9):.2f}%)")
    print(f"clips: {r['clips']}; emission delay median {med(delays):.3f} s, max {max(delays):.3f} s; "
          f"within 1 s: {sum(d <= 1.0 for d in delays)}/{len(delays)}")


if __name__ == "__main__":
    main()
