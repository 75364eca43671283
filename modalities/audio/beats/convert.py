"""Official BEATs files (`{'cfg', 'model'[, 'label_dict']}`, microsoft/unilm) -> zoo models.

One converter reads all three kinds of release: a pretrained encoder, an AudioSet
fine-tuned model (encoder + `predictor`, returned as a zoo tagging head whose labels are
the AudioSet names of its `label_dict`) and an acoustic tokenizer (encoder + quantizer).

Upstream builds its config with `self.__dict__.update(cfg)` over class defaults that
differ from the released settings (no relative bias, max_distance 1280, ...), so keys a
file leaves out take those defaults here too (`OFFICIAL_DEFAULTS`). Keys upstream never
reads are ignored, as upstream ignores them.

State-dict differences: upstream's `encoder.*` (the transformer) is `transformer.*`
here, since a zoo head's `encoder` is the whole model. Upstream stores the one relative-bias table under every layer
(one shared module); the zoo keeps it once and checks the copies are equal. The
positional conv's legacy weight norm (`weight_g`, `weight_v`) becomes torch's
parametrization. The tokenizer's `initted` flag is checked and dropped, and so are its
`embed_avg` (never read by upstream's update) and the usage counter upstream bumps even
at inference (`quantize.cluster_size`).
"""

from __future__ import annotations

import os
import re
from typing import Any, Union

import torch

from modalities.audio.beats.model import BEATsConfig, BEATsEncoder
from zoo.errors import CheckpointError
from zoo.heads import EncoderForTagging
from zoo.hub import read_torch_file

#: upstream's BEATsConfig / TokenizersConfig class defaults (unilm beats/BEATs.py, Tokenizers.py)
OFFICIAL_DEFAULTS: dict[str, Any] = dict(
    input_patch_size=-1, embed_dim=512, conv_bias=False, encoder_layers=12, encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072, encoder_attention_heads=12, activation_fn="gelu", layer_norm_first=False,
    deep_norm=False, dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, encoder_layerdrop=0.0,
    dropout_input=0.0, conv_pos=128, conv_pos_groups=16, relative_position_embedding=False, num_buckets=320,
    max_distance=1280, gru_rel_pos=False, finetuned_model=False, predictor_dropout=0.1, predictor_class=527,
)
TOKENIZER_DEFAULTS: dict[str, int] = dict(quant_n=1024, quant_dim=256)

#: upstream cfg key -> zoo config field, where the names differ
RENAMED = {"embed_dim": "embed_dim_patches", "quant_n": "codebook_size", "quant_dim": "codebook_dim"}

_POS_CONV = "transformer.pos_conv.conv"
KEY_MAP: list[tuple[str, str]] = [
    (r"encoder\.pos_conv\.0\.weight_g", f"{_POS_CONV}.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", f"{_POS_CONV}.parametrizations.weight.original1"),
    (r"encoder\.pos_conv\.0\.bias", f"{_POS_CONV}.bias"),
    (r"encoder\.layers\.\d+\.self_attn\.relative_attention_bias\.weight", "transformer.relative_attention_bias.weight"),
    (r"quantize\.embedding\.weight", "codebook.embed"),
    (r"quantize\.embedding\.cluster_size", "codebook.cluster_size"),
    (r"predictor\.(weight|bias)", r"head.\1"),
    (r"(patch_embedding|layer_norm|post_extract_proj)\.(weight|bias)", r"\1.\2"),
    (r"encoder\.(layer_norm\.(?:weight|bias))", r"transformer.\1"),
    (r"encoder\.(layers\.\d+\.(?:self_attn\.(?:[qkv]_proj|out_proj|grep_linear)\.(?:weight|bias)|self_attn\.grep_a"
     r"|(?:self_attn_layer_norm|final_layer_norm|fc1|fc2)\.(?:weight|bias)))", r"transformer.\1"),
    (r"(quantize_layer\.[02]\.(?:weight|bias))", r"\1"),
]
DROPPED = {
    r"quantize\.embedding\.initted": "k-means done flag (checked to be set)",
    r"quantize\.embedding\.embed_avg": "never read by upstream's codebook update",
    r"quantize\.cluster_size": "usage counter upstream updates even at inference",
}

Model = Union[BEATsEncoder, EncoderForTagging]


