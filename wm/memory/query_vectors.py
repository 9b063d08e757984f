"""The query as a vector, once per model version: vectors of two versions are not
comparable, so a picture or sound is embedded by each version's own encoders, a clip
brings its own vector of that version, and a word the mean of its examples'."""
from __future__ import annotations

from functools import partial

import numpy as np

from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.learn.fixed import VERSION_0, FixedEncoders
from wm.memory.clips import ClipRecord
from wm.memory.commit import embed, read_media
from wm.memory.store import Store


class VersionSkipped(Exception):
    """This version cannot be searched for the query (the other versions still are)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def default_encoders(settings: Settings, paths: Paths, version: str, need: str | None = None):
    """`version`'s encoders; need="video" or "audio": only what a query by picture or by
    sound uses (a query done in-process loads one half of the models, not all of them)."""
    if version == VERSION_0:     # no model to load: version 0 answers without torch
        return FixedEncoders(settings.capture.sample_rate)
    # Deferred: the learn component loads torch, which a query by clip or word may not need.
    from wm.learn.query_encoders import load_query_encoders

    return load_query_encoders(settings, paths, version, need)


def encoders_for(source: str):
    """The default loader for a query of this source: a picture needs only the vision half."""
    need = {"image": "video", "audio": "audio"}.get(source)
    return partial(default_encoders, need=need)


class QueryVectors:
    """The query as a vector of one kind, per model version (encoders loaded lazily)."""

    def __init__(self, settings: Settings, paths: Paths, store: Store, source: str, kind: str,
                 load, image=None, sound=None, anchor: ClipRecord | None = None,
                 examples: list[ClipRecord] | None = None):
        self.settings, self.paths, self.store, self.load = settings, paths, store, load
        self.source, self.kind = source, kind
        self.image, self.sound, self.anchor, self.examples = image, sound, anchor, examples
        self._encoders: dict = {}

    def encoders(self, version: str):
        if version not in self._encoders:
            self._encoders[version] = self.load(self.settings, self.paths, version=version)
        return self._encoders[version]

    def for_version(self, version: str) -> np.ndarray:
        """The vector; VersionSkipped says why there is none for this version."""
        vec = self._vector(version)
        if np.isnan(vec).any():
            # version 0 has no shared audio-visual space: a sound cannot find pictures there
            raise VersionSkipped(f"its model gives no {self.kind.replace('_', ' ')} vector"
                                 f" for this {self.source}")
        return vec

    def _vector(self, version: str) -> np.ndarray:
        try:
            if self.source == "image":
                return self.encoders(version).embed_image(self.image).of(self.kind)[0]
            if self.source == "audio":
                return self.encoders(version).embed_sound(self.sound).of(self.kind)[0]
        except WmError as e:
            raise VersionSkipped(f"its model cannot be loaded ({e})") from None
        if self.source == "text":
            vecs = [v for v in (self.store.vector(c, version, self.kind) for c in self.examples)
                    if v is not None]
            if not vecs:
                raise VersionSkipped("no example of the word has vectors of this version")
            return np.mean(vecs, axis=0)
        vec = self.store.vector(self.anchor, version, self.kind)
        if vec is None:
            vec = self._embed_anchor(version)
        if vec is None:
            raise VersionSkipped("the clip has no vectors of this version")
        return vec

    def _embed_anchor(self, version: str) -> np.ndarray | None:
        """The anchor clip's vector made now from its media, for a version that has not
        re-embedded it yet."""
        if self.anchor.media_gone is not None:
            return None
        loaded = read_media(self.paths, self.anchor)
        try:
            row = embed(self.encoders(version), [loaded]).of(self.kind)[0] if loaded else None
        except WmError:
            return None
        return None if row is None or np.isnan(row).any() else row
