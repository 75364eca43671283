"""ssl-zoo: self-supervised encoders for speech, audio, vision, graphs and tables behind one API.

    import zoo
    zoo.list_models(modality="speech")
    encoder = zoo.load("hubert-tiny-fsdd")
    embeddings = encoder.embed(["a.wav"])          # (N, D)

Families are imported on first use: importing `zoo` pulls in neither torchaudio nor
torch_geometric. torch waits too: the names whose modules need it are imported when first
used (PEP 562, as transformers does), so that `zoo --help` and `zoo list` answer in a fraction
of a second rather than after torch's 1.5 s import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zoo._version import __version__
from zoo.config import EncoderConfig
from zoo.errors import (
    CheckpointError, ConfigError, InputError, OfflineError, UnknownModelError, WriteError, ZooError, ZooWarning,
)
from zoo.registry import add_model_config, list_models

#: the public names whose modules import torch, and those modules
_LAZY = {
    "Encoder": "zoo.encoder",
    "EncoderOutput": "zoo.outputs", "PretrainOutput": "zoo.outputs",
    "info": "zoo.hub", "load": "zoo.hub",
    "publish": "zoo.publishing",
    **{name: "zoo.heads" for name in (
        "for_classification", "for_regression", "for_tagging", "for_token_classification",
        "EncoderForClassification", "EncoderForRegression", "EncoderForTagging", "EncoderForTokenClassification",
    )},
}

if TYPE_CHECKING:
    from zoo.encoder import Encoder
    from zoo.heads import (
        EncoderForClassification, EncoderForRegression, EncoderForTagging, EncoderForTokenClassification,
        for_classification, for_regression, for_tagging, for_token_classification,
    )
    from zoo.hub import info, load
    from zoo.outputs import EncoderOutput, PretrainOutput
    from zoo.publishing import publish

__all__ = [
    "__version__", "Encoder", "EncoderConfig", "EncoderOutput", "PretrainOutput",
    "ZooError", "UnknownModelError", "CheckpointError", "ConfigError", "InputError", "OfflineError", "WriteError",
    "ZooWarning",
    "load", "list_models", "info", "add_model_config", "publish",
    "for_classification", "for_regression", "for_tagging", "for_token_classification",
    "EncoderForClassification", "EncoderForRegression", "EncoderForTagging", "EncoderForTokenClassification",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
