"""Benchmark: training throughput of the three models at the shipped sizes, against the
machine's own fp32 matrix-multiply rate, and what a night of the default steps costs.

In one run:
  matmul    torch.mm of large fp32 matrices: the baseline GFLOP/s of this machine;
  jepa      one training step (batch 16 in micro-batches, teacher + student + predictor,
            AdamW, EMA) on 224 px images: images/s, model FLOPs per step counted by
            torch.utils.flop_counter.FlopCounterMode, and MFU = achieved FLOP/s over the
            matmul rate;
  cpc       one training step (batch 16 windows of 1.28 s): clips/s, FLOPs, MFU;
  align     one step of the heads on precomputed embeddings (clips/s), and the embedding
            pass that precedes it (teacher on 3 stills + CPC on 3 s per clip: clips/s);
  loading   decoding and cropping the stills of one JEPA batch from 640x480 JPEGs.
Medians over --reps timed steps after --warmup. Then the arithmetic of a night (5000 /
4000 / 2000 steps at batch 16, the alignment pool of up to 4096 clips) here and on a
4-core laptop, assumed to multiply 2x as fast as this machine.

    .venv/bin/python bench/train.py [--reps 5] [--threads N] [--micro-batch 8]

On a machine other work is using, run it with --threads 1 as well: a step on all cores
slows several-fold whenever one core is taken (see wm.learn.train.cpu_threads).

Target: JEPA at >= 50% of the measured matmul rate on CPU; a night within 5 hours on a
4-core laptop."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from wm.base import config  # noqa: E402
from wm.demo.synth import scene_sound, scene_still  # noqa: E402
from wm.learn.cpc import WINDOW_SECONDS, to_wave  # noqa: E402
from wm.learn.data import ClipRef, StillCache, frame_pairs  # noqa: E402
from wm.learn.encoders import Encoders  # noqa: E402
from wm.learn.masks import sample_masks, spec_for  # noqa: E402
from wm.learn.models import ModelConfig, build_models  # noqa: E402
from wm.learn.stages import ALIGN_POOL  # noqa: E402
from wm.learn.train import cpu_threads, param_groups, pick_device  # noqa: E402


def timed(fn, warmup: int, reps: int, sync) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Matmul:
    """The baseline, measured again beside every timed step: on a machine shared with other
    work the rate moves, and a step is only comparable with a matmul timed next to it."""

    def __init__(self, device: torch.device, sync):
        self.n = 4096 if device.type != "cpu" else 2048
        self.a = torch.randn(self.n, self.n, device=device)
        self.b = torch.randn(self.n, self.n, device=device)
        self.sync = sync
        self.rate()

    def rate(self) -> float:
        t = time.perf_counter()
        torch.mm(self.a, self.b)
        self.sync()
        return 2 * self.n ** 3 / (time.perf_counter() - t)


def paired(fn, flops: float, mm: Matmul, warmup: int, reps: int, sync) -> tuple[float, float, float]:
    """Median seconds per call, median matmul FLOP/s beside it, median MFU of the pairs."""
    for _ in range(warmup):
        fn()
    times, rates, mfu = [], [], []
    for _ in range(reps):
        rate = mm.rate()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        rates.append(rate)
        mfu.append(flops / times[-1] / rate)
    return statistics.median(times), statistics.median(rates), statistics.median(mfu)


def flops_of(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: what `wm sleep` uses, learn.threads)")
    ap.add_argument("--micro-batch", type=int, default=0, help="override learn.micro_batch")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    over = {"learn": {"device": args.device}}
    if args.micro_batch:
        over["learn"]["micro_batch"] = args.micro_batch
    s = config.load(None, overrides=over)
    learn = s.learn
    dev = pick_device(learn.device)
    torch.set_num_threads(args.threads or cpu_threads(learn.threads))
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, batch {learn.batch_size},"
          f" micro-batch {learn.micro_batch}")

    print(f"load average {os.getloadavg()[0]:.2f} (other work on the machine slows every number)")

    # -- baseline: fp32 matmul ---------------------------------------------------------
    mm = Matmul(dev, sync)
    peak = statistics.median(mm.rate() for _ in range(max(5, args.reps)))
    print(f"matmul  fp32 {mm.n}x{mm.n}: {peak / 1e9:8.1f} GFLOP/s  (median of {max(5, args.reps)})")

    models = build_models(ModelConfig.from_settings(s), 0).to(dev).train()
    B, m = learn.batch_size, learn.micro_batch
    micro = [min(m, B - i) for i in range(0, B, m)]

    # -- JEPA -----------------------------------------------------------------------------
    j = learn.jepa
    jepa = models.jepa
    spec = spec_for(j.image_size, j.patch_size, j.mask_ratio, j.target_blocks)
    imgs = torch.randn(m, 3, j.image_size, j.image_size, device=dev)
    later = torch.randn(m, 3, j.image_size, j.image_size, device=dev)
    student = torch.nn.ModuleList([jepa.encoder, jepa.predictor])
    opt = torch.optim.AdamW(param_groups(student.named_parameters(), learn.weight_decay), lr=j.lr,
                            foreach=True)
    masks = [sample_masks(rng, spec, k) for k in micro]

    def jepa_step():
        opt.zero_grad(set_to_none=True)
        for k, mk in zip(micro, masks):
            (jepa.loss(imgs[:k], mk, later[:k]) * (k / B)).backward()
        opt.step()
        jepa.update_teacher(0.996)

    jepa_flops = flops_of(jepa_step)
    t_jepa, mm_jepa, mfu_jepa = paired(jepa_step, jepa_flops, mm, args.warmup, args.reps, sync)
    print(f"jepa    {B / t_jepa:8.2f} images/s  {t_jepa:6.2f} s/step  {jepa_flops / B / 1e9:5.2f} GFLOP/image"
          f"  {jepa_flops / t_jepa / 1e9:7.1f} GFLOP/s  MFU {mfu_jepa:6.1%} (matmul beside it"
          f" {mm_jepa / 1e9:.0f} GFLOP/s)")

    # -- data loading for one JEPA batch (640x480 JPEGs, two stills per sample) ----------
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(6):
            p = Path(tmp) / f"{i}.jpg"
            cv2.imwrite(str(p), scene_still(i % 4, rng, (480, 640)))
            paths.append(p)
        clips = [ClipRef(str(i), "d", 0.0, tuple(paths[i % 2 * 3:i % 2 * 3 + 3]), None)
                 for i in range(B)]
        no_cache = StillCache(j.image_size, max_bytes=0)
        t_load = timed(lambda: frame_pairs(rng, clips, j.image_size, j.cross_frame, no_cache),
                       1, args.reps, lambda: None)
    print(f"loading {t_load * 1000:8.1f} ms per JEPA batch, uncached ({t_load / t_jepa:.1%} of a step;"
          " a loader thread overlaps it with training)")

    # -- CPC ----------------------------------------------------------------------------------
    c = learn.cpc
    cpc = models.cpc
    window = int(WINDOW_SECONDS * s.capture.sample_rate)
    waves = to_wave(np.stack([scene_sound(i % 4, rng, WINDOW_SECONDS, s.capture.sample_rate)
                              for i in range(m)]), dev)
    gen = torch.Generator(dev).manual_seed(0)
    copt = torch.optim.AdamW(param_groups(cpc.named_parameters(), learn.weight_decay), lr=c.lr, foreach=True)

    def cpc_step():
        copt.zero_grad(set_to_none=True)
        for k in micro:
            loss, _ = cpc.loss(waves[:k], gen)
            (loss * (k / B)).backward()
        copt.step()

    cpc_flops = flops_of(cpc_step)
    t_cpc, mm_cpc, mfu_cpc = paired(cpc_step, cpc_flops, mm, args.warmup, args.reps, sync)
    print(f"cpc     {B / t_cpc:8.2f} clips/s   {t_cpc:6.2f} s/step  {cpc_flops / B / 1e9:5.2f} GFLOP/clip "
          f"  {cpc_flops / t_cpc / 1e9:7.1f} GFLOP/s  MFU {mfu_cpc:6.1%} (matmul beside it"
          f" {mm_cpc / 1e9:.0f} GFLOP/s; windows of {window} samples)")

    # -- alignment: the embedding pass, then the heads -----------------------------------
    enc = Encoders(models, "bench", dev)
    stills = [[scene_still(i % 4, rng, (480, 640)) for _ in range(3)] for i in range(8)]
    sounds = [scene_sound(i % 4, rng, s.capture.clip_seconds, s.capture.sample_rate) for i in range(8)]
    t_embed = timed(lambda: enc.embed_clips(stills, sounds), 1, max(3, args.reps // 2), sync) / 8
    models.train()
    align = models.align
    v = torch.randn(B, j.width, device=dev)
    au = torch.randn(B, c.hidden, device=dev)
    times = torch.arange(B, device=dev, dtype=torch.float32) * 60
    aopt = torch.optim.AdamW(param_groups(align.named_parameters(), learn.weight_decay), lr=learn.align.lr,
                             foreach=True)

    def align_step():
        aopt.zero_grad(set_to_none=True)
        align.loss(v, au, times, learn.align.exclusion_seconds).backward()
        aopt.step()
        align.clamp_()

    t_align = timed(align_step, args.warmup, max(20, args.reps), sync)
    print(f"align   {B / t_align:8.0f} clips/s (heads)   embedding pass {1 / t_embed:6.2f} clips/s"
          f" ({t_embed * 1000:.0f} ms per clip: 3 stills + 3 s of audio)")

    # -- a night --------------------------------------------------------------------------
    night = [
        ("jepa", j.steps, "steps", t_jepa),
        ("cpc", c.steps, "steps", t_cpc),
        ("align embedding pass", ALIGN_POOL, "clips", t_embed),
        ("align heads", learn.align.steps, "steps", t_align),
    ]
    total = sum(n * t for _, n, _, t in night)
    print(f"\na night of the default steps (batch {B}), here:")
    for name, n, unit, t in night:
        print(f"  {name:22s} {n:5d} {unit} x {t:7.3f} s = {n * t / 3600:5.2f} h")
    print(f"  {'total':22s} {total / 3600:35.2f} h")
    print(f"4-core laptop, assuming it multiplies 2x as fast as this machine did beside the steps"
          f" (2 x {statistics.median([mm_jepa, mm_cpc]) / 1e9:.0f} GFLOP/s):"
          f" {total / 3600:.2f} h / 2 = {total / 2 / 3600:.2f} h  (target: within 5 h)")
    print(f"  (the memory stage then embeds every clip of the day: 19,200 clips for 16 hours of"
          f" recording x {t_embed:.3f} s / 2 = {19200 * t_embed / 2 / 3600:.2f} h there)")
    print(f"\njepa MFU {mfu_jepa:.1%} of the matmul rate measured beside it (target >= 50%)")


if __name__ == "__main__":
    main()
