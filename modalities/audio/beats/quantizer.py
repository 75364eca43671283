"""The acoustic tokenizer's codebook: cosine nearest code, EMA updates, k-means start.

BEATs' tokenizers (after VQGAN / BEiT v2's `NormEMAVectorQuantizer`) L2-normalise the
projected features and pick the nearest codebook row; in training the rows follow an
exponential moving average of the features assigned to them and are re-normalised.

Shapes: M vectors, K codes, C code width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CosineCodebook(nn.Module):
    """K unit-norm codes of width C, kept as buffers (they learn by EMA, not by gradient).

    Args:
        size: number of codes K.
        dim: code width C.
        decay: EMA decay of the codes and usage counts in `update`.
    """

    def __init__(self, size: int, dim: int, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("embed", F.normalize(torch.randn(size, dim), dim=-1))
        self.register_buffer("cluster_size", torch.zeros(size))

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(..., C) features -> (..., K) squared distances of their unit vectors to the codes as stored."""
        unit = F.normalize(features.float(), dim=-1)
        codes = self.embed.float()
        return unit.pow(2).sum(-1, keepdim=True) + codes.pow(2).sum(-1) - 2 * unit @ codes.T

    def nearest(self, features: torch.Tensor, block: int = 4096) -> torch.Tensor:
        """(..., C) -> (...) index of the nearest code, `block` vectors at a time: the (M, K)
        distances of a 30-minute recording's 90,000 patches at once took 1.5 GB."""
        rows = features.reshape(-1, features.shape[-1])
        return torch.cat([self.distances(part).argmin(-1) for part in rows.split(block)]).reshape(features.shape[:-1])

    @torch.no_grad()
    def kmeans_init(self, features: torch.Tensor, iterations: int = 10, generator=None) -> None:
        """Start the codes from spherical k-means on (M, C) features.

        The starting codes are K distinct rows when M >= K, as BEiT v2's `sample_vectors`
        (BEATs' quantizer) draws them: drawn with replacement, 1024 starts from 1536 rows
        hold about 270 repeats, and k-means ended with 904 distinct codes (900 in use)
        where distinct starts end with 1024.
        """
        unit = F.normalize(features.float(), dim=-1)
        if len(unit) >= len(self.embed):
            picks = torch.randperm(len(unit), generator=generator)[: len(self.embed)]
        else:
            picks = torch.randint(len(unit), (len(self.embed),), generator=generator)
        codes = unit[picks.to(unit.device)].clone()  # drawn on the CPU generator
        for _ in range(iterations):
            assign = (unit @ codes.T).argmax(-1)
            sums = torch.zeros_like(codes).index_add_(0, assign, unit)
            counts = torch.bincount(assign, minlength=len(codes))
            codes = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), codes)
        self.embed.copy_(codes)
        self.cluster_size.fill_(1.0)

    @torch.no_grad()
    def update(self, features: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step from (M, C) features assigned to (M,) codes.

        Each used code moves towards the unit mean of its features and is re-normalised;
        unused codes stay; `cluster_size` tracks an EMA of usage.
        """
        unit = F.normalize(features.float(), dim=-1)
        counts = torch.bincount(codes, minlength=len(self.embed)).float()
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        means = F.normalize(torch.zeros_like(self.embed).index_add_(0, codes, unit), dim=-1)
        moved = F.normalize(self.embed * self.decay + means * (1 - self.decay), dim=-1)
        self.embed.copy_(torch.where(counts[:, None] > 0, moved, self.embed))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(...) indices -> (..., C) code vectors."""
        return F.embedding(codes, self.embed)
