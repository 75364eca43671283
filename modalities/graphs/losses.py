"""Losses the graph families share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sce_loss(prediction: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """GraphMAE's scaled cosine error: mean over rows of (1 - cos)^alpha; alpha > 1 down-weights easy rows."""
    cosine = (F.normalize(prediction, dim=-1) * F.normalize(target, dim=-1)).sum(dim=-1)
    return (1 - cosine).pow(alpha).mean()
