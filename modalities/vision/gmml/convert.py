"""GMML training checkpoints, DINO-layout backbones and timm ViTs -> zoo GMML encoders.

Three upstream layouts hold the same ViT under the same names (DINO's, which timm shares):
`cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.N.{norm1, attn.qkv, attn.proj,
norm2, mlp.fc1, mlp.fc2}.*`, `norm.*`.

- "gmml": what GMML's `main.py` saves, `{'SiT_model', 'optimizer', 'epoch', 'args',
  'fp16_scaler'}`; `SiT_model` has the backbone under `module.backbone.` and the
  reconstruction head under `module.head_recons.` (`mlp.0/2/4`, `convTrans`). `args` is a
  pickled argparse.Namespace: it is the only class the loader lets through.
- "dino": a bare backbone state dict (what GMML's `utils.load_pretrained_weights` leaves).
- "timm": a timm VisionTransformer state dict (`.pth` or `.safetensors`); a classifier
  `head.*` is not part of the encoder and is dropped with a warning.

The config is read off the weights (width, depth, patch, position grid, MLP width, qkv
bias). Heads cannot be: they come from the checkpoint's `args.model`, else from the width
of the paper's sizes (192 / 384 / 768 -> 3 / 6 / 12), else an override must name them
(`zoo convert gmml FILE OUT --set num_heads=N`). Nor can the preprocessing: the processor
is the zoo's default (the ViT's channels, ImageNet mean / std or their average for a grey
ViT, a 0.875 crop), which `--set image_mean=[...]`, `image_std`, `resize_size` and
`crop_size` change; a timm layout warns, as timm's own `vit_*_patch16_224` weights expect
mean = std = 0.5.

Shapes: D width, p patch side, n x n stored position grid.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch

from modalities.vision.gmml.model import VARIANTS, GmmlConfig, GmmlEncoder
from modalities.vision.processing import ImageProcessor
from zoo.errors import CheckpointError, ConfigError, warn
from zoo.hub import read_torch_file

TRAINING_KEY = "SiT_model"
#: upstream `--model` names -> zoo variants
UPSTREAM_MODELS = {"vit_tiny": "vit-tiny-patch16", "vit_small": "vit-small-patch16", "vit_base": "vit-base-patch16"}
HEADS_BY_WIDTH = {variant["hidden_size"]: variant["num_heads"] for variant in VARIANTS.values()}
#: `--set` keys that go to the image processor: no state dict says how its images were prepared
PROCESSOR_SETTINGS = ("resize_size", "crop_size", "image_mean", "image_std")

_BACKBONE = r"(cls_token|pos_embed|patch_embed\.proj\.(?:weight|bias)|norm\.(?:weight|bias)" \
            r"|blocks\.\d+\.(?:norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(?:weight|bias))"
#: (upstream key pattern, zoo key), per layout; every key must match one, or be DROPPED
KEY_MAPS: dict[str, list[tuple[str, str]]] = {
    "gmml": [
        (rf"module\.backbone\.{_BACKBONE}", r"backbone.\1"),
        (r"module\.head_recons\.mlp\.([024])\.(weight|bias)", r"reconstruction.mlp.\1.\2"),
        (r"module\.head_recons\.convTrans\.(weight|bias)", r"reconstruction.to_pixels.\1"),
    ],
    "dino": [(_BACKBONE, r"backbone.\1")],
    "timm": [(_BACKBONE, r"backbone.\1")],
}
DROPPED: dict[str, dict[str, str]] = {
    "gmml": {},
    "dino": {},
    "timm": {r"head\.(weight|bias)": "timm's classifier on the pooled token, not part of the encoder"},
}


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A `.pth` (torch.load, weights only, argparse.Namespace allowed for GMML's `args`) or
    `.safetensors` file as a dict."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises several types for a broken file
            raise CheckpointError(f"cannot read {str(path)!r} as a safetensors file ({err}); "
                                  "download it again") from err
    checkpoint = read_torch_file(path, "a GMML, DINO or timm ViT checkpoint", allowed=[argparse.Namespace])
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def detect_format(checkpoint: dict[str, Any]) -> str:
    """"gmml" for a training checkpoint, "timm" when a classifier head is present, else "dino"."""
    if TRAINING_KEY in checkpoint:
        return "gmml"
    if not all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise CheckpointError(f"checkpoint holds {sorted(checkpoint)[:8]}: neither a GMML training checkpoint "
                              f"('{TRAINING_KEY}') nor a ViT state dict; pass --format to say which it is")
    return "timm" if any(key.startswith("head.") for key in checkpoint) else "dino"


def state_dict_of(checkpoint: dict[str, Any], fmt: str, where: str) -> dict[str, torch.Tensor]:
    """The ViT state dict of a checkpoint of layout `fmt`: a GMML training file's `SiT_model`; the
    others are one already. `where` names the file in the error."""
    if fmt != "gmml":
        return checkpoint
    state = checkpoint.get(TRAINING_KEY)
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} has no '{TRAINING_KEY}' state dict: it is not a GMML training checkpoint "
                              "(for a bare backbone use --format dino)")
    return state


def convert_state_dict(state: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """Rename every key of layout `fmt`; one error lists all the keys it cannot place."""
    converted, unplaced, dropped = {}, [], []
    for key, value in state.items():
        if any(re.fullmatch(pattern, key) for pattern in DROPPED[fmt]):
            dropped.append(f"{key} {tuple(value.shape)}")
            continue
        for pattern, target in KEY_MAPS[fmt]:
            if re.fullmatch(pattern, key):
                converted[re.sub(pattern, target, key)] = value
                break
        else:
            unplaced.append(key)
    if unplaced:
        raise CheckpointError(f"{len(unplaced)} keys of the {fmt} checkpoint have no place in a GMML ViT: "
                              f"{unplaced[:10]}{' ...' if len(unplaced) > 10 else ''}. Is it a plain ViT "
                              "(no register tokens, q/k norms or fc_norm)? Check --format "
                              f"({', '.join(KEY_MAPS)})")
    if dropped:
        reasons = "; ".join(sorted(set(DROPPED[fmt].values())))
        warn(f"dropped {dropped} ({reasons}); fine-tune a new head with zoo.for_classification")
    return converted


def required(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """`state[key]`, for a key every GMML ViT has; its absence means the file is incomplete or not
    a ViT, which a KeyError would not say."""
    if key not in state:
        raise CheckpointError(f"the checkpoint has no {key!r}, which every GMML ViT has; the file is incomplete "
                              "or not a ViT")
    return state[key]


def heads_for(width: int, upstream_model: str | None) -> int | None:
    """Attention heads of the ViT: those of upstream's `--model` where the checkpoint's args name
    it, else those of the paper's size of that width; None when neither tells (an override must)."""
    if upstream_model in UPSTREAM_MODELS:
        return VARIANTS[UPSTREAM_MODELS[upstream_model]]["num_heads"]
    return HEADS_BY_WIDTH.get(width)


