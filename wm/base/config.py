"""Settings: shipped YAML defaults, overridden key by key by the user's file, loaded into
typed dataclasses and validated. Every problem is one ConfigError line naming the file,
the key and the reason."""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from wm.base.errors import WmError


class ConfigError(WmError):
    pass


@dataclass(frozen=True)
class PathSettings:
    home: str


@dataclass(frozen=True)
class CaptureSettings:
    clip_seconds: int
    frame_rate: int
    sample_rate: int
    video_width: int
    video_height: int
    video_fps: int
    jpeg_quality: int
    min_tail_seconds: float
    ingest_preset: str
    camera: str
    microphone: str
    stall_seconds: float
    reopen_max_seconds: float

    @property
    def clip_samples(self) -> int:
        return self.clip_seconds * self.sample_rate


@dataclass(frozen=True)
class DaemonSettings:
    night_window: str
    idle_minutes: float
    assume_idle: bool
    assume_on_power: bool
    check_seconds: float
    lease_seconds: float
    sleep_budget_minutes: float


@dataclass(frozen=True)
class JepaSettings:
    image_size: int
    patch_size: int
    depth: int
    heads: int
    width: int
    predictor_depth: int
    predictor_width: int
    mask_ratio: float
    target_blocks: int
    cross_frame: bool
    ema_start: float
    ema_end: float
    steps: int
    lr: float


@dataclass(frozen=True)
class CpcSettings:
    n_mels: int
    hop_ms: int
    hidden: int
    prediction_steps: int
    negatives: int
    negative_exclusion: int
    steps: int
    lr: float


@dataclass(frozen=True)
class AlignSettings:
    dim: int
    temperature_init: float
    max_logit_scale: float
    exclusion_seconds: float
    steps: int
    lr: float


@dataclass(frozen=True)
class LearnSettings:
    device: str
    threads: int
    batch_size: int
    micro_batch: int
    warmup_steps: int
    weight_decay: float
    checkpoint_minutes: float
    replay_fraction: float
    log_every: int
    seed: int
    jepa: JepaSettings
    cpc: CpcSettings
    align: AlignSettings
    collapse_min_rank: float
    collapse_min_std: float


@dataclass(frozen=True)
class MemorySettings:
    topk: int
    ann_min_rows: int
    ann_nprobe: int


@dataclass(frozen=True)
class RetentionSettings:
    raw_days: float
    max_gb: float
    min_free_gb: float


@dataclass(frozen=True)
class LoggingSettings:
    level: str
    max_bytes: int
    backups: int


@dataclass(frozen=True)
class Settings:
    paths: PathSettings
    capture: CaptureSettings
    daemon: DaemonSettings
    learn: LearnSettings
    memory: MemorySettings
    retention: RetentionSettings
    logging: LoggingSettings
    # dotted key -> where its value came from ("default" or a file path); not a setting
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


# Values that must hold beyond their type: (predicate, reason) per dotted key.
_CHECKS: dict[str, tuple[typing.Callable[[typing.Any], bool], str]] = {
    "capture.clip_seconds": (lambda v: v > 0, "must be positive"),
    "capture.frame_rate": (lambda v: v > 0, "must be positive"),
    "capture.sample_rate": (lambda v: v >= 8000, "must be at least 8000"),
    "capture.video_fps": (lambda v: v > 0, "must be positive"),
    "capture.video_width": (lambda v: v > 0 and v % 2 == 0, "must be positive and even"),
    "capture.video_height": (lambda v: v > 0 and v % 2 == 0, "must be positive and even"),
    "capture.jpeg_quality": (lambda v: 0 <= v <= 100, "must be between 0 and 100"),
    "capture.ingest_preset": (
        lambda v: v in ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
        "must be an x264 preset: ultrafast, superfast, veryfast, faster, fast or medium",
    ),
    "daemon.night_window": (
        lambda v: re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", v) is not None,
        "must look like HH:MM-HH:MM",
    ),
    "learn.device": (lambda v: v in ("auto", "cpu", "cuda", "mps"), "must be auto, cpu, cuda or mps"),
    "learn.batch_size": (lambda v: v > 0, "must be positive"),
    "learn.micro_batch": (lambda v: v > 0, "must be positive"),
    "learn.replay_fraction": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "learn.jepa.mask_ratio": (lambda v: 0 < v < 1, "must be between 0 and 1"),
    "learn.jepa.ema_start": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "learn.jepa.ema_end": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "learn.align.temperature_init": (lambda v: v > 0, "must be positive"),
    "memory.topk": (lambda v: v > 0, "must be positive"),
    "logging.level": (
        lambda v: v in ("debug", "info", "warning", "error"),
        "must be debug, info, warning or error",
    ),
}


