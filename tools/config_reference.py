"""Regenerate what is made from the settings declaration (wm/base/settings.py): the shipped
wm/base/defaults.yaml and the README's configuration reference. After changing a setting:

    python tools/config_reference.py            # rewrite both
    python tools/config_reference.py --check    # exit 1 if either is stale
    python tools/config_reference.py --table    # print the README table only

tests/test_config.py and tests/test_readme.py fail while either file is stale."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wm.base.settings_text import defaults_yaml, reference_table

DEFAULTS = ROOT / "wm" / "base" / "defaults.yaml"
README = ROOT / "README.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def readme_with_table(text: str) -> str:
    """README text with only the part between the markers replaced by the generated table."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README.name} lacks the markers {BEGIN} / {END}")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{reference_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    ap.add_argument("--table", action="store_true", help="print the README table and exit")
    args = ap.parse_args(argv)
    if args.table:
        print(reference_table())
        return 0
    wanted = {DEFAULTS: defaults_yaml(), README: readme_with_table(README.read_text())}
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    for path in stale:
        if args.check:
            print(f"{path.relative_to(ROOT)} is stale: run python tools/config_reference.py")
        else:
            path.write_text(wanted[path])
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
