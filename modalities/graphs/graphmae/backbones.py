"""GraphMAE's message-passing stacks (GAT for node tasks, GIN for graph tasks) on PyG convolutions.

Both follow the paper's code (THUDM/GraphMAE, `graphmae/models/gat.py`, `gin.py`) layer
for layer: input dropout, convolution, residual, norm, activation; an *encoding* stack
keeps the activation, residual and norm on its last layer, a *decoding* one (the
single-layer decoder) drops them. Residuals are an identity when the widths match and a
bias-free linear map otherwise, as upstream (PyG's GATConv would always learn a matrix,
so the residual lives here).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch_geometric.nn import GATConv, GINConv

from modalities.graphs.layers import make_activation, make_norm
from zoo.checkpointing import CheckpointedBlocks


def residual_map(in_dim: int, out_dim: int) -> nn.Module:
    """Upstream's residual branch: an identity between equal widths, else a bias-free linear map
    (its `res_fc`)."""
    return nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim, bias=False)


class GATLayer(nn.Module):
    """Dropout -> multi-head GAT (heads concatenated, bias) -> + residual -> norm -> activation."""

    def __init__(self, in_dim: int, head_dim: int, heads: int, feat_drop: float, attn_drop: float,
                 negative_slope: float, residual: bool, norm: Optional[str], activation: Optional[str]) -> None:
        super().__init__()
        width = head_dim * heads
        self.dropout = nn.Dropout(feat_drop)
        self.conv = GATConv(in_dim, head_dim, heads=heads, negative_slope=negative_slope, dropout=attn_drop,
                            add_self_loops=False)
        self.residual = residual_map(in_dim, width) if residual else None
        self.norm = make_norm(norm, width)
        self.activation = make_activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Upstream's initialisation (Xavier-normal with ReLU gain, zero bias); PyG's Glorot-uniform
        has a different scale, which changes what the recipe's learning rate does."""
        gain = nn.init.calculate_gain("relu")
        for weight in (self.conv.lin.weight, self.conv.att_src, self.conv.att_dst):
            nn.init.xavier_normal_(weight, gain=gain)
        if isinstance(self.residual, nn.Linear):
            nn.init.xavier_normal_(self.residual.weight, gain=gain)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, num_targets: Optional[int] = None) -> torch.Tensor:
        """Every node's output, or with `num_targets` only the first `num_targets` nodes' (layer-wise
        inference: the other nodes are their in-neighbours, read as sources only)."""
        x = self.dropout(x)
        if num_targets is None:
            targets, out = x, self.conv(x, edge_index)
        else:
            targets = x[:num_targets]
            out = self.conv((x, targets), edge_index, size=(x.shape[0], num_targets))
        if self.residual is not None:
            out = out + self.residual(targets)
        return self.activation(self.norm(out))


class LayerStack(CheckpointedBlocks, nn.Module):
    """Message-passing layers applied in turn; `forward` returns every layer's output, first layer first."""

    layers: nn.ModuleList

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, layer in enumerate(self.layers):
            x = self.run_block(index, layer, x, edge_index)
            outputs.append(x)
        return outputs


class GAT(LayerStack):
    """A stack of `GATLayer`s: every layer has `heads` heads of `hidden // heads` features,
    except that the last one maps to `out_dim` with `out_heads` heads. As upstream, a
    single-layer stack has no activation even when encoding."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int, heads: int, out_heads: int,
                 activation: Optional[str], feat_drop: float, attn_drop: float, negative_slope: float,
                 residual: bool, norm: Optional[str], encoding: bool) -> None:
        super().__init__()
        widths = [in_dim] + [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList()
        for index, width in enumerate(widths):
            last = index == num_layers - 1
            self.layers.append(GATLayer(
                width, out_dim // out_heads if last else hidden // heads, out_heads if last else heads,
                feat_drop, attn_drop, negative_slope,
                residual=residual and (encoding or not last), norm=norm if (encoding or not last) else None,
                activation=activation if (not last or (encoding and num_layers > 1)) else None,
            ))



class GINMLP(nn.Module):
    """Two linear layers with a norm and an activation between them."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, activation: Optional[str], norm: Optional[str]) -> None:
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)])
        self.norm = make_norm(norm, hidden)
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linears[1](self.activation(self.norm(self.linears[0](x))))


class GINApply(nn.Module):
    """A `GINMLP` followed by a norm and an activation (every layer but a decoding last one)."""

    def __init__(self, mlp: GINMLP, width: int, activation: Optional[str], norm: Optional[str]) -> None:
        super().__init__()
        self.mlp = mlp
        self.norm = make_norm(norm, width)
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.mlp(x)))


class GINLayer(nn.Module):
    """Dropout -> GIN sum aggregation (eps 0) -> MLP -> + residual."""

    def __init__(self, apply: nn.Module, in_dim: int, out_dim: int, dropout: float, residual: bool) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv = GINConv(apply, eps=0.0, train_eps=False)
        self.residual = residual_map(in_dim, out_dim) if residual else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, num_targets: Optional[int] = None) -> torch.Tensor:
        """Every node's output, or with `num_targets` only the first `num_targets` nodes' (layer-wise
        inference), whose MLP then runs on those nodes alone."""
        x = self.dropout(x)
        if num_targets is None:
            targets, out = x, self.conv(x, edge_index)
        else:
            targets = x[:num_targets]
            out = self.conv((x, targets), edge_index, size=(x.shape[0], num_targets))
        return out if self.residual is None else out + self.residual(targets)


class GIN(LayerStack):
    """A stack of `GINLayer`s. As upstream, the last layer's MLP gets the extra norm and
    activation only in an encoding stack that has a norm."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int, activation: Optional[str],
                 dropout: float, residual: bool, norm: Optional[str], encoding: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for index in range(num_layers):
            last = index == num_layers - 1
            width_in, width_out = in_dim if index == 0 else hidden, out_dim if last else hidden
            apply: nn.Module = GINMLP(width_in, hidden, width_out, activation, norm)
            if not last or (encoding and norm is not None):
                apply = GINApply(apply, width_out, activation, norm)
            self.layers.append(GINLayer(apply, width_in, width_out, dropout, residual and (encoding or not last)))

