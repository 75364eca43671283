"""ParetoGNN's shared encoder: graph convolutions, each followed by a normalisation and PReLU.

Upstream (`src/model.py::GCN`, built by `pretrain_model_pareto.py` from the scripts'
`--hid_dim 512 256 --n_layer 2 --use_prelu --dropout 0.` and the default `--norm batch`)
runs, for every layer, the last one included:
dropout (not before the first layer) -> GraphConv -> BatchNorm1d -> PReLU.

Its DGL GraphConv has the defaults (norm 'both', weight and bias, no activation) and runs
on a graph whose self-loops were removed and added back once per node
(`src/data.py::preprocess`). PyG's GCNConv with its self-loops and symmetric normalisation
computes the same on an undirected graph; on a directed one (e.g. a view with dropped
edges) DGL scales a source by its out-degree where PyG uses its in-degree.

BatchNorm momentum is 0.99 in PyTorch's convention (upstream calls `torch.nn.BatchNorm1d`
directly, not a DGL/TF layer), so the running statistics are nearly the last batch's; it is
kept because upstream extracts embeddings in eval mode with those statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from torch import Tensor, nn
from torch_geometric.nn import GCNConv

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
        self.convs = nn.ModuleList(GCNConv(a, b, add_self_loops=True, normalize=True) for a, b in pairwise(widths))
        self.norms = nn.ModuleList(make_norm(norm, width) for width in hidden_dims)
        self.activations = nn.ModuleList(nn.PReLU() if prelu else nn.ReLU() for _ in hidden_dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, output_hidden_states: bool = False) -> Tensor | list[Tensor]:
        """Node embeddings (N, D), or every layer's output (a list, one per layer) when asked."""
        hidden = []
        for index in range(len(self.convs)):
            x = self.run_block(index, self.layer, index, x, edge_index)
            hidden.append(x)
        return hidden if output_hidden_states else x

    def layer(self, index: int, x: Tensor, edge_index: Tensor) -> Tensor:
        """Layer `index`: dropout on its input (not the first layer's), GCN, norm, activation."""
        x = self.dropout(x) if index > 0 else x
        return self.activations[index](self.norms[index](self.convs[index](x, edge_index)))
