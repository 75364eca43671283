"""ParetoGNN's shared encoder: graph convolutions, each followed by a normalisation and PReLU.

Upstream (`src/model.py::GCN`, built by `pretrain_model_pareto.py` from the scripts'
`--hid_dim 512 256 --n_layer 2 --use_prelu --dropout 0.` and the default `--norm batch`)
runs, for every layer, the last one included:
dropout (not before the first layer) -> GraphConv -> BatchNorm1d -> PReLU.

Its DGL GraphConv has the defaults (norm 'both', weight and bias, no activation) and runs
on a graph whose self-loops were removed and added back once per node
(`src/data.py::preprocess`). PyG's GCNConv normalisation (add the missing self-loops, scale
both ends by their in-degree) computes the same on such an undirected graph, and is what
`forward` does by default: it keeps batched, mini-batch and full-graph inference exact.
On a directed graph without every self-loop (the pretext tasks' views with dropped edges)
the two differ: GraphConv adds no self-loop and scales a source by its out-degree, so
`forward(..., graphconv_norm=True)` computes that instead (`graphconv_edge_weights`).

BatchNorm momentum is 0.99 in PyTorch's convention (upstream calls `torch.nn.BatchNorm1d`
directly, not a DGL/TF layer), so the running statistics are nearly the last batch's; it is
kept because upstream extracts embeddings in eval mode with those statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import degree

from zoo.checkpointing import CheckpointedBlocks
from zoo.errors import ConfigError

#: `torch.nn.BatchNorm1d(out_, momentum=0.99)` in upstream's GCN
BATCHNORM_MOMENTUM = 0.99
NORMS = ("batch", "layer")


def make_norm(kind: str, width: int) -> nn.Module:
    """Upstream's `--norm`: "batch" (the default) or "layer"."""
    if kind == "batch":
        return nn.BatchNorm1d(width, momentum=BATCHNORM_MOMENTUM)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ConfigError(f"unknown norm {kind!r}; choose one of {NORMS}")


def graphconv_edge_weights(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """DGL `GraphConv(norm='both')`'s weight of each edge as given (E,): 1 / sqrt(out-degree of its
    source * in-degree of its target), degrees floored at 1; no self-loop is added, so a node
    without in-edges gets only the bias."""
    source, target = edge_index
    out_degree = degree(source, num_nodes, dtype=dtype).clamp(min=1)
    in_degree = degree(target, num_nodes, dtype=dtype).clamp(min=1)
    return out_degree[source].rsqrt() * in_degree[target].rsqrt()


def normalized_edges(edge_index: Tensor, num_nodes: int, dtype: torch.dtype,
                     graphconv_norm: bool = False) -> tuple[Tensor, Tensor]:
    """Edges and their weights for `GCNConv(normalize=False)`: PyG's symmetric normalisation with
    self-loops, or DGL GraphConv's of the graph as given (see the module docstring)."""
    if graphconv_norm:
        return edge_index, graphconv_edge_weights(edge_index, num_nodes, dtype)
    return gcn_norm(edge_index, None, num_nodes, add_self_loops=True, dtype=dtype)


class GCNStack(CheckpointedBlocks, nn.Module):
    """GCN layers of widths `hidden_dims`; node embeddings are the last layer's output."""

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int], prelu: bool = True, dropout: float = 0.0, norm: str = "batch"
    ) -> None:
        super().__init__()
        if not hidden_dims:
            raise ConfigError("hidden_dims is empty; give one width per layer, e.g. (512, 256)")
        widths = [in_dim, *hidden_dims]
        self.embed_dim = widths[-1]
        self.convs = nn.ModuleList(GCNConv(a, b, normalize=False) for a, b in pairwise(widths))
        self.norms = nn.ModuleList(make_norm(norm, width) for width in hidden_dims)
        self.activations = nn.ModuleList(nn.PReLU() if prelu else nn.ReLU() for _ in hidden_dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, output_hidden_states: bool = False,
                graphconv_norm: bool = False) -> Tensor | list[Tensor]:
        """Node embeddings (N, D), or every layer's output (a list, one per layer) when asked;
        `graphconv_norm` normalises as upstream's DGL GraphConv (the pretext tasks' views)."""
        edge_index, edge_weight = normalized_edges(edge_index, x.shape[0], x.dtype, graphconv_norm)
        hidden = []
        for index in range(len(self.convs)):
            x = self.run_block(index, self.layer, index, x, edge_index, edge_weight)
            hidden.append(x)
        return hidden if output_hidden_states else x

    def layer(self, index: int, x: Tensor, edge_index: Tensor, edge_weight: Tensor,
              num_targets: int | None = None) -> Tensor:
        """Layer `index`: dropout on its input (not the first layer's), GCN, norm, activation; with
        `num_targets`, of the first `num_targets` nodes only (layer-wise inference)."""
        x = self.dropout(x) if index > 0 else x
        out = self.convs[index](x, edge_index, edge_weight)[:num_targets]
        return self.activations[index](self.norms[index](out))
