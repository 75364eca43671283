"""MERT's Hub checkpoints (m-a-p/MERT-*) -> zoo MERT encoders, without their remote code.

A MERT repo holds a transformers-style folder: config.json (`model_type "mert_model"`,
HuBERT's fields plus MERT's), pytorch_model.bin with HubertModel's keys and no prefix,
and preprocessor_config.json (a `Wav2Vec2FeatureExtractor`'s settings). The weights are
renamed by HuBERT's transformers table (weight-norm names, prefixes); what is MERT's
own is handled here: the `mert_model.` prefix of its task models and the nnAudio CQT
kernels that CQT front ends may store, which are rebuilt from the config instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modalities.speech.hubert.convert import normalize_transformers_state_dict
from zoo.errors import CheckpointError

if TYPE_CHECKING:
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

#: nnAudio buffers of a CQT front end (`lenghts` is nnAudio's own spelling)
CQT_BUFFERS = re.compile(r"feature_extractor_cqt\.(lenghts|cqt_kernels_real|cqt_kernels_imag)")
MODEL_TYPE = "mert_model"


def from_transformers_checkpoint(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> tuple["MertEncoderConfig", dict[str, torch.Tensor]]:
    """A MERT Hub folder (config.json dict + weights) as a zoo config and state dict.

    Raises:
        CheckpointError: listing every key that is neither HubertModel's, a known head,
            nor a CQT buffer, and every missing or mis-shaped one.
    """
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

    zoo_config = MertEncoderConfig.from_transformers(config)
    with torch.device("meta"):
        expected = {key: value.shape for key, value in MertEncoder(zoo_config).model.state_dict().items()}
    kept = {key.removeprefix(f"{MODEL_TYPE}."): value for key, value in state_dict.items()
            if not CQT_BUFFERS.fullmatch(key.removeprefix(f"{MODEL_TYPE}."))}
    normalized = normalize_transformers_state_dict(kept, expected)
    return zoo_config, {f"model.{key}": value for key, value in normalized.items()}


def encoder_from_hub_folder(path: str | os.PathLike) -> "MertEncoder":
    """A downloaded MERT repo folder (or its pytorch_model.bin, with config.json beside it) as an encoder."""
    from modalities.audio.mert.model import MertEncoder
    from zoo.hub import load_folder

    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{str(path)!r} is not a MERT repo folder: it has no config.json beside the weights")
    encoder = load_folder(folder)
    if not isinstance(encoder, MertEncoder):
        raise CheckpointError(f"{str(path)!r} holds a {type(encoder).__name__}, not a MERT checkpoint")
    return encoder
