"""Benchmark: live capture cost and timeliness on loopback devices.

Records SECONDS from an MJPEG camera (640x480 @ 30 fps, served by a separate process so
its cost is not counted) and a PulseAudio null-sink microphone (a tone playing into it),
twice, each in its own child process:
  baseline: the bare devices (OpenCV grab of every frame, decode of the kept third;
            a 16 kHz sounddevice stream into a list), nothing cut or written;
  recorder: wm's Recorder, writing clips.
Prints for each: CPU as % of one core (process CPU time / wall, median of 10 s windows and
over the whole run), peak RSS; for the recorder also audio samples lost, frames dropped,
clip-emission delay (clip on disk minus its end: median and max), the ratio of its CPU to
the baseline's, where its CPU went (per thread) and the storage it wrote per recorded hour.

    .venv/bin/python bench/capture.py [--seconds 60] [--video FILE] [--runs 3]
                                      [--encoder x264] [--preset veryfast] [--crf 26]

--video serves 10 s of a real video's frames instead of the synthetic test pattern: real
footage costs the H.264 encoder about twice as much.

    .venv/bin/python bench/capture.py --sweep --video FILE

--sweep runs no devices: it encodes the frames the camera would deliver (the video's first
10 s at 10 fps, through the same JPEG q80 round trip and MJPEG decode) as 3-s clips with
each x264 preset/CRF/tune choice and prints encode CPU, MB per recorded hour and PSNR-Y. --runs repeats baseline + recorder
and prints every run and the medians; --encoder/--preset/--crf override capture.* for the
recorder (to compare encoder choices in one command).

Targets: recorder under 5% of one core with real footage, 0 samples lost, under 1% frames
dropped, every clip within 1 s of its end. Needs pulseaudio, pulseaudio-utils and
libportaudio2."""
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


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live Python thread (by name) and of the whole process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[t.name] = (int(fields[11]) + int(fields[12])) / tick
    out["(process)"] = time.process_time()
    return out


