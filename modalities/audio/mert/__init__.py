"""MERT music encoders on transformers' HubertModel, with the deepnorm and CQT variants,
the Hub checkpoints' loader and MERT's teacher-student pretraining."""

from modalities.audio.mert.convert import (
    MODEL_TYPE,
    encoder_from_fairseq,
    encoder_from_hub_folder,
    from_transformers_checkpoint,
)
from modalities.audio.mert.model import VARIANTS, MertEncoder, MertEncoderConfig
from zoo.registry import register_family

__all__ = ["MertEncoder", "MertEncoderConfig", "VARIANTS"]

register_family(
    MertEncoder,
    variants=VARIANTS,
    converters={"transformers": encoder_from_hub_folder, "fairseq": encoder_from_fairseq},
    from_transformers=from_transformers_checkpoint,
    transformers_model_types=(MODEL_TYPE,),
)
