"""Vision, I-JEPA style: a ViT student sees the context patches, a narrow predictor guesses
the teacher's (layer-normed) features at the target patches, and the teacher is an EMA of
the student. A clip's visual embedding is the teacher's output, average-pooled over
patches and frames."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wm.base.config import JepaSettings
from wm.learn.masks import BatchMasks

# Pixel normalisation: a fixed affine map is all a model trained from scratch needs.
PIXEL_MEAN, PIXEL_STD = 0.45, 0.25


def sincos_2d(dim: int, rows: int, cols: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, (rows * cols, dim)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    y, x = torch.meshgrid(torch.arange(rows, dtype=torch.float32),
                          torch.arange(cols, dtype=torch.float32), indexing="ij")
    ang_y = y.reshape(-1, 1) * omega
    ang_x = x.reshape(-1, 1) * omega
    out = torch.cat([ang_y.sin(), ang_y.cos(), ang_x.sin(), ang_x.cos()], 1)
    return F.pad(out, (0, dim - out.shape[1]))


class Block(nn.Module):
    """Pre-norm transformer block; attention through scaled_dot_product_attention."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), idx (B, K) -> (B, K, D)."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class ViT(nn.Module):
    def __init__(self, image_size: int, patch_size: int, depth: int, heads: int, width: int):
        super().__init__()
        self.patch = patch_size
        self.grid = image_size // patch_size
        # A linear map of flattened patches is a stride-p convolution, as one large matmul.
        self.embed = nn.Linear(3 * patch_size * patch_size, width)
        self.register_buffer("pos", sincos_2d(width, self.grid, self.grid), persistent=False)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        _init(self)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, 3 * p * p), row-major over the patch grid."""
        b, c, _, _ = images.shape
        p, g = self.patch, self.grid
        x = images[:, :, : g * p, : g * p].reshape(b, c, g, p, g, p)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)

    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(self.patches(images)) + self.pos
        if keep is not None:
            x = gather_tokens(x, keep)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class Predictor(nn.Module):
    def __init__(self, grid: int, width: int, pred_width: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(width, pred_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_width))
        self.register_buffer("pos", sincos_2d(pred_width, grid, grid), persistent=False)
        self.blocks = nn.ModuleList(Block(pred_width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(pred_width)
        self.out = nn.Linear(pred_width, width)
        _init(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, ctx: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> torch.Tensor:
        """Features at `tgt_idx` (B, T) from context tokens at `ctx_idx` (B, Nc). All target
        blocks are predicted in one pass: mask tokens carry only positions, so letting
        them see each other leaks nothing, and one pass is cheaper than one per block."""
        pos = self.pos.unsqueeze(0).expand(ctx.shape[0], -1, -1)
        x = self.embed(ctx) + gather_tokens(pos, ctx_idx)
        m = self.mask_token + gather_tokens(pos, tgt_idx)
        x = torch.cat([x, m], 1)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x[:, ctx.shape[1]:]))


def variance_covariance(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's terms on a batch (B, D): a hinge pulling each dimension's std up to 1, and
    the squared off-diagonal covariances (decorrelated dimensions), each scaled by D."""
    x = x - x.mean(0)
    std = torch.sqrt(x.var(0) + 1e-4)
    var = F.relu(1 - std).mean()
    c = (x.T @ x) / max(1, len(x) - 1)
    off = c - torch.diag(torch.diagonal(c))
    return var, off.pow(2).sum() / x.shape[1]


class Jepa(nn.Module):
    def __init__(self, s: JepaSettings):
        super().__init__()
        heads = s.heads
        self.encoder = ViT(s.image_size, s.patch_size, s.depth, heads, s.width)
        self.predictor = Predictor(self.encoder.grid, s.width, s.predictor_width, s.predictor_depth,
                                   max(1, heads * s.predictor_width // s.width))
        self.teacher = copy.deepcopy(self.encoder).requires_grad_(False)
        self.var_weight, self.cov_weight = s.var_weight, s.cov_weight

    def loss(self, images: torch.Tensor, masks: BatchMasks,
             later: torch.Tensor | None = None) -> torch.Tensor:
        """Predict, from the context patches of `images`, the teacher's features at the
        target patches of `later` (another frame of the same clip, or the same images)."""
        dev = images.device
        ctx_idx = torch.from_numpy(masks.context).to(dev)
        tgt_idx = torch.from_numpy(masks.targets).to(dev).flatten(1)
        with torch.no_grad():
            t = self.teacher(images if later is None else later)
            target = gather_tokens(F.layer_norm(t, t.shape[-1:]), tgt_idx)
        ctx = self.encoder(images, ctx_idx)
        pred = self.predictor(ctx, ctx_idx, tgt_idx)
        loss = F.smooth_l1_loss(pred, target)
        if self.var_weight or self.cov_weight:
            # The EMA alone does not stop the pooled embedding from collapsing (C-JEPA):
            # a VICReg variance/covariance term on the student's pooled context keeps
            # every image distinct in every dimension.
            var, cov = variance_covariance(ctx.mean(1))
            loss = loss + self.var_weight * var + self.cov_weight * cov
        return loss

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        t = list(self.teacher.parameters())
        torch._foreach_lerp_(t, list(self.encoder.parameters()), 1.0 - momentum)


def to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 RGB (B, H, W, 3) -> normalised float (B, 3, H, W) on `device`."""
    x = torch.as_tensor(images).to(device).permute(0, 3, 1, 2).float()
    return (x / 255.0 - PIXEL_MEAN) / PIXEL_STD


@torch.no_grad()
def embed_images(teacher: ViT, x: torch.Tensor) -> torch.Tensor:
    """Average-pooled teacher features, (B, width)."""
    return teacher(x).mean(1)
