"""Official GraphMAE checkpoints (DGL, `torch.save(model.state_dict())` of `PreModel`) -> zoo encoders.

GAT encoders (node tasks): upstream's layer keeps `fc.weight` (all heads' projections),
`attn_l` / `attn_r` (attention vectors of the source / destination node), `bias`, an
optional `res_fc.weight`, `norm.*` and the PReLU's `activation.weight`. PyG's GATConv holds
the same tensors as `lin.weight`, `att_src`, `att_dst` and `bias` with the same
(heads, channels) order, so conversion renames keys.

GIN encoders (graph tasks): upstream's layer keeps `eps` and an `apply_func` that is a
two-layer MLP (`linears`, `norms.0`, `activations.0`) wrapped, in every layer but a
norm-free last one, by a norm and an activation (`mlp.*`, `norm.*`, `act.*`); the zoo's
GIN layer has the same parts under `conv.nn`.

The decoder, the [MASK] token and `encoder_to_decoder` are pretraining-only and dropped.
The architecture is read off the tensor shapes.

Upstream's Planetoid loaders (DGL) row-normalise the features; a checkpoint trained on
Cora, CiteSeer or PubMed therefore wants `encoder.processor.feature_norm = "row"` before
it embeds raw PyG data (the file does not say which dataset it was trained on). A GIN
file does not say its readout either: pass `pooling=` (upstream's default is "mean").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import torch

from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from zoo.errors import CheckpointError
from zoo.hub import key_listing, read_torch_file

#: upstream suffix inside `encoder.gat_layers.{i}.` -> zoo suffix inside `gnn.layers.{i}.`
GAT_KEYS = {
    "fc.weight": "conv.lin.weight",
    "attn_l": "conv.att_src",
    "attn_r": "conv.att_dst",
    "bias": "conv.bias",
    "res_fc.weight": "residual.weight",
    "activation.weight": "activation.weight",
}
NORM_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
NORM = "(" + "|".join(NORM_SUFFIXES) + ")"
#: upstream suffix inside `encoder.layers.{i}.` (a regular expression) -> zoo suffix inside `gnn.layers.{i}.`
GIN_KEYS = {
    r"eps": "conv.eps",
    r"res_fc\.weight": "residual.weight",
    r"apply_func\.mlp\.linears\.([01])\.(weight|bias)": r"conv.nn.mlp.linears.\1.\2",
    r"apply_func\.mlp\.norms\.0\." + NORM: r"conv.nn.mlp.norm.\1",
    r"apply_func\.mlp\.activations\.0\.weight": "conv.nn.mlp.activation.weight",
    r"apply_func\.norm\." + NORM: r"conv.nn.norm.\1",
    r"apply_func\.act\.weight": "conv.nn.activation.weight",
    r"apply_func\.linears\.([01])\.(weight|bias)": r"conv.nn.linears.\1.\2",
    r"apply_func\.norms\.0\." + NORM: r"conv.nn.norm.\1",
    r"apply_func\.activations\.0\.weight": "conv.nn.activation.weight",
}
#: pretraining-only parts of upstream's PreModel
DROPPED_PREFIXES = ("decoder.", "encoder_to_decoder.", "enc_mask_token")
LAYER_KEY = re.compile(r"^encoder\.(gat_layers|layers)\.(\d+)\.(.+)$")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load an upstream `.pt`/`.pth` file safely (weights only); a `{"model": ...}` wrapper is unwrapped."""
    state = read_torch_file(path, "a GraphMAE checkpoint (upstream's PreModel state dict)")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not any(isinstance(key, str) and LAYER_KEY.match(key) for key in state):
        raise CheckpointError(
            f"{str(path)!r} is not a GraphMAE checkpoint (no encoder.gat_layers.* or encoder.layers.* keys); "
            "it must be the state_dict of upstream's PreModel with a GAT or GIN encoder"
        )
    return state


#: what `rename_key` gives for a key that is neither an encoder key nor a pretraining-only one
UNKNOWN = ""


def rename_key(key: str) -> Optional[str]:
    """Zoo name of an upstream encoder key; None for pretraining-only keys, UNKNOWN for any other."""
    if key.startswith(DROPPED_PREFIXES):
        return None
    match = LAYER_KEY.match(key)
    if match:
        stack, index, suffix = match.groups()
        name = gat_suffix(suffix) if stack == "gat_layers" else gin_suffix(suffix)
        if name is not None:
            return f"gnn.layers.{index}.{name}"
    return UNKNOWN


