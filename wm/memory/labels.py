"""`wm label CLIP WORD`: teach a word by example. A word's prototype, per model version, is
the mean of its example clips' vectors (the shared space by default); `wm query --text`
ranks clips against it. Words are only what the user taught: no language model."""
from __future__ import annotations

import re
import time

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


def add_label(store: Store, word: str, clip_id: str) -> bool:
    cur = store.conn.execute("INSERT OR IGNORE INTO memory_labels VALUES (?, ?, ?)",
                             (word, clip_id, time.time()))
    return cur.rowcount == 1


def remove_label(store: Store, word: str, clip_id: str) -> bool:
    cur = store.conn.execute("DELETE FROM memory_labels WHERE word = ? AND clip_id = ?",
                             (word, clip_id))
    return cur.rowcount == 1


def words(store: Store) -> dict[str, list[str]]:
    """Each taught word's example clips, in the order they were taught."""
    out: dict[str, list[str]] = {}
    for word, cid in store.conn.execute("SELECT word, clip_id FROM memory_labels"
                                        " ORDER BY word, added"):
        out.setdefault(word, []).append(cid)
    return out


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
            if not remove_label(store, word, clip_id):
                raise WmError(f"clip {clip_id} is not an example of '{word}'")
        elif not add_label(store, word, clip_id):
            print(f"clip {clip_id} already is an example of '{word}'")
        examples = words(store).get(word, [])
    print(f"'{word}': {len(examples)} example{'s' * (len(examples) != 1)}"
          + (f" ({', '.join(examples)})" if examples else " (forgotten)"))
    return 0
