"""ssl-zoo: self-supervised encoders for speech, audio, vision, graphs and tables behind one API.

    import zoo
    zoo.list_models(modality="speech")
    encoder = zoo.load("hubert-tiny-fsdd")
    embeddings = encoder.embed(["a.wav"])          # (N, D)

Families are imported on first use: importing `zoo` pulls in neither torchaudio nor
torch_geometric.
"""

from zoo._version import __version__
from zoo.config import EncoderConfig
from zoo.encoder import Encoder
from zoo.errors import CheckpointError, ConfigError, InputError, OfflineError, UnknownModelError, ZooError
from zoo.heads import (
    EncoderForClassification, EncoderForRegression, EncoderForTagging, EncoderForTokenClassification,
    for_classification, for_regression, for_tagging, for_token_classification,
)
from zoo.hub import info, load
from zoo.outputs import EncoderOutput, PretrainOutput
from zoo.publishing import publish
from zoo.registry import add_model_config, list_models

__all__ = [
    "__version__", "Encoder", "EncoderConfig", "EncoderOutput", "PretrainOutput",
    "ZooError", "UnknownModelError", "CheckpointError", "ConfigError", "InputError", "OfflineError",
    "load", "list_models", "info", "add_model_config", "publish",
    "for_classification", "for_regression", "for_tagging", "for_token_classification",
    "EncoderForClassification", "EncoderForRegression", "EncoderForTagging", "EncoderForTokenClassification",
]
