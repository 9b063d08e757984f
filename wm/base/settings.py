"""Every setting, declared once: its type, default, bounds and one-line meaning. Validation,
the shipped defaults.yaml and the README's reference table (wm/base/settings_text.py) all
come from these classes.

They are pydantic dataclasses, not BaseModels, because callers rely on the dataclass API:
checkpoints store the model settings through dataclasses.asdict, and tests derive
variants with dataclasses.replace. Each construction validates, replace included."""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError, core_schema

# validate_default: a bad default fails when Settings() is built, not in front of a user
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=True)
NOT_SETTINGS = ("sources",)


def _int_as_text(value: Any) -> Any:
    # `camera: 0` in YAML is the integer 0, and means device 0
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# Strict: a bool is never a number and "3" is not 3. A strict float still takes 3.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, BeforeValidator(_int_as_text), Strict()]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A bound pydantic has no keyword for. `words` finishes the error's "must ...";
    `short` is the README's allowed column."""
    words: str
    short: str
    check: Callable[[Any], bool]

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def _validate(self, value):
        if not self.check(value):
            raise PydanticCustomError("wm_rule", "{reason}", {"reason": f"must {self.words}"})
        return value


def refuse(field: str, reason: str, got: Any, *related: str) -> PydanticCustomError:
    """A check across fields, reported against `field`; `related` are the other fields
    involved, so the error can name the file that set any of them."""
    return PydanticCustomError("wm_rule", "{reason}", {
        "reason": reason, "field": field, "got": got, "related": ",".join(related)})


def setting(default: Any, meaning: str, **bounds: Any) -> Any:
    """One setting: its default, the one line the README and defaults.yaml show, and the
    bounds (gt, ge, lt, le, multiple_of) validation enforces."""
    return Field(default, description=meaning, **bounds)


def section(cls: type) -> Any:
    return Field(default_factory=cls)


_HHMM = r"([01]\d|2[0-3]):[0-5]\d"
Window = Annotated[Text, Rule("look like HH:MM-HH:MM (00:00 to 23:59)", "HH:MM-HH:MM",
                              lambda v: re.fullmatch(f"{_HHMM}-{_HHMM}", v) is not None)]
Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]
LR = "peak AdamW learning rate"


@dataclass(frozen=True, config=STRICT)
class PathSettings:
    home: Text = setting(
        "", "data root; empty = the platform's user data dir. WM_HOME wins over this.")


@dataclass(frozen=True, config=STRICT)
class CaptureSettings:
    clip_seconds: Int = setting(3, "length of every clip, in seconds of audio", gt=0)
    frame_rate: Int = setting(
        1, "stills per second written as JPEG (k = 0, 1, 2 for a 3 s clip)", gt=0)
    # what sound devices offer: from telephone 8 kHz to studio 192 kHz
    sample_rate: Int = setting(
        16000, "Hz, mono, PCM16 in the WAV; the master clock", ge=8000, le=192000)
    # even: H.264's 4:2:0 chroma halves both sides
    video_width: Int = setting(
        640, "size of the video stored in the clip (the camera's full stream is not kept)",
        gt=0, multiple_of=2)
    video_height: Int = setting(
        480, "(with video_width) the camera image is letterboxed into this, never stretched",
        gt=0, multiple_of=2)
    video_fps: Int = setting(10, "frame rate of the stored clip video", gt=0)
    jpeg_quality: Int = setting(85, "JPEG quality of the stills", ge=0, le=100)
    min_tail_seconds: Float = setting(
        1.0, "ingest: a final remainder shorter than this is dropped, longer is padded and "
        "flagged", ge=0)
    encoder: Literal["auto", "x264", "videotoolbox", "qsv", "nvenc"] = setting(
        "auto", "H.264 encoder of recorded clips: auto tries the machine's hardware encoder"
        " (VideoToolbox on macOS, QSV/NVENC elsewhere), else x264; a named one that fails"
        " falls back to x264 too")
    preset: Preset = setting(
        "ultrafast", "x264 preset of recorded clips: ultrafast takes ~1/3 of veryfast's CPU"
        " for about the same bytes at the same crf (0.7 dB less PSNR); README: storage per"
        " recorded hour")
    crf: Int = setting(
        26, "x264 quality of recorded clips: lower is better and larger (+2: ~16% smaller)",
        ge=0, le=51)
    ingest_preset: Preset = setting(
        "ultrafast", "x264 preset of ingested clip videos: fastest; superfast: ~35% smaller "
        "files for 10-15% more CPU")
    camera: Text = setting("0", "device index, file path, or URL (rtsp://, http://)")
    microphone: Text = setting("default", "sounddevice name (substring) or index")
    stall_seconds: Float = setting(5.0, "a device with no data for this long is reopened", gt=0)
    reopen_max_seconds: Float = setting(30.0, "longest back-off between reopen attempts", gt=0)

    @property
    def clip_samples(self) -> int:
        return self.clip_seconds * self.sample_rate


