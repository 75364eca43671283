from zoo.registry import register_family
from modalities.speech.hubert.model import VARIANTS, HubertEncoder, HubertEncoderConfig
register_family(HubertEncoder, variants=VARIANTS, transformers_model_types=("hubert",))
