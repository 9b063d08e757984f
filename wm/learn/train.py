"""The plain training loop every stage shares: AdamW with warm-up + cosine, gradient
accumulation over micro-batches (inside the stage's step), a checkpoint every few
minutes, a time budget, and a stop request honoured between micro-batches."""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import torch

from wm.base import log
from wm.base.atomic import fsync_dir, write_atomically
from wm.base.errors import WmError
from wm.base.progress import Progress

_log = log.get("wm.learn")


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise WmError("learn.device is 'cuda' but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise WmError("learn.device is 'mps' but MPS is not available")
    return torch.device(name)


def cpu_threads(setting: int) -> int:
    """Threads for training on the CPU: the setting, or all cores but one. A core left to
    the recorder matters more than it seems: when one of the threads torch waits for at
    every operation is descheduled, a step takes several times as long (measured on a
    2-core machine: a JEPA step took 6.9-9.3 s on 2 threads beside another busy process,
    1.6 s on 1)."""
    return setting if setting > 0 else max(1, (os.cpu_count() or 1) - 1)


def autocast(device: torch.device):
    """bf16 autocast for the vision transformer on CUDA GPUs that have it; fp32 everywhere
    else (the GRU and the log-mel stay fp32 everywhere). Never bf16 on a CPU: without
    native bf16 (AVX2-only laptops) its matmuls run ~100x slower."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak`, then cosine to zero at `total`. The warm-up is at most a
    quarter of the run, so a short (budget-cut) night still spends most steps learning."""
    warmup = min(warmup, total // 4)
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def momentum_at(step: int, total: int, start: float, end: float) -> float:
    """EMA momentum rising linearly from `start` to `end` over the stage."""
    return start + (end - start) * min(1.0, step / max(1, total))


def param_groups(params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and scalars (the CLIP temperature)."""
    decay, plain = [], []
    for _, p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class _Hashing:
    """A file torch.save writes through, hashing what passes (torch writes the zip in
    one pass, so this is the file's sha256 without reading it back)."""

    def __init__(self, f: BinaryIO):
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def atomic_save(obj, path: Path) -> str:
    """torch.save so that a crash leaves the old file or the new, and durably: the folder
    is fsynced after the rename (and so is each folder this created), so a version row
    written afterwards never points at a file a power cut can take back. Returns the
    file's sha256."""
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    out: list[_Hashing] = []

    def write(f: BinaryIO) -> None:
        out.append(_Hashing(f))
        torch.save(obj, out[0])

    write_atomically(path, write)
    for folder in [path.parent] + [d.parent for d in created]:
        fsync_dir(folder)
    return out[0].sha.hexdigest()


@dataclass
class StageRecord:
    """A stage's progress: saved in every checkpoint, and the report's raw material."""
    name: str
    max_steps: int
    step: int = 0
    planned: int = 0            # where the schedule ends: max_steps, or less if the budget says so
    done: bool = False
    note: str = ""
    seconds: float = 0.0        # training time over every run of this stage
    samples: int = 0
    resumed_at: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)               # one per step
    curves: dict[str, list[float]] = field(default_factory=dict)    # other per-step numbers

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StageRecord":
        return cls(**d)

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class Stage:
    """One model's training. Subclasses set the fields and implement `step`."""
    name: str
    unit: str                   # what a sample is: "images", "clips"
    batch: int
    lr: float
    module: torch.nn.Module     # what the optimizer updates

    @property
    def has_data(self) -> bool:
        return True

    def prepare(self) -> None:
        """Work before the first step of a run (e.g. precomputing inputs)."""

    def step(self, step: int, total: int, should_stop: Callable[[], bool]) -> dict[str, float] | None:
        """Forward + backward of one batch (accumulated over micro-batches); the numbers to
        record, "loss" first. None if a stop was requested before the batch was complete."""
        raise NotImplementedError

    def after_step(self, step: int, total: int) -> None:
        """After the optimizer step (EMA update, clamping)."""

    def close(self) -> None:
        """Release what the stage holds (threads); called when its run ends."""


@dataclass
class Loop:
    should_stop: Callable[[], bool]
    save: Callable[[], None]            # writes the night's checkpoint
    checkpoint_seconds: float
    deadline: float | None              # time.monotonic() by which this stage must end
    warmup: int
    log_every: int


REPLAN_SECONDS = 30.0   # how often a stage re-fits its schedule to the time left
RECENT_STEPS = 25       # the step times that say how fast the machine is now


def fit_steps(step: int, max_steps: int, seconds_left: float, per_step: float) -> int:
    """Where a stage's schedule should end: as many more steps as fit in the time left at
    the current speed, never past max_steps (step itself when none fits)."""
    fits = int(max(0.0, seconds_left) / per_step) if per_step > 0 else max_steps
    return max(step, min(max_steps, step + fits))


def _plan(rec: StageRecord, loop: Loop, step_times: list[float]) -> None:
    """Fit the schedule to the time left, from the recent step times (the first step,
    which warms caches up, is left out). Re-run while the stage trains and once more when
    the plan is done: a plan made at a busy moment would otherwise cut the whole stage
    short, and one made at a quiet moment would be ended by the deadline before its
    learning rate has come down."""
    recent = step_times[1:][-RECENT_STEPS:]
    per_step = statistics.median(recent)
    planned = fit_steps(rec.step, rec.max_steps, loop.deadline - time.monotonic(), per_step)
    if planned != rec.planned:
        rec.planned = planned
        _log.info("stage_planned", stage=rec.name, steps=rec.planned, seconds_per_step=round(per_step, 3))


def run_stage(stage: Stage, rec: StageRecord, opt: torch.optim.Optimizer, loop: Loop) -> bool:
    """Train until the stage's schedule ends (True) or a stop is requested (False; the
    caller saves). Resumes at rec.step."""
    if rec.step:
        rec.resumed_at.append(rec.step)
        _log.info("stage_resumed", stage=rec.name, step=rec.step)
    rec.planned = max(rec.step, rec.max_steps)
    stage.prepare()
    step_times: list[float] = []
    last_save = planned_at = time.monotonic()
    bar = Progress(rec.planned * stage.batch, rec.name, stage.unit, every_seconds=math.inf)
    bar.done = rec.step * stage.batch
    try:
        while rec.step < rec.planned:
            if loop.should_stop():
                return False
            t0 = time.monotonic()
            for g in opt.param_groups:
                g["lr"] = lr_at(rec.step, rec.planned, loop.warmup, stage.lr)
            opt.zero_grad(set_to_none=True)
            numbers = stage.step(rec.step, rec.planned, loop.should_stop)
            if numbers is None:
                return False
            opt.step()
            stage.after_step(rec.step, rec.planned)
            rec.step += 1
            dt = time.monotonic() - t0
            rec.seconds += dt
            rec.samples += stage.batch
            rec.losses.append(numbers["loss"])
            for key, value in numbers.items():
                if key != "loss":
                    rec.curves.setdefault(key, []).append(value)
            step_times.append(dt)
            if loop.deadline is not None:
                due = time.monotonic() - planned_at >= REPLAN_SECONDS or rec.step >= rec.planned
                if len(step_times) == 4 or (len(step_times) > 4 and due):
                    _plan(rec, loop, step_times)
                    planned_at = time.monotonic()
                    bar.total = rec.planned * stage.batch
                if time.monotonic() > loop.deadline:
                    rec.planned = rec.step
                    rec.note = f"time budget ended the stage at step {rec.step} of {rec.max_steps}"
            rate = stage.batch / dt
            bar.update(stage.batch, f"loss {numbers['loss']:.4f}")
            if rec.step % loop.log_every == 0 or rec.step == rec.planned:
                _log.info("train_progress", stage=rec.name, step=rec.step, of=rec.planned,
                          loss=round(numbers["loss"], 5), per_second=round(rate, 2), unit=stage.unit)
            if time.monotonic() - last_save >= loop.checkpoint_seconds and rec.step < rec.planned:
                loop.save()
                last_save = time.monotonic()
    finally:
        bar.close()
        stage.close()
    if rec.step < rec.max_steps and not rec.note:
        rec.note = f"time budget ended the stage at step {rec.step} of {rec.max_steps}"
    rec.done = True
    return True