@dataclass(frozen=True, config=STRICT)
class DaemonSettings:
    night_window: Window = setting(
        "01:00-06:00", "local time window in which a sleep cycle may start")
    idle_minutes: Float = setting(15.0, "the user must be idle this long", ge=0)
    assume_idle: Bool = setting(True, "what to assume where idleness cannot be probed")
    assume_on_power: Bool = setting(
        True, "what to assume where the power source cannot be probed")
    check_seconds: Float = setting(60.0, "how often the scheduler looks", gt=0)
    lease_seconds: Float = setting(
        3600.0, "a claimed batch not finished by then returns to the queue", gt=0)
    sleep_budget_minutes: Float = setting(
        300.0, "longest a scheduled sleep cycle may run", gt=0)
    retention_minutes: Float = setting(
        60.0, "wm run applies retention this often outside sleep cycles (a long pause or a"
        " day without sleep still forgets old media); while the disk is under"
        " retention.min_free_gb it tries every few minutes", gt=0)
    query_service: Bool = setting(
        True, "wm run keeps the encoders loaded in a low-priority child that answers"
        " `wm query` over a Unix socket in the data root (well under a second instead of"
        " seconds; costs the RAM of torch and the models while it runs)")


@dataclass(frozen=True, config=STRICT)
class JepaSettings:
    image_size: Int = setting(
        128, "stills are resized to this square, in pixels (128: ~4x cheaper than 224, so"
        " ~4x more steps a night and a ~4x cheaper commit)", gt=0)
    patch_size: Int = setting(16, "ViT patch side, in pixels; divides image_size", gt=0)
    depth: Int = setting(6, "encoder transformer blocks", gt=0)
    heads: Int = setting(
        4, "attention heads (encoder and predictor); divides width and predictor_width", gt=0)
    width: Int = setting(256, "encoder width = the visual embedding size", gt=0)
    predictor_depth: Int = setting(4, "predictor transformer blocks", gt=0)
    predictor_width: Int = setting(128, "the predictor is narrower than the encoder", gt=0)
    mask_ratio: Float = setting(0.6, "share of patches removed from the context", gt=0, lt=1)
    target_blocks: Int = setting(4, "target blocks the predictor must fill in per still", gt=0)
    cross_frame: Bool = setting(
        True, "targets from another still of the same clip (false: plain I-JEPA, same still)")
    ema_start: Float = setting(
        0.99, "teacher EMA momentum at the start of the stage (I-JEPA's 0.996 -> 1.0 assumes"
        " ~190k steps; a night has a few thousand at most)", ge=0, le=1)
    ema_end: Float = setting(0.99, "... rising linearly to this at the end", ge=0, le=1)
    var_weight: Float = setting(
        1.0, "VICReg variance hinge on the student's pooled embeddings (against collapse)",
        ge=0)
    cov_weight: Float = setting(
        0.04, "VICReg covariance term on the student's pooled embeddings", ge=0)
    steps: Int = setting(
        5000, "most optimizer steps a night (a time budget may shorten it)", gt=0)
    lr: Float = setting(0.0001, LR, gt=0)

    @model_validator(mode="after")
    def _shapes_fit(self):
        # a grid of whole patches, and attention widths the heads split evenly
        if self.image_size % self.patch_size:
            raise refuse("image_size", f"must be a multiple of patch_size ({self.patch_size})",
                         self.image_size, "patch_size")
        if self.width % self.heads or self.predictor_width % self.heads:
            raise refuse("heads", f"must divide width ({self.width}) and predictor_width "
                         f"({self.predictor_width})", self.heads, "width", "predictor_width")
        return self


@dataclass(frozen=True, config=STRICT)
class CpcSettings:
    n_mels: Int = setting(64, "log-mel bins", gt=0)
    hop_ms: Int = setting(10, "mel frame hop, in milliseconds", gt=0)
    hidden: Int = setting(
        256, "encoder channels and GRU size = the audio embedding size", gt=0)
    prediction_steps: Int = setting(12, "frames ahead predicted (one head each)", gt=0)
    negatives: Int = setting(
        128, "InfoNCE negatives per prediction", gt=0)
    other_clip_negatives: Float = setting(
        0.5, "share of the negatives drawn from other clips of the batch (what is constant"
        " in a place must then be encoded to win)", ge=0, le=1)
    negative_exclusion: Int = setting(
        10, "frames around the positive that are never negatives", ge=0)
    # z: measured to tell places apart better on real footage (BENCHMARKS.md, "pool z").
    pool: Literal["z", "c"] = setting(
        "z", "what a clip's audio embedding averages: z = the convolutional encoder's frames,"
        " c = the GRU context (a model saved without this setting pools c)")
    steps: Int = setting(4000, "most optimizer steps a night", gt=0)
    lr: Float = setting(0.0001, LR, gt=0)


