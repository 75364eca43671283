"""BEATs audio encoders and acoustic tokenizers, converted from the official unilm files,
with AudioSet tagging heads and BEATs' iterative pretraining."""

from modalities.audio.beats.convert import encoder_from_official
from modalities.audio.beats.model import VARIANTS, BEATsConfig, BEATsEncoder
from zoo.registry import register_family

__all__ = ["BEATsEncoder", "BEATsConfig", "VARIANTS"]

register_family(BEATsEncoder, variants=VARIANTS, converters={"official": encoder_from_official})
