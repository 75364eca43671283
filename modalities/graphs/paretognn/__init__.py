"""ParetoGNN (Ju et al., ICLR 2023) on PyG: a shared GCN encoder pretrained on five pretext
tasks whose per-step weights are the MGDA min-norm point of their gradients."""

from modalities.graphs.paretognn.model import ParetoGNNConfig, ParetoGNNEncoder
from zoo.registry import register_family

__all__ = ["ParetoGNNConfig", "ParetoGNNEncoder"]

register_family(ParetoGNNEncoder, variants={})
