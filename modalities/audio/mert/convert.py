"""MERT's checkpoints (m-a-p/MERT-*) -> zoo MERT encoders, without their remote code or fairseq.

Two upstream formats. A MERT repo holds a transformers-style folder: config.json
(`model_type "mert_model"`, HuBERT's fields plus MERT's), pytorch_model.bin with
HubertModel's keys and no prefix, and preprocessor_config.json (a
`Wav2Vec2FeatureExtractor`'s settings). The weights are renamed by HuBERT's
transformers table (weight-norm names, prefixes); what is MERT's own is handled here:
the `mert_model.` prefix of its task models and the nnAudio CQT kernels that CQT front
ends may store, which are rebuilt from the config instead.

The v1 repos also hold the fairseq training checkpoint (`MERT-v1-95M_fairseq.pt`): MERT's
fairseq model (`mert`, yizhilll/MERT mert_fairseq/models/mert/mert_model.py) keeps
HuBERT's module names, so HuBERT's fairseq table renames its encoder; MERT's own config
fields (deepnorm, attention_relax, the CQT front end) are read from `cfg["model"]`, and its
pretraining heads are left out (`FAIRSEQ_DROPPED`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modalities.speech.hubert.convert import (
    convert_state_dict,
    encoder_fields_from_fairseq,
    fairseq_field,
    fairseq_processor,
    fairseq_sections,
    load_fairseq_checkpoint,
    normalize_transformers_state_dict,
)
from zoo.errors import CheckpointError

if TYPE_CHECKING:
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

#: nnAudio buffers of a CQT front end (`lenghts` is nnAudio's own spelling)
CQT_BUFFERS = re.compile(r"feature_extractor_cqt\.(lenghts|cqt_kernels_real|cqt_kernels_imag)")
MODEL_TYPE = "mert_model"

#: keys of MERT's fairseq checkpoints that are pretraining-only, beyond HuBERT's (label
#: embeddings, final_proj), with why each is left out
FAIRSEQ_DROPPED: dict[str, str] = {
    r"encoder_cqt_model\..+": "pretraining: the CQT reconstruction head (fc) and its nnAudio kernels",
    r"encoder_mel_model\..+": "pretraining: the mel reconstruction head and its filterbank",
    r"final_projs\.\d+\.(weight|bias)": "pretraining: per-codebook projections (random_codebook > 0)",
    r"logit_temp_list": "pretraining: learnable logit temperatures (learnable_temp)",
}
#: MERT fairseq fields that change the encoder with no MertEncoderConfig counterpart:
#: a checkpoint converts only with them at these (the official defaults)
_FAIRSEQ_FIXED = {"audio_extract_type": "w2v_conv", "do_cnn_feat_stable_layernorm": False}
#: MERT fairseq fields carried into MertEncoderConfig, with the official defaults
_FAIRSEQ_MERT_FIELDS = {
    "deepnorm": False,
    "attention_relax": -1.0,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 84,
}


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
    """A downloaded MERT repo folder (or its pytorch_model.bin, with config.json beside it) as an encoder.

    A `.pt` file is the repo's fairseq training checkpoint (transformers writes `.bin` or
    `.safetensors`), and goes to `encoder_from_fairseq`: the file named is the one read.
    """
    from modalities.audio.mert.model import MertEncoder
    from zoo.hub import load_folder

    if Path(path).suffix == ".pt":
        return encoder_from_fairseq(path)
    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{str(path)!r} is not a MERT repo folder (no config.json beside the weights) nor a fairseq "
            "training checkpoint (a .pt file)"
        )
    encoder = load_folder(folder)
    if not isinstance(encoder, MertEncoder):
        raise CheckpointError(f"{str(path)!r} holds a {type(encoder).__name__}, not a MERT checkpoint")
    return encoder.eval()


def config_from_fairseq(cfg: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Translates a fairseq MERT config to `MertEncoderConfig` fields.

    `subln` is not read: the official layer builder never passes it on, so it changes no
    weight and no output.

    Args:
        cfg: the checkpoint's config with sections "model" (MERT's fairseq MERTConfig) and
            "task" (MERTPretrainingConfig), as returned by `load_fairseq_checkpoint`.

    Returns:
        `(model_config, do_normalize)`: the MertEncoderConfig keyword arguments (the
        sampling rate is the task's), and whether waveforms were normalised to zero mean
        and unit variance (`task.normalize` or the model's `wav_normalize`; both False
        for MERT-v1), which the processor must repeat.

    Raises:
        CheckpointError: the config is not a pretrained MERT's, uses a feature the zoo's
            MERT lacks, or has a value of the wrong type.
    """
    model, task = fairseq_sections(cfg, "mert", "a HuBERT checkpoint converts with `zoo convert hubert`")
    for name, default in _FAIRSEQ_FIXED.items():
        value = model.get(name, default)
        if value != default:
            raise CheckpointError(f"fairseq MERT {name}={value!r} is not supported; only {default!r} converts")
    model_config = encoder_fields_from_fairseq(model)
    model_config.update({name: fairseq_field(model, name, default) for name, default in _FAIRSEQ_MERT_FIELDS.items()})
    model_config["sample_rate"] = fairseq_field(task, "sample_rate", 16_000)
    do_normalize = fairseq_field(task, "normalize", False) or fairseq_field(model, "wav_normalize", False)
    return model_config, do_normalize


def encoder_from_fairseq(path: str | os.PathLike) -> "MertEncoder":
    """A MERT fairseq training checkpoint (e.g. `MERT-v1-95M_fairseq.pt`) as a zoo `MertEncoder`.

    Raises:
        CheckpointError: naming the file, or listing every key that does not convert.
    """
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

    state_dict, cfg = load_fairseq_checkpoint(path)
    model_config, do_normalize = config_from_fairseq(cfg)
    config = MertEncoderConfig(**model_config)
    encoder = MertEncoder(config, fairseq_processor(do_normalize, sampling_rate=config.sample_rate))
    kept = {key: value for key, value in state_dict.items()
            if not (CQT_BUFFERS.fullmatch(key) or any(re.fullmatch(pattern, key) for pattern in FAIRSEQ_DROPPED))}
    expected = {key: value.shape for key, value in encoder.model.state_dict().items()}
    encoder.model.load_state_dict(convert_state_dict(kept, expected), strict=True)
    return encoder.eval()