def read_official(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load an official file (weights only) and check it holds 'cfg' and 'model'."""
    checkpoint = read_torch_file(path, "an official BEATs checkpoint")
    if not isinstance(checkpoint, dict) or not {"cfg", "model"} <= set(checkpoint):
        raise CheckpointError(f"{path} is not an official BEATs checkpoint {{'cfg', 'model'}}: it holds "
                              f"{held_keys(checkpoint)}")
    return checkpoint


def held_keys(checkpoint: Any, shown: int = 8) -> str:
    """What a file that is no official checkpoint holds, briefly: a state dict's 51 keys ran to a
    line before the message said what was wrong."""
    if not isinstance(checkpoint, dict):
        return f"a {type(checkpoint).__name__}"
    keys = sorted(map(str, checkpoint))
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"keys {keys[:shown]}{more}"


def is_tokenizer(cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> bool:
    """Whether the file is an acoustic tokenizer: upstream's quantizer codebook is among its
    weights, or its cfg has the tokenizer-only `quant_n`."""
    return "quantize.embedding.weight" in state or "quant_n" in cfg


def config_from_official(cfg: dict[str, Any], tokenizer: bool) -> BEATsConfig:
    """The zoo config upstream would build from `cfg` (class defaults filled in)."""
    resolved = {**OFFICIAL_DEFAULTS, **(TOKENIZER_DEFAULTS if tokenizer else {}), **cfg}
    if resolved["layer_norm_first"]:
        raise CheckpointError("cfg has layer_norm_first=True (pre-LN), which no BEATs release uses; "
                              "the zoo implements the released post-LN layers only")
    if resolved["activation_fn"] != "gelu":
        raise CheckpointError(f"cfg activation_fn={resolved['activation_fn']!r}; BEATs releases use 'gelu'")
    fields = set(BEATsConfig.__dataclass_fields__)
    values = {RENAMED.get(key, key): value for key, value in resolved.items() if RENAMED.get(key, key) in fields}
    if not tokenizer:
        values.update(codebook_size=0, codebook_dim=0)
    return BEATsConfig.from_dict(values)


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every upstream key; raise one error listing the keys it cannot place."""
    converted, unplaced = {}, []
    for key, value in state.items():
        if any(re.fullmatch(pattern, key) for pattern in DROPPED):
            continue
        for pattern, target in KEY_MAP:
            if re.fullmatch(pattern, key):
                name = re.sub(pattern, target, key)
                if name in converted and not torch.equal(converted[name], value):
                    raise CheckpointError(f"{key} differs from the other layers' copy of {name}: upstream shares "
                                          "one relative-bias table, so the file is corrupt")
                converted[name] = value
                break
        else:
            unplaced.append(key)
    if unplaced:
        raise CheckpointError(f"official BEATs checkpoint has keys the zoo cannot place: {unplaced[:10]}"
                              f"{' ...' if len(unplaced) > 10 else ''}; is it a BEATs file?")
    return converted


def audioset_names(label_dict: dict[int, str], count: int) -> list[str]:
    """Display names of a fine-tuned model's classes (AudioSet ids not in the ontology stay ids)."""
    from modalities.audio.beats.labels import audioset_display_names

    names = audioset_display_names()
    if sorted(label_dict) != list(range(count)):
        raise CheckpointError(f"label_dict has indices {sorted(label_dict)[:5]}..., expected 0..{count - 1}")
    return [names.get(label_dict[index], label_dict[index]) for index in range(count)]


def encoder_from_official(path: str | os.PathLike) -> Model:
    """An official BEATs, fine-tuned BEATs or tokenizer file as a zoo encoder (or tagging head)."""
    checkpoint = read_official(path)
    cfg, state = dict(checkpoint["cfg"]), checkpoint["model"]
    tokenizer = is_tokenizer(cfg, state)
    initted = state.get("quantize.embedding.initted")
    if initted is not None and not bool(initted.all()):
        raise CheckpointError(f"{path}: the tokenizer's codebook was never initialised (initted = 0)")
    encoder = BEATsEncoder(config_from_official(cfg, tokenizer))
    model: Model = encoder
    if cfg.get("finetuned_model", OFFICIAL_DEFAULTS["finetuned_model"]) and not tokenizer:
        classes = int(cfg.get("predictor_class", OFFICIAL_DEFAULTS["predictor_class"]))
        labels = audioset_names(checkpoint["label_dict"], classes) if "label_dict" in checkpoint else None
        model = EncoderForTagging(encoder, classes, labels=labels, dropout=float(cfg.get("predictor_dropout", 0.1)))
    converted = convert_state_dict(state)
    if model is not encoder:
        converted = {(key if key.startswith("head.") else f"encoder.{key}"): value for key, value in converted.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(key for key in set(expected) & set(converted) if expected[key].shape != converted[key].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path} does not match its own cfg: missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]}, wrong shapes {wrong[:5]}; the file is corrupt or not BEATs")
    model.load_state_dict(converted, strict=True)
    return model.eval()
