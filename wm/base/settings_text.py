"""What the declaration in wm/base/settings.py says, as text: the shipped defaults.yaml, the
README's reference table, and the words an error uses for a setting's bounds. All three
are made here from the same fields, so none of them can drift from validation."""
from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterator
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo

from wm.base.settings import NOT_SETTINGS, Rule, Settings

HEADER = """\
# wm: the shipped defaults. Generated from wm/base/settings.py, where each setting is
# declared with its bounds: edit that, then run `python tools/config_reference.py`.
# A user's file (--config FILE, WM_CONFIG, or the platform config dir) overrides any of
# these key by key, with the same nesting; the README's configuration reference says
# what values each key accepts.
"""
_BOUNDS = ("gt", "ge", "lt", "le", "multiple_of")
_KIND = {int: "int", float: "number", bool: "true / false", str: "text"}


def leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, FieldInfo, Any]]:
    """(dotted key, declaration, value) of every setting of `obj`, in declaration order."""
    declared = type(obj).__pydantic_fields__
    for f in dataclasses.fields(obj):
        if f.name in NOT_SETTINGS:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaves(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", declared[f.name], value


def _bounds(info: FieldInfo) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for m in info.metadata:
        if isinstance(m, annotated_types.BaseMetadata):
            found.update({k: getattr(m, k) for k in _BOUNDS if hasattr(m, k)})
    return found


def _rule(info: FieldInfo) -> Rule | None:
    return next((m for m in info.metadata if isinstance(m, Rule)), None)


def _choices(info: FieldInfo) -> tuple[str, ...]:
    literal = typing.get_origin(info.annotation) is typing.Literal
    return typing.get_args(info.annotation) if literal else ()


def must(info: FieldInfo, got: Any = None) -> str:
    """The error's words for what a value of this setting must be: "must be positive"."""
    if choices := _choices(info):
        return "must be " + ", ".join(choices[:-1]) + " or " + choices[-1]
    if rule := _rule(info):
        return f"must {rule.words}"
    b = _bounds(info)
    negative = isinstance(got, (int, float)) and not isinstance(got, bool) and got < 0
    if negative and b.get("gt", b.get("ge")) == 0:
        # the first thing wrong with -5 seconds; a 0 that is still refused says "positive"
        return "must not be negative"
    lo = next(((k, b[k]) for k in ("gt", "ge") if k in b), None)
    hi = next(((k, b[k]) for k in ("lt", "le") if k in b), None)
    if lo and hi:
        words = f"be between {lo[1]} and {hi[1]}"
    elif lo:
        words = {("gt", 0): "be positive", ("ge", 0): "not be negative"}.get(
            lo, f"be {'greater than' if lo[0] == 'gt' else 'at least'} {lo[1]}")
    elif hi:
        words = f"be {'less than' if hi[0] == 'lt' else 'at most'} {hi[1]}"
    else:
        words = ""
    if "multiple_of" in b:
        step = "even" if b["multiple_of"] == 2 else f"a multiple of {b['multiple_of']}"
        words = f"{words} and {step}" if words else f"be {step}"
    return f"must {words}" if words else ""


def allowed(info: FieldInfo) -> str:
    """The README's short form of the same bounds: "int > 0", "number 0..1"."""
    if choices := _choices(info):
        return " / ".join(choices)
    if rule := _rule(info):
        return rule.short
    b = _bounds(info)
    if "ge" in b and "le" in b:
        parts = [f"{b['ge']}..{b['le']}"]
    else:
        ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
        parts = [" and ".join(f"{ops[k]} {b[k]}" for k in ops if k in b)]
    if "multiple_of" in b:
        parts.append("even" if b["multiple_of"] == 2 else f"multiple of {b['multiple_of']}")
    kind = _KIND.get(info.annotation, "")
    return ", ".join([f"{kind} {parts[0]}".strip(), *parts[1:]]) if parts[0] else kind


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        # PyYAML reads 1e-05 as a string; 1.0e-05 as a float
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _block(obj: Any, depth: int) -> list[tuple[str, str]]:
    """(line, comment) for a section's keys, nested sections inline, in declaration order."""
    out: list[tuple[str, str]] = []
    declared = type(obj).__pydantic_fields__
    for f in dataclasses.fields(obj):
        if f.name in NOT_SETTINGS:
            continue
        value, pad = getattr(obj, f.name), "  " * depth
        if dataclasses.is_dataclass(value):
            out.append((f"{pad}{f.name}:", ""))
            out += _block(value, depth + 1)
        else:
            out.append((f"{pad}{f.name}: {_scalar(value)}", declared[f.name].description or ""))
    return out


def defaults_yaml() -> str:
    """The text of wm/base/defaults.yaml: every key, its default and its meaning."""
    lines = HEADER.splitlines()
    for name, rows in ((n, _block(v, 1)) for n, v in _sections(Settings())):
        column = max(len(line) for line, _ in rows) + 2
        lines += ["", f"{name}:"]
        lines += [f"{line:<{column}}# {note}" if note else line for line, note in rows]
    return "\n".join(lines) + "\n"


def _sections(settings: Settings) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(settings):
        if f.name not in NOT_SETTINGS:
            yield f.name, getattr(settings, f.name)


def reference_table() -> str:
    """The README's configuration reference, between its config-reference markers."""
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, info, value in leaves(Settings()):
        cells = [f"`{key}`", f"`{json.dumps(value)}`", allowed(info), info.description or ""]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
