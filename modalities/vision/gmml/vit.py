"""The DINO-style Vision Transformer that GMML trains (Sara-Ahmed/GMML `vision_transformer.py`).

An image is cut into p x p patches (a strided Conv2d), a learned cls token is prepended,
learned absolute positions are added, and pre-LN blocks follow: `x + attn(norm1(x))`,
then `x + mlp(norm2(x))`. Module and parameter names are upstream's, so a DINO, GMML or
timm state dict loads with its prefixes stripped only.

Positions are learned for one patch grid (n x n). Other image sizes get them resampled by
`interpolate_pos_embed`, which reproduces DINO's numbers exactly, quirks included.

Shapes: B images, C channels, H x W pixels, p patch side, h x w patch grid, N = h * w
patches, T = N + 1 tokens (cls first), D width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.checkpointing import CheckpointedBlocks
from zoo.errors import CheckpointError

#: DINO adds this to the target grid before dividing by the stored one, so that the scale
#: factor's float rounding never makes F.interpolate produce one row or column too few
GRID_OFFSET = 0.1


def interpolate_pos_embed(pos_embed: torch.Tensor, height: int, width: int, patch_size: int) -> torch.Tensor:
    """Learned positions (1, n*n + 1, D) resampled for an H x W image -> (1, h*w + 1, D).

    Left as they are only when the image has the stored number of patches *and* is square
    (DINO's test), so a non-square image with n*n patches is still resampled. Otherwise
    the n x n grid is resized bicubically (A = -0.75, align_corners=False) with the
    *scale factor* ((H // p + 0.1) / n, (W // p + 0.1) / n), not a target size: the
    kernel places its samples by the factor, so `size=(h, w)` would give other numbers.
    The cls position is kept as it is. Computed in float32.
    """
    stored = pos_embed.shape[1] - 1
    rows, cols = height // patch_size, width // patch_size
    if rows * cols == stored and height == width:
        return pos_embed
    side = math.isqrt(stored)
    if side * side != stored:
        raise CheckpointError(f"pos_embed holds {stored} patch positions, not a square grid; cannot resample it")
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = ((rows + GRID_OFFSET) / side, (cols + GRID_OFFSET) / side)
    grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    if grid.shape[-2:] != (rows, cols):
        raise ValueError(f"resampled positions have grid {tuple(grid.shape[-2:])}, expected {(rows, cols)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim).to(pos_embed.dtype)
    return torch.cat([pos_embed[:, :1], grid], dim=1)


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, N, D): one strided convolution, patches in row-major order."""

    def __init__(self, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (torch's fused kernel)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(mixed.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Linear -> exact (erf) GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for whole images with
    probability `rate` and rescale the kept ones; the identity at inference."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, eps: float,
                 drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_linear(module: nn.Module) -> None:
    """DINO's start for training from scratch: truncated-normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class VisionTransformer(CheckpointedBlocks, nn.Module):
    """Patch embedding, cls token, learned positions, pre-LN blocks and a final LayerNorm.

    Args:
        image_size: side of the square training images; fixes the stored position grid.
        patch_size: side p of the square patches.
        in_channels: image channels C.
        dim / depth / num_heads: width D, number of blocks, attention heads.
        mlp_ratio: MLP hidden width over D.
        qkv_bias: whether the qkv projection has a bias.
        eps: epsilon of every LayerNorm.
        drop_path_rate: stochastic depth of the last block; earlier blocks get linearly less.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, qkv_bias: bool, eps: float, drop_path_rate: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(patch_size, in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2 + 1, dim))
        rates = [drop_path_rate * index / max(depth - 1, 1) for index in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, qkv_bias, eps, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_linear)

    def positions_for(self, height: int, width: int) -> torch.Tensor:
        """(1, T, D) positions of an H x W image (see `interpolate_pos_embed`)."""
        return interpolate_pos_embed(self.pos_embed, height, width, self.patch_size)

    def prepare_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, T, D): patch embeddings, cls prepended, positions added."""
        patches = self.patch_embed(images)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.positions_for(*images.shape[-2:])

    def forward(self, images: torch.Tensor, keep_all: bool = True) -> list[torch.Tensor]:
        """(B, C, H, W) -> the depth + 1 states (B, T, D): input tokens, then each block's
        output before any norm (apply `norm` to what you need). With `keep_all=False` only
        the last block's output, so that earlier states are freed as soon as they are used
        (a ViT-Ti batch of 256 at 224 px otherwise holds about 0.5 GB of states for nothing)."""
        states = [self.prepare_tokens(images)]
        for index, block in enumerate(self.blocks):
            states.append(self.run_block(index, block, states[-1]))
            if not keep_all:
                del states[0]
        return states
