"""The README is what a newcomer follows: its configuration reference must match the
shipped defaults, its commands must exist, and its links must lead somewhere."""
from __future__ import annotations

import json
import re
from pathlib import Path

from wm.base import config
from wm.base.settings_text import reference_table
from wm.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _between(text: str, begin: str, end: str) -> str:
    assert begin in text and end in text, f"README lacks the markers {begin} / {end}"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_config_reference_is_the_generated_table():
    got = _between(README, "<!-- config-reference:begin -->", "<!-- config-reference:end -->")
    assert got == reference_table(), \
        "README's configuration reference is stale: run python tools/config_reference.py"


def test_every_setting_has_a_default_and_a_meaning_in_the_readme():
    rows = {m.group(1): (m.group(2), m.group(3).strip(), m.group(4).strip())
            for m in re.finditer(r"^\| `([a-z_.]+)` \| `([^`]*)` \|([^|]*)\|(.*)\|$", README, re.MULTILINE)}
    settings = config.defaults()
    keys = [key for key, _value, _source in config.flatten(settings)]
    assert len(keys) > 50
    missing = [k for k in keys if k not in rows]
    assert not missing, f"settings not in the README: {missing}"
    unexplained = [k for k in keys if not rows[k][2]]
    assert not unexplained, f"settings without a meaning in wm/base/settings.py: {unexplained}"
    # the default shown is the one loaded, and bounded numbers say their bounds
    for key, value, _source in config.flatten(settings):
        assert rows[key][0] == json.dumps(value), key
    assert rows["memory.topk"][1] == "int > 0"
    assert rows["capture.sample_rate"][1] == "int 8000..192000"


def test_every_command_is_in_the_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert f"wm {name}" in README, f"`wm {name}` is not described in the README"


def test_the_two_commands_and_ci_agree():
    assert "make demo" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE), ".ci/run must run the README's test command"


def test_links_lead_to_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"
