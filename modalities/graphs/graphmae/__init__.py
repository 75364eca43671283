"""GraphMAE (Hou et al., KDD 2022) on PyG: GAT/GIN encoders, the masked-feature
reconstruction objective, and the converter for the official DGL checkpoints."""

from modalities.graphs.graphmae.convert import encoder_from_graphmae
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from zoo.registry import register_family

__all__ = ["GraphMAEConfig", "GraphMAEEncoder"]

register_family(GraphMAEEncoder, variants={}, converters={"graphmae": encoder_from_graphmae})
