"""A trained version's encoders for one `wm query` done without the query service: only the
half the query needs (a picture: the JEPA teacher; a sound: the CPC encoder; both heads of
the alignment, which are small). Building and initialising the whole of Models (student,
teacher, predictor, CPC with its prediction heads) costs more than the rest of a query by
picture. The numbers are those of wm.learn.encoders.Encoders, whose embedding code is used
as is.

Built without random initialisation (skip_init): the checkpoint's tensors replace every
parameter next, and initialising the teacher (trunc_normal_ over 4.7M weights) cost
0.2-0.3 s of a query on one thread, 1-2 s on two beside a busy core. Not built on
PyTorch's meta device instead: on it the position codes' arange goes through torch._refs,
whose first use imports seconds of modules. The checkpoint is mapped, not read whole
(modelfiles.load_checkpoint(mmap=True)), after its sha256 is checked as always."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.learn.align import Align
from wm.learn.cpc import Cpc
from wm.learn.embeddings import Embedder
from wm.learn.encoders import Encoders, load_encoders
from wm.learn.fixed import VERSION_0
from wm.learn.jepa import ViT
from wm.learn.modelfiles import load_version
from wm.learn.models import ModelConfig
from wm.learn.train import pick_device
from wm.learn.versions import all_versions

NEEDS = ("video", "audio")


# torch.nn.init's in-place initialisers (trunc_normal_, kaiming_uniform_, uniform_, ...):
# what every module's construction calls to fill its freshly allocated parameters.
_INITIALISERS = tuple(n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_"))


@contextmanager
def skip_init() -> Iterator[None]:
    """Modules built inside have their parameters allocated but not initialised (their
    values are whatever the memory held): only for a model whose every parameter a
    checkpoint then replaces (_Half.fill is strict). torch.nn.utils.skip_init does the
    same only for a module class that takes a device argument; ours do not. Process-wide
    while inside: only where no other thread builds a model to train meanwhile (a query's
    own process, the query service)."""
    saved = {n: getattr(nn.init, n) for n in _INITIALISERS}
    try:
        for n in saved:
            setattr(nn.init, n, _unchanged)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def _unchanged(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


class _Half(nn.Module):
    """The parts of Models that one kind of query uses, under Models' own names (what
    Encoders reads: jepa.teacher or cpc, align, video_mean, audio_mean, config)."""

    def __init__(self, config: ModelConfig, need: str):
        super().__init__()
        self.config = config
        j = config.jepa
        if need == "video":
            self.jepa = nn.Module()
            self.jepa.teacher = ViT(j.image_size, j.patch_size, j.depth, j.heads, j.width)
        else:
            self.cpc = Cpc(config.cpc, config.sample_rate)
        self.align = Align(j.width, config.cpc.hidden, config.align)
        self.register_buffer("video_mean", torch.zeros(j.width))
        self.register_buffer("audio_mean", torch.zeros(config.cpc.hidden))

    def fill(self, state: dict) -> None:
        """The checkpoint's tensors for these parts (strict: a missing one is an error)."""
        mine = set(self.state_dict())
        state = dict(state)
        for key in ("video_mean", "audio_mean"):   # saved before versions kept their means
            state.setdefault(key, torch.zeros_like(getattr(self, key)))
        # assign: the checkpoint's tensors are used as they are, not copied into new ones
        self.load_state_dict({k: v for k, v in state.items() if k in mine}, strict=True,
                             assign=True)


def load_query_encoders(settings: Settings, paths: Paths, version: str, need: str | None) -> Embedder:
    """`version`'s encoders for a query by picture (need="video") or by sound ("audio");
    need=None (a query by clip embeds both): the whole models, as load_encoders gives them.
    WmError when the version is unknown or its file fails."""
    if version == VERSION_0 or need is None:
        return load_encoders(settings, paths, version=version)
    if need not in NEEDS:
        raise ValueError(f"need must be one of {NEEDS}, not {need!r}")
    named = [v for v in all_versions(paths) if v.version == version]
    if not named:
        raise WmError(f"model version {version} is not known (see `wm status`)")
    # One picture or one sound is a few small matrices: one thread does it as fast on an
    # idle machine, and torch's threads wait for each other at every operation, so with a
    # core busy elsewhere two threads took 0.5-1.1 s per picture here, one 0.03-0.08 s.
    torch.set_num_threads(1)
    ckpt = load_version(paths, named[0], torch.device("cpu"), mmap=True)
    with skip_init():
        half = _Half(ModelConfig.from_dict(ckpt["config"]), need)
    half.fill(ckpt["models"])
    return Encoders(half, version, pick_device(settings.learn.device))