def child_recorder(url: str, seconds: float, home: str, capture: dict) -> dict:
    from wm.base import config, log
    from wm.base.paths import Paths
    from wm.capture.recorder import Recorder

    log.setup(None, "warning")
    settings = config.load(None, overrides={"capture": capture} if capture else None)
    rec = Recorder(settings, Paths(Path(home)), camera=url, microphone="pulse")
    rec.start()
    c0 = thread_cpu()   # the steady state: start-up (imports, probing, opening) is not in it
    t0 = time.monotonic()
    windows, overall = cpu_windows(seconds)
    used = thread_cpu()
    wall = time.monotonic() - t0
    rec.stop()
    s = rec.stats()
    threads = {k: 100 * (v - c0.get(k, 0.0)) / wall for k, v in used.items()}
    threads["(native threads, tick rounding)"] = threads["(process)"] - sum(
        v for k, v in threads.items() if k != "(process)")
    return {"cpu_windows": windows, "cpu": overall, "rss_mb": peak_rss_mb(),
            "threads": threads, "encoder": rec.sink.codec.label,
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


def storage_mb_per_hour(home: Path, recorded: float) -> dict[str, float]:
    """MB written per recorded hour, by kind (clip video, stills, WAV)."""
    sizes = {"video": 0, "stills": 0, "audio": 0}
    kinds = {".mp4": "video", ".jpg": "stills", ".wav": "audio"}
    for p in (home / "data").rglob("*"):
        if p.suffix in kinds:
            sizes[kinds[p.suffix]] += p.stat().st_size
    return {k: v / 1e6 * 3600 / max(recorded, 1e-9) for k, v in sizes.items()}


def run_child(mode: str, url: str, seconds: float, home: Path, capture: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url,
                          "--seconds", str(seconds), "--home", str(home),
                          "--capture", json.dumps(capture)],
                         capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


SWEEP = [("veryfast", 26, None), ("veryfast", 28, None), ("veryfast", 30, None),
         ("superfast", 26, None), ("superfast", 28, None), ("ultrafast", 24, None),
         ("ultrafast", 26, None), ("ultrafast", 28, None), ("ultrafast", 30, None),
         ("ultrafast", 32, None), ("ultrafast", 26, "zerolatency"),
         ("ultrafast", 26, "fastdecode"), ("veryfast", 26, "fastdecode")]


def encode_clips(frames: list, options: dict, fps: int = 10, clip: int = 30,
                 reference: list | None = None) -> tuple[float, int, list[float]]:
    """Encode frames as clip mp4s in memory: (CPU seconds, bytes, PSNR-Y per frame)."""
    import io
    from fractions import Fraction

    import av
    import numpy as np

    cpu, size, psnr = 0.0, 0, []
    for s in range(0, len(frames), clip):
        buf = io.BytesIO()
        c0 = time.process_time()
        with av.open(buf, "w", format="mp4") as out:   # as wm.capture.writer does
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
            vs.options = options
            vs.codec_context.thread_count = 1
            for i, f in enumerate(frames[s:s + clip]):
                f.pts, f.time_base = i, Fraction(1, fps)
                for pkt in vs.encode(f):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        cpu += time.process_time() - c0
        size += len(buf.getvalue())
        if reference is not None:
            buf.seek(0)
            with av.open(buf) as c:
                for i, f in enumerate(c.decode(video=0)):
                    d = f.to_ndarray()[:f.height].astype(np.float32) - reference[s + i]
                    psnr.append(float(10 * np.log10(255 ** 2 / max(float((d * d).mean()), 1e-9))))
    return cpu, size, psnr


def sweep(video: Path) -> None:
    import av
    from av.video.reformatter import VideoReformatter
    from loopback import encode, video_frames

    bgr = video_frames(video, (640, 480), 300)[::3]     # 10 s at 10 fps, as the clip keeps
    mjpeg = av.CodecContext.create("mjpeg", "r")
    to_yuv = VideoReformatter()
    frames = [to_yuv.reformat(mjpeg.decode(av.Packet(encode(f)))[0], format="yuv420p")
              for f in bgr]
    reference = [f.to_ndarray()[:f.height].astype("float32") for f in frames]
    seconds = len(frames) / 10
    print(f"encoder sweep: {len(frames)} frames of {video.name} (640x480, 10 fps, as the camera "
          f"delivers them), clips of 30; load average {os.getloadavg()[0]:.1f}")
    print(f"{'preset':10} {'crf':>3} {'tune':12} {'CPU % of a core':>16} {'MB per hour':>12} {'PSNR-Y dB':>10}")
    for preset, crf, tune in SWEEP:
        options = {"preset": preset, "crf": str(crf), **({"tune": tune} if tune else {})}
        _, size, psnr = encode_clips(frames, options, reference=reference)
        cpu = statistics.median(encode_clips(frames, options)[0] for _ in range(3))
        print(f"{preset:10} {crf:3d} {tune or '-':12} {100 * cpu / seconds:16.2f} "
              f"{size / 1e6 * 3600 / seconds:12.0f} {statistics.mean(psnr):10.2f}", flush=True)
    print(f"load average now {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--child", choices=["baseline", "recorder"])
    ap.add_argument("--url")
    ap.add_argument("--home")
    ap.add_argument("--video", type=Path, help="camera shows this video's frames")
    ap.add_argument("--runs", type=int, default=1, help="baseline + recorder this many times")
    ap.add_argument("--encoder", help="capture.encoder for the recorder")
    ap.add_argument("--preset", help="capture.preset for the recorder")
    ap.add_argument("--crf", type=int, help="capture.crf for the recorder")
    ap.add_argument("--capture", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--sweep", action="store_true",
                    help="encode the camera's frames with each x264 choice; no devices")
    a = ap.parse_args()
    if a.sweep:
        if a.video is None:
            raise SystemExit("bench/capture.py: --sweep needs --video FILE")
        sweep(a.video)
        return
    if a.child == "baseline":
        print(json.dumps(child_baseline(a.url, a.seconds)))
        return
    if a.child == "recorder":
        print(json.dumps(child_recorder(a.url, a.seconds, a.home, json.loads(a.capture))))
        return
    with tempfile.TemporaryDirectory(prefix="wm-bench-capture-") as tmp:
        report(a, Path(tmp))


def report(a, work: Path) -> None:
    from loopback import PulseServer, free_port, tone_wav

    capture = {k: v for k, v in (("encoder", a.encoder), ("preset", a.preset), ("crf", a.crf))
               if v is not None}
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "loopback.py"), "mjpeg",
                               "--port", str(port), "--fps", "30",
                               *(["--video", str(a.video)] if a.video else [])],
                              stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    url = f"http://127.0.0.1:{port}/stream"
    runs = []
    with PulseServer(work / "pulse") as pulse:
        wav = tone_wav(work / "tone.wav", seconds=2 * a.seconds * a.runs + 30, hz=440,
                       amplitude=0.2, rate=16000)
        player, _ = pulse.play(wav)
        try:
            for i in range(a.runs):
                home = work / f"home{i}"
                b = run_child("baseline", url, a.seconds, home, capture)
                r = run_child("recorder", url, a.seconds, home, capture)
                gaps, recorded = video_gap_seconds(home)
                r.update(gaps=gaps, recorded=recorded, mb=storage_mb_per_hour(home, recorded),
                         load=Path("/proc/loadavg").read_text().split()[0])
                runs.append((b, r))
                print_run(i + 1, b, r, flush=True)
        finally:
            player.terminate()
            player.wait()
            server.terminate()
            server.wait()
    shows = a.video.name if a.video else "test pattern"
    print(f"\ncapture benchmark: {a.runs} run(s) of {a.seconds:.0f} s, MJPEG 640x480 @ 30 fps "
          f"({shows}) + PulseAudio 16 kHz mono; recorder encoder {runs[0][1]['encoder']}")
    print_summary(runs)