def gat_suffix(suffix: str) -> Optional[str]:
    """Zoo suffix of a key inside an upstream GAT layer (a norm's keep their names); None for a key
    no GAT layer has, which `rename_key` refuses."""
    if suffix in GAT_KEYS:
        return GAT_KEYS[suffix]
    if suffix.startswith("norm.") and suffix[5:] in NORM_SUFFIXES:
        return suffix
    return None


def gin_suffix(suffix: str) -> Optional[str]:
    """Zoo suffix of a key inside an upstream GIN layer, by the first `GIN_KEYS` pattern it
    matches; None for a key none matches, which `rename_key` refuses."""
    for pattern, replacement in GIN_KEYS.items():
        if re.fullmatch(pattern, suffix):
            return re.sub(pattern, replacement, suffix)
    return None


def config_from_state(state: dict[str, torch.Tensor], **overrides: Any) -> GraphMAEConfig:
    """The encoder architecture the tensors imply; `overrides` settle what they cannot show.

    A parameter-free activation is taken as "relu" (PReLU leaves a weight), and a residual
    is seen only where it is a linear map (an identity residual, between equal widths,
    leaves no tensor): pass `activation=` or `residual=True` when they differ. A GIN
    file's readout is upstream's default ("mean") unless `pooling=` says otherwise.
    """
    layer_keys = [LAYER_KEY.match(key) for key in state]
    layers = sorted({int(match.group(2)) for match in layer_keys if match})
    stack = next(match.group(1) for match in layer_keys if match)
    try:
        inferred = (gat_config if stack == "gat_layers" else gin_config)(state, f"encoder.{stack}.{layers[0]}.")
    except KeyError as err:
        raise CheckpointError(
            f"the checkpoint has encoder.{stack}.* keys but not GraphMAE's (no {err.args[0]}); pass the state dict "
            "of upstream's PreModel with a GAT or GIN encoder"
        ) from err
    residual = any(match and match.group(3).startswith("res_fc.") for match in layer_keys)
    inferred.update(num_layers=len(layers), residual=residual)
    return GraphMAEConfig(**{**inferred, **overrides})


def gat_config(state: dict[str, torch.Tensor], first: str) -> dict[str, Any]:
    """GAT settings read off the layer under the key prefix `first`: the input width from
    `fc.weight`, heads and head width from `attn_l`, norm and activation from the keys present."""
    _, heads, head_dim = state[first + "attn_l"].shape
    return {"in_dim": state[first + "fc.weight"].shape[1], "num_hidden": heads * head_dim, "num_heads": heads,
            "encoder_type": "gat", "norm": norm_of(state, first + "norm."),
            "activation": "prelu" if first + "activation.weight" in state else "relu"}


def gin_config(state: dict[str, torch.Tensor], first: str) -> dict[str, Any]:
    """GIN settings read off the layer under the key prefix `first`, its MLP wrapped
    (`apply_func.mlp.`) or bare; the readout is upstream's default "mean", as no tensor shows it."""
    mlp = first + "apply_func.mlp." if first + "apply_func.mlp.linears.0.weight" in state else first + "apply_func."
    hidden, in_dim = state[mlp + "linears.0.weight"].shape
    return {"in_dim": in_dim, "num_hidden": hidden, "encoder_type": "gin", "norm": norm_of(state, mlp + "norms.0."),
            "activation": "prelu" if mlp + "activations.0.weight" in state else "relu", "pooling": "mean"}


def norm_of(state: dict[str, torch.Tensor], prefix: str) -> Optional[str]:
    """The norm whose keys sit under `prefix`: "batchnorm" where running statistics are stored,
    "layernorm" where only an affine weight is, None where there are none."""
    if prefix + "running_mean" in state:
        return "batchnorm"
    return "layernorm" if prefix + "weight" in state else None


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Upstream keys under zoo names, pretraining-only ones dropped and floating tensors cast to
    float32; every unexpected key is named in one error, missing ones are `load_state`'s to find."""
    converted, unknown = {}, []
    for key, value in state.items():
        name = rename_key(key)
        if name == UNKNOWN:
            unknown.append(key)
        elif name is not None:
            converted[name] = value.float() if value.is_floating_point() else value
    if unknown:  # all of them in one error, not one per rerun
        raise CheckpointError(f"{key_listing('unexpected keys', unknown)} in a GraphMAE checkpoint; is it a GAT or "
                              "GIN encoder?")
    return converted


def encoder_from_graphmae(path: str | Path, **overrides: Any) -> GraphMAEEncoder:
    """Build a zoo encoder from an upstream checkpoint file (every encoder key used, none missing)."""
    from zoo.hub import load_state

    state = read_state_dict(path)
    encoder = GraphMAEEncoder(config_from_state(state, **overrides))
    load_state(encoder, convert_state_dict(state), path)
    return encoder.eval()
