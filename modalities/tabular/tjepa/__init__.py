"""T-JEPA (Thimonier et al., ICLR 2025): a JEPA for tables that predicts the latent tokens
of one subset of a row's features from another subset, with regularization tokens."""

from modalities.tabular.tjepa.model import TJEPAConfig, TJEPAEncoder, with_output_scale
from zoo.registry import register_family

__all__ = ["TJEPAConfig", "TJEPAEncoder", "with_output_scale"]

register_family(TJEPAEncoder, variants={})