@dataclass(frozen=True, config=STRICT)
class AlignSettings:
    dim: Int = setting(128, "size of the shared audio-visual space", gt=0)
    temperature_init: Float = setting(0.07, "initial softmax temperature (learned)", gt=0)
    max_logit_scale: Float = setting(
        20.0, "the learned 1/temperature is clamped at this", gt=0)
    exclusion_seconds: Float = setting(
        9.0, "clips this close in time (the same visit) count as each other's positives",
        ge=0)
    steps: Int = setting(2000, "most optimizer steps a night", gt=0)
    lr: Float = setting(0.0001, LR, gt=0)


@dataclass(frozen=True, config=STRICT)
class LearnSettings:
    device: Literal["auto", "cpu", "cuda", "mps"] = setting(
        "auto", "auto = cuda, then mps, then cpu")
    threads: Int = setting(
        0, "CPU threads for training; 0 = all cores but one (the recorder keeps running)", ge=0)
    batch_size: Int = setting(16, "clips (JEPA: stills) per optimizer step", gt=0)
    micro_batch: Int = setting(
        8, "batch is accumulated from micro-batches of this size", gt=0)
    warmup_steps: Int = setting(
        200, "linear learning-rate warm-up (at most a quarter of a stage), then cosine to "
        "zero", ge=0)
    weight_decay: Float = setting(
        0.05, "AdamW; none on biases, norms and the temperature", ge=0)
    checkpoint_minutes: Float = setting(
        5.0, "a checkpoint at least this often (and on SIGINT)", gt=0)
    replay_fraction: Float = setting(
        0.25, "share of each batch drawn from earlier days", ge=0, le=1)
    log_every: Int = setting(
        50, "steps between progress log lines when not on a terminal", gt=0)
    seed: Int = setting(
        0, "random seed of the night (masks, batches, initialisation)", ge=0)
    jepa: JepaSettings = section(JepaSettings)
    cpc: CpcSettings = section(CpcSettings)
    align: AlignSettings = section(AlignSettings)
    collapse_min_rank: Float = setting(4.0, "RankMe below this means collapse", ge=0)
    collapse_min_std: Float = setting(
        0.01, "mean per-dimension std below this means collapse", ge=0)
    promote_tolerance: Float = setting(
        0.05, "a night is promoted unless its held-out retrieval is worse than the version"
        " in use by more than this (mean share of held-out queries with their own visit in the top 5)", ge=0, le=1)


@dataclass(frozen=True, config=STRICT)
class MemorySettings:
    topk: Int = setting(10, "results per query when --topk is not given", gt=0)
    ann_min_rows: Int = setting(
        200000, "above this many vectors in one ranking, use the approximate index", ge=0)
    ann_nprobe: Int = setting(
        32, "IVF cells probed at least; raised at each index build until recall@10 >= 0.97",
        gt=0)
    read_attempts: Int = setting(
        5, "sleep cycles that try a clip whose files cannot be read (an I/O error) before"
        " it is set aside as unreadable; its files are kept", gt=0)


@dataclass(frozen=True, config=STRICT)
class RetentionSettings:
    raw_days: Float = setting(
        30.0, "media older than this is deleted (embeddings and a thumbnail stay)", ge=0)
    max_gb: Float = setting(50.0, "and media beyond this size, oldest first", ge=0)
    min_free_gb: Float = setting(
        2.0, "recording pauses when free disk falls under this", ge=0)
    checkpoint_nights: Int = setting(
        3, "nights of model checkpoints kept; older ones go unless the memory still uses"
        " their version", ge=1)
    memories_share: Float = setting(
        0.5, "share of max_gb the memories of clips whose media is gone (thumbnail,"
        " manifest, vectors) may use; beyond it the oldest are forgotten", gt=0, le=1)


@dataclass(frozen=True, config=STRICT)
class LoggingSettings:
    level: Literal["debug", "info", "warning", "error"] = setting(
        "info", "lowest level written to the log")
    max_bytes: Int = setting(10000000, "logs/wm.jsonl is rotated at this size", gt=0)
    backups: Int = setting(5, "rotated log files kept (wm.jsonl.1 ... .5)", ge=0)


@dataclass(frozen=True, config=STRICT)
class Settings:
    paths: PathSettings = section(PathSettings)
    capture: CaptureSettings = section(CaptureSettings)
    daemon: DaemonSettings = section(DaemonSettings)
    learn: LearnSettings = section(LearnSettings)
    memory: MemorySettings = section(MemorySettings)
    retention: RetentionSettings = section(RetentionSettings)
    logging: LoggingSettings = section(LoggingSettings)
    # dotted key -> where its value came from (a file path or "overrides"); not a setting
    sources: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