def infer_config(state: dict[str, torch.Tensor], upstream_args: dict[str, Any], **overrides: Any) -> GmmlConfig:
    """The config the converted (zoo-named) weights imply, with `overrides` on top."""
    width, channels, patch, _ = required(state, "backbone.patch_embed.proj.weight").shape
    stored = required(state, "backbone.pos_embed").shape[1] - 1
    side = math.isqrt(stored)
    if side * side != stored:
        raise CheckpointError(f"pos_embed holds {stored} patch positions, not a square grid (plus cls)")
    depth = 1 + max((int(m.group(1)) for key in state if (m := re.match(r"backbone\.blocks\.(\d+)\.", key))),
                    default=-1)
    inferred: dict[str, Any] = dict(
        image_size=side * patch, patch_size=patch, in_channels=channels, hidden_size=width, depth=depth,
        mlp_ratio=required(state, "backbone.blocks.0.mlp.fc1.weight").shape[0] / width,
        qkv_bias="backbone.blocks.0.attn.qkv.bias" in state,
        reconstruction_head=any(key.startswith("reconstruction.") for key in state),
        num_heads=heads_for(width, upstream_args.get("model")),
    )
    if "recons_blocks" in upstream_args:
        inferred["recons_blocks"] = tuple(int(block) for block in str(upstream_args["recons_blocks"]).split("-"))
    unknown = sorted(set(overrides) - set(GmmlConfig.__dataclass_fields__))
    if unknown:
        valid = sorted([*GmmlConfig.__dataclass_fields__, *PROCESSOR_SETTINGS])
        raise ConfigError(f"--set names unknown settings {unknown}; valid: {valid}")
    check_stated(inferred, upstream_args, overrides)
    values = {**inferred, **overrides}
    if values["num_heads"] is None:
        raise ConfigError(f"the number of heads cannot be read from the weights (width {width} is none of the "
                          f"paper's {sorted(HEADS_BY_WIDTH)}); pass it: zoo convert gmml FILE OUT --set num_heads=N")
    return GmmlConfig(**values)


