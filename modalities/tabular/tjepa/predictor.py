"""T-JEPA's transformer predictor (the official `TransformerPredictor`, I-JEPA style).

The context tokens are mapped to the predictor's width and given fixed sin-cos position
codes; for each target subset, one learned mask token per target position (plus that
position's code) is appended; a `TokenTransformer` runs over both and the outputs at the
mask tokens, normed and mapped back to the encoder width, are the predictions.

Shapes: B rows, P target subsets, c context tokens, t target tokens, D encoder width,
E predictor width.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modalities.tabular.tjepa.model import TokenTransformer, init_weights


def sincos_positions(length: int, width: int) -> torch.Tensor:
    """(length, width) fixed code of I-JEPA's `get_1d_sincos_pos_embed`: sines of all
    frequencies in the first half of the channels, cosines in the second, base 10000."""
    omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
    angles = np.outer(np.arange(length, dtype=np.float64), omega)
    return torch.from_numpy(np.concatenate([np.sin(angles), np.cos(angles)], axis=1)).float()


class TJEPAPredictor(nn.Module):
    """Predicts the target encoder's tokens at target positions from the context tokens."""

    def __init__(self, num_tokens: int, encoder_width: int, width: int, depth: int, heads: int, feedforward: int,
                 dropout: float, activation: str = "relu", eps: float = 1e-5) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_width, width)
        self.register_buffer("positions", sincos_positions(num_tokens, width), persistent=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.transformer = TokenTransformer(width, depth, heads, feedforward, dropout, activation, eps)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, encoder_width)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-2.0, b=2.0)

    def forward(self, context: torch.Tensor, context_index: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
        """context (B, c, D) encoded tokens at token positions context_index (B, c);
        target_index (P, B, t) token positions. Returns (P * B, t, D), subset-major."""
        preds = target_index.shape[0]
        known = self.embed(context) + self.positions[context_index]
        queries = self.mask_token + self.positions[target_index.flatten(0, 1)]
        tokens = torch.cat([known.repeat(preds, 1, 1), queries], dim=1)
        out = self.norm(self.transformer(tokens)[-1])
        return self.proj(out[:, context.shape[1]:])