def print_run(n: int, b: dict, r: dict, flush: bool = False) -> None:
    med = statistics.median
    delays = r["delays"]
    mb = r["mb"]
    print(f"run {n}: CPU % baseline {med(b['cpu_windows']):.1f}, recorder "
          f"{med(r['cpu_windows']):.1f} (overall {r['cpu']:.1f}); RSS {r['rss_mb']:.0f} MB; "
          f"lost {r['samples_lost']}/{r['samples']}; dropped {r['frames_dropped']}/"
          f"{r['frames_kept']}; video gaps {r['gaps']:.2f} s; delay median {med(delays):.3f} "
          f"max {max(delays):.3f} ({sum(d <= 1.0 for d in delays)}/{len(delays)} within 1 s); "
          f"MB/h video {mb['video']:.0f} stills {mb['stills']:.0f} audio {mb['audio']:.0f}; "
          f"load {r['load']}", flush=flush)
    print("  threads (% of a core): " + ", ".join(
        f"{k} {v:.1f}" for k, v in sorted(r["threads"].items(), key=lambda kv: -kv[1])),
        flush=flush)


def print_summary(runs: list[tuple[dict, dict]]) -> None:
    med = statistics.median
    b_cpu = [med(b["cpu_windows"]) for b, _ in runs]
    r_cpu = [med(r["cpu_windows"]) for _, r in runs]
    delays = [d for _, r in runs for d in r["delays"]]
    lost = sum(r["samples_lost"] for _, r in runs)
    dropped = sum(r["frames_dropped"] for _, r in runs)
    kept = sum(r["frames_kept"] for _, r in runs)
    mb = {k: med(r["mb"][k] for _, r in runs) for k in ("video", "stills", "audio")}
    print(f"{'':28}{'baseline':>12}{'recorder':>12}")
    print(f"{'CPU % of one core (median)':28}{med(b_cpu):12.1f}{med(r_cpu):12.1f}")
    print(f"{'peak RSS MB':28}{med(b['rss_mb'] for b, _ in runs):12.0f}"
          f"{med(r['rss_mb'] for _, r in runs):12.0f}")
    print(f"recorder / baseline CPU: {med(r_cpu) / max(med(b_cpu), 1e-9):.2f}x")
    print(f"audio samples lost: {lost}; frames dropped: {dropped} of {kept} kept "
          f"({100 * dropped / max(kept, 1):.2f}%)")
    print(f"emission delay median {med(delays):.3f} s, max {max(delays):.3f} s; within 1 s: "
          f"{sum(d <= 1.0 for d in delays)}/{len(delays)}")
    print(f"storage per recorded hour: video {mb['video']:.0f} MB + stills {mb['stills']:.0f} MB"
          f" + audio {mb['audio']:.0f} MB = {sum(mb.values()):.0f} MB")


if __name__ == "__main__":
    main()
