"""`wm label CLIP WORD`: teach a word by example. A word's prototype, per model version, is
the mean of its example clips' vectors (the shared space by default); `wm query --text`
ranks clips against it. Words are only what the user taught: no language model."""
from __future__ import annotations

import re

from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.memory.store import Store

_WORD = re.compile(r"[^\W_][\w' -]{0,62}")


def normalise_word(word: str) -> str:
    """Lower case, single spaces; WmError if it is not a short word or phrase."""
    w = " ".join(word.split()).lower()
    if not _WORD.fullmatch(w):
        raise WmError(f"'{word}' is not a word to teach (letters, digits, spaces, - and ';"
                      " up to 63 characters)")
    return w


def run_label(settings: Settings, paths: Paths, clip_id: str, word: str,
              remove: bool = False) -> int:
    word = normalise_word(word)
    if not paths.memory_db.exists():
        raise WmError(f"clip {clip_id} is not in the memory: the memory is empty")
    with Store(paths) as store:
        if store.clip(clip_id) is None:
            raise WmError(f"clip {clip_id} is not in the memory (clips enter it when a sleep"
                          " cycle commits them)")
        if remove:
            if not store.remove_label(word, clip_id):
                raise WmError(f"clip {clip_id} is not an example of '{word}'")
        elif not store.add_label(word, clip_id):
            print(f"clip {clip_id} already is an example of '{word}'")
        examples = store.words().get(word, [])
    print(f"'{word}': {len(examples)} example{'s' * (len(examples) != 1)}"
          + (f" ({', '.join(examples)})" if examples else " (forgotten)"))
    return 0
