"""GMML vision transformers: the DINO-style ViT with GMML's reconstruction head, converted
from GMML training checkpoints, DINO-layout backbones and timm ViTs."""

from modalities.vision.gmml.convert import CONVERTERS
from modalities.vision.gmml.model import VARIANTS, GmmlConfig, GmmlEncoder
from zoo.registry import register_family

__all__ = ["GmmlEncoder", "GmmlConfig", "VARIANTS"]

register_family(GmmlEncoder, variants=VARIANTS, converters=CONVERTERS)
