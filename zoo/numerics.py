"""Workarounds for CPU kernels that compute wrong numbers, shared by the families they hit."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def runs_bfloat16_on_cpu(x: torch.Tensor) -> bool:
    """True where `x` is bfloat16 on the CPU, or is about to be cast to it by CPU autocast."""
    if x.device.type != "cpu":
        return False
    return x.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def grouped_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)`, computed in float32 (and cast back to bfloat16) for bfloat16 on the CPU.

    oneDNN's bfloat16 grouped Conv1d on AVX-512-BF16 / AMX CPUs (e.g. Sapphire Rapids)
    returns wrong numbers when a group has few channels (2-12) and a long kernel: the conv
    positional embeddings of the tiny HuBERT, MERT and BEATs models (12 channels per group,
    kernel 64) are off by up to 100 % of their output scale, while the float32 conv of the
    same bfloat16-rounded numbers differs from a correct bfloat16 conv by rounding only.
    AVX2 CPUs take torch's native conv, which is right; elsewhere the conv runs as it is.
    """
    if not runs_bfloat16_on_cpu(x):
        return conv(x)
    bias = None if conv.bias is None else conv.bias.float()
    with torch.autocast("cpu", enabled=False):
        out = F.conv1d(x.float(), conv.weight.float(), bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out.to(torch.bfloat16)
