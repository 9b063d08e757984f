"""Settings: the declared defaults (wm/base/settings.py), overridden key by key by the
user's file and then by overrides, validated as they are built. Every problem is one
ConfigError line naming the file, the key and the reason."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

# wm uses no pydantic plugins, and looking for them (every installed package's entry
# points, read when the settings classes are built) cost 0.05-0.1 s of every command.
# Set before pydantic is imported; a user's own PYDANTIC_DISABLE_PLUGINS is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import yaml  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402

from wm.base.errors import WmError  # noqa: E402
from wm.base.redact import redact  # noqa: E402
from wm.base.settings import (  # noqa: E402
    NOT_SETTINGS,
    AlignSettings,
    CaptureSettings,
    CpcSettings,
    DaemonSettings,
    JepaSettings,
    LearnSettings,
    LoggingSettings,
    MemorySettings,
    PathSettings,
    RetentionSettings,
    Settings,
)
from wm.base.settings_text import leaves, must  # noqa: E402

__all__ = [
    "AlignSettings", "CaptureSettings", "ConfigError", "CpcSettings", "DaemonSettings",
    "JepaSettings", "LearnSettings", "LoggingSettings", "MemorySettings", "PathSettings",
    "RetentionSettings", "Settings", "default_config_path", "defaults", "flatten", "load",
    "render", "user_config_path",
]


class ConfigError(WmError):
    pass


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


def _section(path: list[str]) -> type | None:
    """The settings class declared at a dotted path ([] = Settings), if it is one."""
    cls: type = Settings
    for part in path:
        info = cls.__pydantic_fields__.get(part)
        if info is None or not dataclasses.is_dataclass(info.annotation):
            return None
        cls = info.annotation
    return cls


def _declared(path: list[str]) -> FieldInfo | None:
    cls = _section(path[:-1]) if path else None
    return cls.__pydantic_fields__.get(path[-1]) if cls is not None else None


def _unknown(origin: str, dotted: str) -> str:
    cls = _section(dotted.split(".")[:-1])
    known = sorted(n for n in (cls.__pydantic_fields__ if cls else ()) if n not in NOT_SETTINGS)
    return f"{origin}: unknown key '{dotted}' (known here: {', '.join(known)})"


def _merge(base: dict, over: dict, origin: str, sources: dict[str, str], prefix: str = "") -> dict:
    out = dict(base)
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        # the rest of the unknown keys are pydantic's to find (extra="forbid")
        if not isinstance(key, str) or (not prefix and key in NOT_SETTINGS):
            raise ConfigError(_unknown(origin, dotted))
        if isinstance(value, dict):
            below = out.get(key) if isinstance(out.get(key), dict) else {}
            out[key] = _merge(below, value, origin, sources, dotted + ".")
            sources.pop(dotted, None)
        else:
            out[key] = value
            sources[dotted] = origin
    return out


_TYPES = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool"}
_NOT_A_MAPPING = {"dataclass_type", "dataclass_exact_type", "dataclass_args_type"}


def _origin(keys: list[str], sources: dict[str, str]) -> str:
    """The file that set the first of `keys` anyone set (or anything under it)."""
    for key in keys:
        if key in sources:
            return sources[key]
        below = [src for k, src in sources.items() if k.startswith(key + ".")]
        if below:
            return below[-1]
    return "defaults"


def _problem(err: dict, sources: dict[str, str]) -> str:
    """One pydantic error as the line a user reads: file, key, what it must be, the value."""
    path, kind = [str(p) for p in err["loc"]], err["type"]
    ctx, got = err.get("ctx") or {}, err.get("input")
    related: list[str] = []
    if kind == "wm_rule" and ctx.get("field"):
        related = [".".join([*path, r]) for r in ctx["related"].split(",") if r]
        path, got = [*path, ctx["field"]], ctx["got"]
    key = ".".join(path)
    origin = _origin([key, *related], sources)
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return _unknown(origin, key)
    if kind in _NOT_A_MAPPING:
        return f"{origin}: key '{key}' must be a mapping, got {got!r}"
    if kind in _TYPES:
        return f"{origin}: key '{key}' must be {_TYPES[kind]}, got {type(got).__name__} {got!r}"
    if kind == "wm_rule":
        reason = ctx["reason"]
    elif kind == "finite_number":
        reason = "must be a finite number"
    else:
        info = _declared(path)
        reason = (must(info, got) if info is not None else "") or f"is invalid: {err['msg']}"
    return f"{origin}: key '{key}' {reason}, got {got!r}"


def _build(data: dict, sources: dict[str, str]) -> Settings:
    try:
        return Settings(**data, sources=sources)
    except ValidationError as e:
        raise ConfigError(_problem(e.errors(include_url=False)[0], sources)) from None


def load(explicit: str | os.PathLike | None = None, overrides: dict | None = None) -> Settings:
    """Effective settings: defaults <- user file <- overrides (a nested dict, for tests
    and for `wm demo`'s small fast configuration)."""
    sources: dict[str, str] = {}
    merged: dict = {}
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
    return _build(merged, sources)


def defaults() -> Settings:
    """The shipped defaults alone, whatever the user's own file says."""
    return Settings()


def flatten(settings: Settings) -> list[tuple[str, object, str]]:
    """(dotted key, value, source) for every setting, in declaration order."""
    return [(key, value, settings.sources.get(key, "default"))
            for key, _info, value in leaves(settings)]


def render(settings: Settings, home: Path, as_json: bool = False) -> str:
    """`wm config show`: every setting, its value and where it came from (a camera URL's
    password shown as ***)."""
    rows = [(k, redact(v) if isinstance(v, str) else v, src) for k, v, src in flatten(settings)]
    if as_json:
        return json.dumps({"home": str(home),
                           "settings": [{"key": k, "value": v, "source": src}
                                        for k, v, src in rows]}, indent=1)
    width = max(len(k) for k, _, _ in rows)
    lines = [f"# data root: {home}"]
    lines += [f"{k:<{width}}  {json.dumps(v):<24}  {src}" for k, v, src in rows]
    return "\n".join(lines)