def _defaults_text() -> str:
    return resources.files("wm.base").joinpath("defaults.yaml").read_text()


def default_config_path() -> Path:
    """Where a user's own config file lives when neither --config nor WM_CONFIG says."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "wm" / "config.yaml"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "wm" / "config.yaml"


def user_config_path(explicit: str | os.PathLike | None = None) -> tuple[Path | None, bool]:
    """The user's file and whether it was asked for explicitly (then it must exist)."""
    if explicit:
        return Path(explicit), True
    if os.environ.get("WM_CONFIG"):
        return Path(os.environ["WM_CONFIG"]), True
    path = default_config_path()
    return (path, False) if path.exists() else (None, False)


def _parse(text: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{origin}:{where} cannot be parsed: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: must be a mapping of settings, not {type(data).__name__}")
    return data


def _merge(base: dict, over: dict, origin: str, sources: dict[str, str], prefix: str = "") -> dict:
    out = dict(base)
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"{origin}: unknown key '{dotted}' (known here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: key '{dotted}' must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, origin, sources, dotted + ".")
        else:
            out[key] = value
            sources[dotted] = origin
    return out


def _coerce(value, kind, dotted: str, origin: str):
    # YAML has no int/float distinction a person would notice: accept 3 for a float.
    ok = (
        (kind is bool and isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind is str and isinstance(value, (str, int)) and not isinstance(value, bool))
    )
    if not ok:
        raise ConfigError(
            f"{origin}: key '{dotted}' must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    value = kind(value)
    if kind in (int, float) and value < 0:
        raise ConfigError(f"{origin}: key '{dotted}' must not be negative, got {value}")
    check = _CHECKS.get(dotted)
    if check and not check[0](value):
        raise ConfigError(f"{origin}: key '{dotted}' {check[1]}, got {value!r}")
    return value


def _build(cls, data: dict, sources: dict[str, str], prefix: str = ""):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "sources":
            continue
        dotted = f"{prefix}{f.name}"
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = _build(kind, data[f.name], sources, dotted + ".")
        else:
            origin = sources.get(dotted, "defaults.yaml")
            kwargs[f.name] = _coerce(data[f.name], kind, dotted, origin)
    return cls(**kwargs)


def load(explicit: str | os.PathLike | None = None, overrides: dict | None = None) -> Settings:
    """Effective settings: defaults <- user file <- overrides (a nested dict, for tests
    and for `wm demo`'s small fast configuration)."""
    sources: dict[str, str] = {}
    merged = _parse(_defaults_text(), "defaults.yaml")
    path, required = user_config_path(explicit)
    if path is not None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            if required:
                raise ConfigError(f"{path}: config file not found") from None
            text = ""
        except OSError as e:
            raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
        merged = _merge(merged, _parse(text, str(path)), str(path), sources)
    if overrides:
        merged = _merge(merged, overrides, "overrides", sources)
    settings = _build(Settings, merged, sources)
    return dataclasses.replace(settings, sources=sources)


def defaults() -> Settings:
    """The shipped defaults alone, whatever the user's own file says."""
    return _build(Settings, _parse(_defaults_text(), "defaults.yaml"), {})


def flatten(settings: Settings) -> list[tuple[str, object, str]]:
    """(dotted key, value, source) for every setting, in file order."""
    rows: list[tuple[str, object, str]] = []

    def walk(obj, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            if f.name == "sources":
                continue
            value = getattr(obj, f.name)
            dotted = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, dotted + ".")
            else:
                rows.append((dotted, value, settings.sources.get(dotted, "default")))

    walk(settings, "")
    return rows


def render(settings: Settings, home: Path, as_json: bool = False) -> str:
    """`wm config show`: every setting, its value and where it came from."""
    import json

    rows = flatten(settings)
    if as_json:
        return json.dumps({"home": str(home),
                           "settings": [{"key": k, "value": v, "source": src}
                                        for k, v, src in rows]}, indent=1)
    width = max(len(k) for k, _, _ in rows)
    lines = [f"# data root: {home}"]
    lines += [f"{k:<{width}}  {json.dumps(v):<24}  {src}" for k, v, src in rows]
    return "\n".join(lines)
