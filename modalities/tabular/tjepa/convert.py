"""Official T-JEPA weights (jose-melo/t-jepa) -> zoo state dicts.

The authors published no weights, but their training script checkpoints
`{"context_encoder", "target_encoder", "predictor", ...}` state dicts; these maps read
such an encoder or predictor. Keys the official modules hold but never use (the template
layer `transformer_layers` that `TransformerEncoder` clones, the predictor's spare
`layer_norm`) and fixed position tables (`pe.pe`, `predictor_pos_embed`, rebuilt from the
config) are dropped; any other unknown key is an error.
"""

from __future__ import annotations

import re

import torch

from zoo.errors import CheckpointError

ENCODER_KEYS = [
    (r"^tokenizer\.", "tokenizer."),
    (r"^feature_type_embedding\.", "feature_type_embedding."),
    (r"^encoder\.transformer\.layers\.", "transformer.layers."),
    (r"^encoder\.fc\.", "transformer.fc."),
    (r"^encoder\.layernorm1\.", "transformer.norm1."),
    (r"^encoder\.layernorm2\.", "transformer.norm2."),
]
ENCODER_UNUSED = (r"^encoder\.transformer_layers\.", r"^pe\.pe$")
PREDICTOR_KEYS = [
    (r"^mask_token$", "mask_token"),
    (r"^predictor_emb\.", "embed."),
    (r"^transformer\.transformer\.layers\.", "transformer.layers."),
    (r"^transformer\.fc\.", "transformer.fc."),
    (r"^transformer\.layernorm1\.", "transformer.norm1."),
    (r"^transformer\.layernorm2\.", "transformer.norm2."),
    (r"^predictor_norm\.", "norm."),
    (r"^predictor_proj\.", "proj."),
]
PREDICTOR_UNUSED = (r"^transformer\.transformer_layers\.", r"^layer_norm\.", r"^predictor_pos_embed$")


def rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str]], unused: tuple[str, ...],
           what: str) -> dict[str, torch.Tensor]:
    """Apply the first matching rule to every key; unknown keys are a `CheckpointError`."""
    renamed = {}
    for key, value in state.items():
        if any(re.search(pattern, key) for pattern in unused):
            continue
        for pattern, replacement in rules:
            if re.search(pattern, key):
                renamed[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise CheckpointError(f"official T-JEPA {what} key {key!r} has no zoo counterpart; is this a T-JEPA "
                                  "checkpoint of jose-melo/t-jepa with pred_type transformer?")
    return renamed


def encoder_state_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official `Encoder.state_dict()` (context or target encoder) as a `TJEPAEncoder` state dict."""
    return rename(state, ENCODER_KEYS, ENCODER_UNUSED, "encoder")


def predictor_state_from_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official `Predictors.state_dict_()` (transformer predictor) as a `TJEPAPredictor` state dict."""
    return rename(state, PREDICTOR_KEYS, PREDICTOR_UNUSED, "predictor")
