"""Print the README's configuration reference: every key of the shipped defaults, its
default and the meaning written beside it in wm/base/defaults.yaml. tests/test_readme.py
checks that the README holds exactly this table; after changing defaults.yaml run

    python tools/config_reference.py

and paste its output between the README's config-reference markers."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wm.base import config  # noqa: E402


def comments(yaml_text: str) -> dict[str, str]:
    """The trailing `# comment` of each key, by dotted path (indentation is 2 spaces)."""
    stack: list[str] = []
    found: dict[str, str] = {}
    for line in yaml_text.splitlines():
        m = re.match(r"^( *)([a-z_]+):\s*(.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        rest = m.group(3)
        found[".".join(stack)] = rest.split("#", 1)[1].strip() if "#" in rest else ""
    return found


def table() -> str:
    meaning = comments((ROOT / "wm" / "defaults.yaml").read_text())
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, value, _source in config.flatten(config.defaults()):
        lines.append(f"| `{key}` | `{json.dumps(value)}` | {meaning.get(key, '').replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
