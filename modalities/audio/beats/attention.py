"""BEATs' transformer layers: bucketed relative position bias, its per-head gate, DeepNorm.

BEATs (Chen et al. 2022, https://arxiv.org/abs/2212.09058) inherits WavLM's attention: a
T5-style bias over bucketed signed distances, computed once from one table shared by all
layers, and scaled in each layer by a gate computed from that layer's queries ("gated
relative position"). Layers are post-LN with DeepNorm residual scaling.

Two attention paths give the same numbers: "eager" (explicit softmax) and "sdpa" (torch's
fused `scaled_dot_product_attention` with the gated bias as its float mask).

Shapes: B items, H heads, N tokens, D width, E head width (D / H).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from zoo.numerics import grouped_conv1d

#: attention implementations a config may name
ATTENTION_PATHS = ("sdpa", "eager")


def relative_buckets(query_positions: torch.Tensor, key_positions: torch.Tensor, num_buckets: int,
                     max_distance: int) -> torch.Tensor:
    """(..., N_q, N_k) bucket of each signed distance key - query, bidirectional; positions (..., N).

    Half the buckets take positive distances; in each half, the first half of the buckets
    are exact distances and the rest are log-spaced up to `max_distance`. The log is taken
    in float32 and truncated, as upstream does, so that the buckets match it exactly.
    """
    distance = key_positions[..., None, :] - query_positions[..., :, None]
    half = num_buckets // 2
    exact = half // 2
    buckets = (distance > 0).long() * half
    magnitude = distance.abs()
    scaled = torch.log(magnitude.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
    far = torch.clamp(exact + scaled.long(), max=half - 1)
    return buckets + torch.where(magnitude < exact, magnitude, far)


class GatedRelativeAttention(nn.Module):
    """Multi-head self-attention with a (gated) relative position bias.

    Args:
        embed_dim: width D.
        num_heads: heads H; the gate reads each head's E-wide query.
        dropout: dropout on the attention weights (training only).
        gated: scale the bias per head and query by a learned gate (`gru_rel_pos`).
        implementation: "sdpa" or "eager".
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, gated: bool = True,
                 implementation: str = "sdpa") -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.dropout, self.implementation = dropout, implementation
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.gated = gated
        if gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, H, N, E)."""
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def gate(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, H, N, 1) gate from the unscaled queries: a * (b * grep_a - 1) + 2."""
        logits = self.grep_linear(queries).view(*queries.shape[:-1], 2, 4).sum(-1)
        first, second = torch.sigmoid(logits).chunk(2, dim=-1)
        return first * (second * self.grep_a - 1.0) + 2.0

    def forward(self, x: torch.Tensor, position_bias: Optional[torch.Tensor],
                key_padding: Optional[torch.Tensor]) -> torch.Tensor:
        """Attend over `x` (B, N, D); `position_bias` (H or B x H, N, N) ungated; `key_padding` (B, N) True = pad.

        The bias takes the queries' dtype, which autocast may have lowered below `x`'s.
        """
        queries, keys, values = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        bias = None
        if position_bias is not None:
            bias = (position_bias if position_bias.dim() == 4 else position_bias.unsqueeze(0)).to(queries.dtype)
            if self.gated:
                bias = self.gate(queries) * bias
        if key_padding is not None:
            padding = torch.zeros(key_padding.shape, dtype=queries.dtype, device=x.device)
            padding = padding.masked_fill(key_padding, float("-inf"))[:, None, None, :]
            bias = padding if bias is None else bias + padding
        dropout = self.dropout if self.training else 0.0
        if self.implementation == "sdpa":
            context = F.scaled_dot_product_attention(queries, keys, values, attn_mask=bias, dropout_p=dropout)
        else:
            scores = queries @ keys.transpose(-1, -2) * self.head_dim**-0.5
            if bias is not None:
                scores = scores + bias
            weights = F.dropout(torch.softmax(scores.float(), dim=-1).to(values.dtype), dropout, self.training)
            context = weights @ values
        context = context.transpose(1, 2).reshape(x.shape)
        return self.out_proj(context)


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: x = LN(alpha * x + attn(x)); x = LN(alpha * x + ffn(x)).

    `alpha` is DeepNorm's residual scale (2L)^(1/4) for L layers, or 1 without DeepNorm.
    """

    def __init__(self, embed_dim: int, ffn_dim: int, num_heads: int, alpha: float, dropout: float,
                 attention_dropout: float, activation_dropout: float, gated: bool, implementation: str) -> None:
        super().__init__()
        self.alpha = alpha
        self.self_attn = GatedRelativeAttention(embed_dim, num_heads, attention_dropout, gated, implementation)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor, position_bias: Optional[torch.Tensor],
                key_padding: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.dropout(self.self_attn(x, position_bias, key_padding)))
        hidden = self.activation_dropout(F.gelu(self.fc1(x)))
        return self.final_layer_norm(x * self.alpha + self.dropout(self.fc2(hidden)))


class PositionalConv(nn.Module):
    """Convolutional position embedding: weight-normed grouped Conv1d, "same" length, GELU.

    The weight norm's magnitude is per kernel tap (dim=2), as upstream stores it.

    The conv goes through `zoo.numerics.grouped_conv1d`: in bfloat16 on an AVX-512-BF16
    CPU, oneDNN's own kernel is wrong for this shape.
    """

    def __init__(self, embed_dim: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        out = grouped_conv1d(self.conv, x.transpose(1, 2))
        if self.trim:
            out = out[:, :, : -self.trim]
        return F.gelu(out).transpose(1, 2)
