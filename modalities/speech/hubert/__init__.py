"""HuBERT speech encoders on transformers' HubertModel, with the fairseq converter and
HuBERT's masked-prediction pretraining."""

from modalities.speech.hubert.convert import encoder_from_fairseq, from_transformers_checkpoint
from modalities.speech.hubert.model import VARIANTS, HubertEncoder, HubertEncoderConfig
from zoo.registry import register_family

__all__ = ["HubertEncoder", "HubertEncoderConfig", "VARIANTS"]

register_family(
    HubertEncoder,
    variants=VARIANTS,
    converters={"fairseq": encoder_from_fairseq},
    from_transformers=from_transformers_checkpoint,
    transformers_model_types=("hubert",),
)
