"""Activations and normalisations by the names the graph papers' configs use."""

from __future__ import annotations

from typing import Optional

from torch import nn

ACTIVATIONS = {"prelu": nn.PReLU, "relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU}
NORMS = {"layernorm": nn.LayerNorm, "batchnorm": nn.BatchNorm1d}


def make_activation(name: Optional[str]) -> nn.Module:
    """A fresh activation module; None is the identity."""
    if name is None:
        return nn.Identity()
    return ACTIVATIONS[name]()


def make_norm(name: Optional[str], width: int) -> nn.Module:
    """A fresh normalisation over `width` node features; None is the identity."""
    if name is None:
        return nn.Identity()
    return NORMS[name](width)
