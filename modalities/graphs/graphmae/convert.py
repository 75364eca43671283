"""Official GraphMAE checkpoints (DGL, `torch.save(model.state_dict())` of `PreModel`) -> zoo encoders.

Upstream's GAT layer keeps `fc.weight` (all heads' projections), `attn_l` / `attn_r`
(attention vectors of the source / destination node), `bias`, an optional `res_fc.weight`,
`norm.*` and the PReLU's `activation.weight`. PyG's GATConv holds the same tensors as
`lin.weight`, `att_src`, `att_dst` and `bias` with the same (heads, channels) order, so
conversion renames keys. The decoder, the [MASK] token and `encoder_to_decoder` are
pretraining-only and dropped. The architecture is read off the tensor shapes.

Upstream's Planetoid loaders (DGL) row-normalise the features; a checkpoint trained on
Cora, CiteSeer or PubMed therefore wants `encoder.processor.feature_norm = "row"` before
it embeds raw PyG data (the file does not say which dataset it was trained on).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import torch

from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from zoo.errors import CheckpointError

#: upstream suffix inside `encoder.gat_layers.{i}.` -> zoo suffix inside `gnn.layers.{i}.`
KEY_MAP = {
    "fc.weight": "conv.lin.weight",
    "attn_l": "conv.att_src",
    "attn_r": "conv.att_dst",
    "bias": "conv.bias",
    "res_fc.weight": "residual.weight",
    "activation.weight": "activation.weight",
}
NORM_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: pretraining-only parts of upstream's PreModel
DROPPED_PREFIXES = ("decoder.", "encoder_to_decoder.", "enc_mask_token")
LAYER_KEY = re.compile(r"^encoder\.gat_layers\.(\d+)\.(.+)$")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load an upstream `.pt`/`.pth` file safely (weights only); a `{"model": ...}` wrapper is unwrapped."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises several unrelated types for corrupt files
        raise CheckpointError(f"cannot read GraphMAE checkpoint {str(path)!r} ({err}); re-download it") from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not any(key.startswith("encoder.gat_layers.") for key in state):
        raise CheckpointError(
            f"{str(path)!r} is not a GraphMAE GAT checkpoint (no encoder.gat_layers.* keys); "
            "it must be the state_dict of upstream's PreModel with a GAT encoder"
        )
    return state


def rename_key(key: str) -> Optional[str]:
    """Zoo name of an upstream encoder key; None for pretraining-only keys."""
    if key.startswith(DROPPED_PREFIXES):
        return None
    match = LAYER_KEY.match(key)
    if match:
        index, suffix = match.groups()
        if suffix in KEY_MAP:
            return f"gnn.layers.{index}.{KEY_MAP[suffix]}"
        if suffix.startswith("norm.") and suffix[5:] in NORM_SUFFIXES:
            return f"gnn.layers.{index}.{suffix}"
    raise CheckpointError(f"unexpected key {key!r} in a GraphMAE checkpoint; is it a GAT encoder?")


def config_from_state(state: dict[str, torch.Tensor], **overrides: Any) -> GraphMAEConfig:
    """The encoder architecture the tensors imply; `overrides` settle what they cannot show.

    A parameter-free activation is taken as "relu" (PReLU leaves a weight), and a residual
    is seen only where it is a linear map (an identity residual, between equal widths,
    leaves no tensor): pass `activation=` or `residual=True` when they differ.
    """
    layers = sorted({int(LAYER_KEY.match(key).group(1)) for key in state if LAYER_KEY.match(key)})
    first = f"encoder.gat_layers.{layers[0]}."
    _, heads, head_dim = state[first + "attn_l"].shape
    norm = None
    if first + "norm.running_mean" in state:
        norm = "batchnorm"
    elif first + "norm.weight" in state:
        norm = "layernorm"
    inferred = {
        "in_dim": state[first + "fc.weight"].shape[1], "num_hidden": heads * head_dim, "num_heads": heads,
        "num_layers": len(layers), "encoder_type": "gat", "norm": norm,
        "activation": "prelu" if first + "activation.weight" in state else "relu",
        "residual": any(LAYER_KEY.match(key) and ".res_fc." in key for key in state),
    }
    return GraphMAEConfig(**{**inferred, **overrides})


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for key, value in state.items():
        name = rename_key(key)
        if name is not None:
            converted[name] = value.float() if value.is_floating_point() else value
    return converted


def encoder_from_graphmae(path: str | Path, **overrides: Any) -> GraphMAEEncoder:
    """Build a zoo encoder from an upstream checkpoint file (every encoder key used, none missing)."""
    from zoo.hub import load_state

    state = read_state_dict(path)
    encoder = GraphMAEEncoder(config_from_state(state, **overrides))
    load_state(encoder, convert_state_dict(state), path)
    return encoder
