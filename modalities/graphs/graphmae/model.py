"""GraphMAE encoders (Hou et al., KDD 2022): a GAT (node tasks) or GIN (graph tasks) stack.

The config carries the paper's names and meanings (`num_hidden` is the total width, split
over `num_heads` GAT heads); `pooling` says what the checkpoint embeds by default: nodes
("none", the node-classification checkpoints) or a graph readout.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from modalities.graphs.encoder import GRAPH_POOLS, GraphEncoder
from modalities.graphs.graphmae.backbones import GAT, GIN
from modalities.graphs.layers import ACTIVATIONS, NORMS
from modalities.graphs.processing import GraphProcessor
from zoo.config import EncoderConfig
from zoo.errors import ConfigError

ENCODER_TYPES = ("gat", "gin")


@dataclasses.dataclass
class GraphMAEConfig(EncoderConfig):
    """Architecture of a GraphMAE encoder (defaults: the paper's Cora config).

    Args:
        in_dim: node feature width of the dataset (Cora 1433).
        num_hidden: output width of every layer (GAT: all heads together).
        num_heads: GAT attention heads per layer (ignored by GIN).
        num_layers: message-passing layers.
        encoder_type: "gat" or "gin".
        activation: "prelu", "relu", "gelu", "elu" or None.
        in_drop: dropout on every layer's input features.
        attn_drop: dropout on GAT attention coefficients.
        negative_slope: of the LeakyReLU in GAT attention scores.
        residual: add each layer's input (linearly mapped when widths differ).
        norm: None, "layernorm" or "batchnorm" after each layer.
        pooling: "none" (node embeddings by default) or the graph readout "mean", "sum", "max".
    """

    family = "graphmae"
    positive_fields = ("num_hidden",)

    in_dim: int = 1433
    num_hidden: int = 512
    num_heads: int = 4
    num_layers: int = 2
    encoder_type: str = "gat"
    activation: Optional[str] = "prelu"
    in_drop: float = 0.2
    attn_drop: float = 0.1
    negative_slope: float = 0.2
    residual: bool = False
    norm: Optional[str] = None
    pooling: str = "none"

    def __post_init__(self) -> None:
        if self.encoder_type not in ENCODER_TYPES:
            raise ConfigError(f"encoder_type={self.encoder_type!r} is not one of {ENCODER_TYPES}")
        if self.encoder_type == "gat" and self.num_hidden % self.num_heads:
            raise ConfigError(f"num_hidden={self.num_hidden} must be a multiple of num_heads={self.num_heads}")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation={self.activation!r} is not one of {sorted(ACTIVATIONS)} or None")
        if self.norm is not None and self.norm not in NORMS:
            raise ConfigError(f"norm={self.norm!r} is not one of {sorted(NORMS)} or None")
        if self.pooling not in GRAPH_POOLS:
            raise ConfigError(f"pooling={self.pooling!r} is not one of {GRAPH_POOLS}")
        if self.in_dim < 1 or self.num_layers < 1:
            raise ConfigError(f"in_dim={self.in_dim} and num_layers={self.num_layers} must be positive")

    @property
    def embed_dim(self) -> int:
        return self.num_hidden

    def build_backbone(self, in_dim: int, out_dim: int, num_layers: int, encoding: bool, heads: int,
                       out_heads: int) -> nn.Module:
        """A GAT or GIN stack with this config's settings (the encoder, or the decoder of pretraining)."""
        if self.encoder_type == "gat":
            return GAT(in_dim, self.num_hidden, out_dim, num_layers, heads, out_heads, self.activation,
                       self.in_drop, self.attn_drop, self.negative_slope, self.residual, self.norm, encoding)
        return GIN(in_dim, self.num_hidden, out_dim, num_layers, self.activation, self.in_drop, self.residual,
                   self.norm, encoding)


class GraphMAEEncoder(GraphEncoder):
    """The GraphMAE encoder: node features of every layer; the last layer is the embedding."""

    family = "graphmae"
    config_class = GraphMAEConfig
    processor_class = GraphProcessor

    def __init__(self, config: GraphMAEConfig, processor: Optional[GraphProcessor] = None) -> None:
        super().__init__(config, processor if processor is not None else GraphProcessor(in_dim=config.in_dim))
        self.gnn = config.build_backbone(config.in_dim, config.num_hidden, config.num_layers, encoding=True,
                                         heads=config.num_heads, out_heads=config.num_heads)

    def node_layers(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        return self.gnn(x, edge_index)

    def node_layer(self, index: int, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor],
                   num_targets: int) -> torch.Tensor:
        return self.gnn.layers[index](x, edge_index, num_targets)
