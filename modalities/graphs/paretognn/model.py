"""ParetoGNN encoders (Ju et al., ICLR 2023): the GCN stack all pretext tasks share.

Only the shared encoder is the checkpoint; the tasks' heads live in the pretraining
objective. Defaults are the upstream scripts' (`--hid_dim 512 256 --use_prelu
--dropout 0.`, batch norm); `in_dim` is Cora's.
"""

from __future__ import annotations

import dataclasses

import torch

from modalities.graphs.encoder import GRAPH_POOLS, GraphEncoder
from modalities.graphs.paretognn.gcn import NORMS, GCNStack, normalized_edges
from modalities.graphs.processing import GraphProcessor
from zoo.config import EncoderConfig
from zoo.errors import ConfigError


@dataclasses.dataclass
class ParetoGNNConfig(EncoderConfig):
    """Architecture of a ParetoGNN encoder.

    Args:
        in_dim: node feature width of the dataset.
        hidden_dims: output width of each GCN layer; the last is the embedding width.
        prelu: PReLU after each layer (else ReLU).
        dropout: dropout before every layer but the first.
        norm: "batch" (upstream's default, momentum 0.99) or "layer".
        pooling: "none" (node embeddings by default) or a graph readout "mean", "sum", "max".
    """

    family = "paretognn"

    in_dim: int = 1433
    hidden_dims: tuple[int, ...] = (512, 256)
    prelu: bool = True
    dropout: float = 0.0
    norm: str = "batch"
    pooling: str = "none"

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(self.hidden_dims)
        if not self.hidden_dims or min(self.hidden_dims) < 1 or self.in_dim < 1:
            raise ConfigError(f"in_dim={self.in_dim} and hidden_dims={self.hidden_dims} must be positive widths")
        if self.norm not in NORMS:
            raise ConfigError(f"norm={self.norm!r} is not one of {NORMS}")
        if self.pooling not in GRAPH_POOLS:
            raise ConfigError(f"pooling={self.pooling!r} is not one of {GRAPH_POOLS}")

    @property
    def embed_dim(self) -> int:
        return self.hidden_dims[-1]

    @property
    def num_layers(self) -> int:
        return len(self.hidden_dims)


class ParetoGNNEncoder(GraphEncoder):
    """The shared GCN encoder; its layers may differ in width (512 then 256 by default)."""

    family = "paretognn"
    config_class = ParetoGNNConfig
    processor_class = GraphProcessor

    def __init__(self, config: ParetoGNNConfig, processor: GraphProcessor | None = None) -> None:
        super().__init__(config, processor if processor is not None else GraphProcessor(in_dim=config.in_dim))
        self.gnn = GCNStack(config.in_dim, config.hidden_dims, prelu=config.prelu, dropout=config.dropout,
                            norm=config.norm)

    @property
    def layer_widths(self) -> list[int]:
        return [self.config.in_dim, *self.config.hidden_dims]

    def node_layers(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        return self.gnn(x, edge_index, output_hidden_states=True)

    def layerwise_edges(self, edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """GCN's normalised edges (self-loops added, weights from the whole graph's degrees), as `forward` makes
        them: a one-hop subgraph does not hold its sources' degrees."""
        return normalized_edges(edge_index, num_nodes, self.dtype)

    def node_layer(self, index: int, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None,
                   num_targets: int) -> torch.Tensor:
        return self.gnn.layer(index, x, edge_index, edge_weight, num_targets)

    def node_embeddings(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """(N, D) last-layer node features: the `encoder(x, edge_index)` the pretext tasks call. It
        normalises as upstream's DGL GraphConv, so that a view with dropped edges and self-loops is
        encoded as upstream encodes it; on the processor's graphs it equals `forward`."""
        return self.gnn(x, edge_index, graphconv_norm=True)