#: config fields the weights' shapes show: an override that differs contradicts the file
SHOWN_BY_WEIGHTS = ("image_size", "patch_size", "in_channels", "hidden_size", "depth", "mlp_ratio", "qkv_bias",
                    "reconstruction_head")


def check_stated(inferred: dict[str, Any], upstream_args: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse overrides of what the checkpoint states: the shapes its weights show, and what its
    args state that the weights cannot show (the heads of its `model`, the blocks its head reads).
    The first failed as a shape mismatch blamed on the file; the second loads without one and gives
    other outputs than the weights were trained to give."""
    stated = {key: (inferred[key], "weights") for key in SHOWN_BY_WEIGHTS}
    if upstream_args.get("model") in UPSTREAM_MODELS:
        stated["num_heads"] = (inferred["num_heads"], "args")
    if "recons_blocks" in upstream_args:
        stated["recons_blocks"] = (inferred["recons_blocks"], "args")
    clashes = [f"{key}={overrides[key]!r} (its {source} say {value!r})" for key, (value, source) in stated.items()
               if key in overrides and (tuple(overrides[key]) if isinstance(overrides[key], list) else overrides[key])
               != value]
    if clashes:
        raise ConfigError(f"--set {'; '.join(clashes)} contradicts the checkpoint, whose weights were trained so; "
                          "drop the --set")


def check_reconstruction_head(state: dict[str, torch.Tensor], patch: int) -> None:
    """Upstream hard-codes the head's patch side (16); a backbone with other patches cannot use it."""
    weight = state.get("reconstruction.to_pixels.weight")
    if weight is not None and weight.shape[-1] != patch:
        raise CheckpointError(f"the reconstruction head paints {weight.shape[-1]}-pixel patches but the backbone "
                              f"cuts {patch}-pixel ones; upstream cannot train such a pair, the file is inconsistent")


def encoder_from_checkpoint(checkpoint: dict[str, Any], fmt: str, where: str, **overrides: Any) -> GmmlEncoder:
    """Build and strictly load the encoder a read checkpoint of layout `fmt` describes."""
    from zoo.hub import load_state

    state = convert_state_dict(state_dict_of(checkpoint, fmt, where), fmt)
    args = checkpoint.get("args") if fmt == "gmml" else None
    upstream_args = vars(args) if isinstance(args, argparse.Namespace) else {}
    settings = {key: overrides.pop(key) for key in PROCESSOR_SETTINGS if key in overrides}
    config = infer_config(state, upstream_args, **overrides)
    check_reconstruction_head(state, config.patch_size)
    if fmt == "timm" and not {"image_mean", "image_std"} & set(settings):
        halves = ", ".join(["0.5"] * config.in_channels)
        warn("a timm ViT state dict does not say how its images were normalised; the processor uses ImageNet's "
             "mean / std and a 0.875 crop (DeiT's, DINO's). timm's own vit_*_patch16_224 weights expect mean = std "
             f"= 0.5 and a 0.9 crop: for those pass --set image_mean=[{halves}] --set image_std=[{halves}] "
             "--set resize_size=248 (in Python, the same keywords)")
    processor = ImageProcessor(**{**GmmlEncoder.default_processor_settings(config), **settings})
    encoder = GmmlEncoder(config, processor)
    load_state(encoder, {key: value.float() for key, value in state.items()}, where)
    return encoder.eval()


def converter(fmt: str | None) -> Callable[..., GmmlEncoder]:
    """The `zoo convert` function of one layout (None: read the layout off the file)."""

    def convert(path: str | os.PathLike, **overrides: Any) -> GmmlEncoder:
        checkpoint = read_checkpoint(path)
        return encoder_from_checkpoint(checkpoint, fmt or detect_format(checkpoint), str(path), **overrides)

    convert.__name__ = f"encoder_from_{fmt or 'any'}"
    convert.__doc__ = f"A {fmt or 'GMML, DINO or timm'} checkpoint file as a zoo GMML encoder; `overrides` " \
                      "set config fields the weights cannot tell (num_heads, pool, ...)."
    return convert


#: format name -> converter; the first (auto-detection) is `zoo convert gmml`'s default
CONVERTERS = {"auto": converter(None), "gmml": converter("gmml"), "dino": converter("dino"),
              "timm": converter("timm")}
