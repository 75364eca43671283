"""fairseq and transformers HuBERT checkpoints -> the state dict of transformers' `HubertModel`.

The converter is a table plus a check: `KEY_MAP` renames every fairseq key, `DROPPED` names
the keys left behind on purpose, and `convert_state_dict` raises one `CheckpointError` that
lists every key it could not place, so a new upstream layout fails loudly instead of
loading half its weights.

Target layout (torch >= 2.1): the positional conv's weight norm is a parametrization,
stored as `encoder.pos_conv_embed.conv.parametrizations.weight.original0` (the magnitude,
fairseq's `weight_g`, shape (1, 1, K)) and `...original1` (the direction, fairseq's
`weight_v`, shape (D, D / G, K)).

Shapes: D width, C conv channels, K positional-conv kernel, G its groups.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from zoo.errors import CheckpointError
from zoo.hub import read_torch_file

if TYPE_CHECKING:
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
    from zoo.audio import AudioProcessor

_POS_CONV = "encoder.pos_conv_embed.conv"
_MAGNITUDE = f"{_POS_CONV}.parametrizations.weight.original0"
_DIRECTION = f"{_POS_CONV}.parametrizations.weight.original1"

KEY_MAP: list[tuple[str, str]] = [
    # Conv front end: fairseq blocks are Sequential(conv, Dropout, norm, GELU).
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    # extractor_mode="layer_norm": norm = Sequential(TransposeLast, LayerNorm, TransposeLast).
    (
        r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    # extractor_mode="default": a GroupNorm after the first conv only.
    (
        r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)",
        r"feature_extractor.conv_layers.0.layer_norm.\1",
    ),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    # Weight norm: legacy hook names (what fairseq saves) or torch's parametrization names.
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)", _MAGNITUDE),
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)", _DIRECTION),
    (r"encoder\.pos_conv\.0\.bias", f"{_POS_CONV}.bias"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)",
        r"encoder.layers.\1.attention.\2_proj.\3",
    ),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"mask_emb", "masked_spec_embed"),
]

DROPPED: dict[str, str] = {
    r"label_embs_concat": "pretraining: embeddings of the k-means labels the loss predicts",
    r"final_proj\.(weight|bias)": "pretraining: projection into the label-embedding space",
    r"target_glu\.0\.(weight|bias)": "pretraining: optional GLU on the label embeddings",
}

# Keys of transformers checkpoints that are heads on top of HubertModel.
TRANSFORMERS_DROPPED: dict[str, str] = {
    r"lm_head\.(weight|bias)": "HubertForCTC head",
    r"projector\.(weight|bias)": "HubertForSequenceClassification head",
    r"classifier\.(weight|bias)": "HubertForSequenceClassification head",
    r"layer_weights": "HubertForSequenceClassification layer-weighting head",
}

# Every key HubertModel has (weight-norm variant of the positional conv).
_HUBERT_MODEL_KEY = re.compile(
    r"masked_spec_embed"
    r"|feature_extractor\.conv_layers\.\d+\.(conv|layer_norm)\.(weight|bias)"
    r"|feature_projection\.(layer_norm|projection)\.(weight|bias)"
    rf"|{re.escape(_POS_CONV)}\.(bias|parametrizations\.weight\.original[01])"
    r"|encoder\.layer_norm\.(weight|bias)"
    r"|encoder\.layers\.\d+\.(attention\.(k|v|q|out)_proj|layer_norm|final_layer_norm"
    r"|feed_forward\.(intermediate|output)_dense)\.(weight|bias)"
)

# fairseq's HubertConfig defaults (fairseq/models/hubert/hubert.py), used when a field is absent.
_FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "extractor_mode": "default",
    "layer_norm_first": False,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "activation_fn": "gelu",
    "layer_type": "transformer",
    "conv_pos_batch_norm": False,
    "pos_conv_depth": 1,
}
# fairseq encoder features HubertModel lacks: each field converts only at its default.
_REQUIRED = ("activation_fn", "layer_type", "conv_pos_batch_norm", "pos_conv_depth")
_EXTRACTOR_NORM = {"default": "group", "layer_norm": "layer"}
_FAIRSEQ_LAYER_NORM_EPS = 1e-5  # fairseq's LayerNorm/GroupNorm eps; not a config field

# Pickled objects a fairseq checkpoint holds outside `model` and `cfg`: task_state keeps
# fairseq `Dictionary` objects, extra_state may keep numpy scalars/arrays. They are
# replaced by inert placeholders so neither fairseq nor any pickled code ever runs.
_PLACEHOLDER_MODULES = ("fairseq.", "numpy.")


def convert_state_dict(
    sd: dict[str, torch.Tensor], expected: dict[str, torch.Size] | None = None
) -> dict[str, torch.Tensor]:
    """Renames a fairseq HuBERT state dict to transformers' `HubertModel` layout.

    Args:
        sd: `checkpoint["model"]` of a fairseq HuBERT pretraining checkpoint.
        expected: target key -> shape (e.g. from `HubertModel(cfg).state_dict()`); when
            given, missing and mis-shaped keys are reported too.

    Returns:
        A new dict with HubertModel keys; tensors are shared with `sd`, not copied.

    Raises:
        CheckpointError: listing every unmapped, doubly mapped, missing or mis-shaped key.
    """
    return _rename_all(sd, _fairseq_target, expected, "fairseq HuBERT state dict")


def normalize_transformers_state_dict(
    sd: dict[str, torch.Tensor], expected: dict[str, torch.Size] | None = None
) -> dict[str, torch.Tensor]:
    """Brings a transformers-format HuBERT state dict to this torch's `HubertModel` keys.

    Hub checkpoints such as facebook/hubert-base-ls960 were saved before torch's weight-norm
    parametrization (`weight_g`/`weight_v`), and task models prefix the encoder with
    `hubert.`; both are renamed here so that loading stays `strict=True`.

    Args:
        sd: a `pytorch_model.bin` / safetensors state dict of HubertModel or a task model.
        expected: target key -> shape; when given, missing and mis-shaped keys are reported.

    Returns:
        A new dict with HubertModel keys (task heads in `TRANSFORMERS_DROPPED` left out).

    Raises:
        CheckpointError: listing every unknown, duplicated, missing or mis-shaped key.
    """
    return _rename_all(sd, _transformers_target, expected, "transformers HuBERT state dict")


def _fairseq_target(key: str) -> tuple[str | None, str | None]:
    """(HubertModel key, None), (None, None) for a key dropped on purpose, or (None, problem)."""
    if _matches_any(key, DROPPED):
        return None, None
    target = _rename(key)
    return (target, None) if target else (None, f"unmapped key {key!r} (no KEY_MAP rule, not in DROPPED)")


def _transformers_target(key: str) -> tuple[str | None, str | None]:
    """As `_fairseq_target`, for a key of a transformers HuBERT checkpoint."""
    target = key.removeprefix("hubert.")
    if _matches_any(target, TRANSFORMERS_DROPPED):
        return None, None
    target = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", target)
    target = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", target)
    if not _HUBERT_MODEL_KEY.fullmatch(target):
        return None, f"unknown key {key!r} (not a HubertModel key, not a known head)"
    return target, None


def _rename_all(
    sd: dict[str, torch.Tensor],
    target_of: Callable[[str], tuple[str | None, str | None]],
    expected: dict[str, torch.Size] | None,
    what: str,
) -> dict[str, torch.Tensor]:
    """Rename every key with `target_of`; raise one error listing every problem found."""
    renamed, sources, problems = {}, {}, []
    for key, tensor in sd.items():
        target, problem = target_of(key)
        if problem:
            problems.append(problem)
        elif target is None:
            continue
        elif target in renamed:
            problems.append(f"keys {sources[target]!r} and {key!r} both map to {target!r}")
        else:
            renamed[target], sources[target] = tensor, key
    problems += _check_expected(renamed, expected, sources)
    _raise_if_any(problems, what)
    return renamed


def config_from_fairseq(cfg: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Translates a fairseq HuBERT config to transformers' `HubertConfig` fields.

    Args:
        cfg: the checkpoint's config with sections "model" (fairseq's HubertConfig) and
            "task" (HubertPretrainingConfig), as returned by `load_fairseq_checkpoint`.

    Returns:
        `(model_config, do_normalize)`: the HubertConfig keyword arguments, and whether the
        model was trained on waveforms normalised to zero mean and unit variance per
        utterance (fairseq `task.normalize`; True for large/xlarge), which the processor
        must repeat.

    Raises:
        CheckpointError: the config is not a pretrained HuBERT's, uses an encoder feature
            HubertModel lacks, or has a value of the wrong type.
    """
    model, task = fairseq_sections(cfg, "hubert", "fine-tuned 'hubert_ctc' checkpoints nest the encoder "
                                   "under w2v_encoder.w2v_model")
    return encoder_fields_from_fairseq(model), fairseq_field(task, "normalize", False)


def fairseq_sections(cfg: dict[str, Any], name: str, hint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The "model" and "task" sections of a fairseq config whose model is registered as `name`.

    Raises:
        CheckpointError: a section is missing, or the model is another fairseq model
            (`hint` says what such a checkpoint probably is).
    """
    if "model" not in cfg or "task" not in cfg:
        raise CheckpointError(
            f"fairseq config needs sections 'model' and 'task', found {sorted(cfg)}; "
            "pass the checkpoint's whole cfg, not cfg['model']"
        )
    model = cfg["model"]
    found = model.get("_name", name)
    if found != name:
        raise CheckpointError(f"fairseq model {found!r} is not a pretrained {name!r} model; {hint}")
    return model, cfg["task"]


def encoder_fields_from_fairseq(model: dict[str, Any]) -> dict[str, Any]:
    """The HubertConfig fields of a fairseq wav2vec 2.0-style encoder config (HuBERT's, MERT's).

    Raises:
        CheckpointError: the config uses an encoder feature HubertModel lacks, or has a
            value of the wrong type.
    """
    for field in _REQUIRED:
        value = fairseq_field(model, field)
        if value != _FAIRSEQ_DEFAULTS[field]:
            raise CheckpointError(
                f"fairseq {field}={value!r} is not supported by HubertModel; "
                f"only {_FAIRSEQ_DEFAULTS[field]!r} converts"
            )
    mode = fairseq_field(model, "extractor_mode")
    if mode not in _EXTRACTOR_NORM:
        raise CheckpointError(f"fairseq extractor_mode={mode!r}; expected one of {sorted(_EXTRACTOR_NORM)}")
    layers = parse_conv_layers(fairseq_field(model, "conv_feature_layers"))
    conv_dim, conv_kernel, conv_stride = (tuple(column) for column in zip(*layers, strict=True))
    return {
        "hidden_size": fairseq_field(model, "encoder_embed_dim"),
        "num_hidden_layers": fairseq_field(model, "encoder_layers"),
        "num_attention_heads": fairseq_field(model, "encoder_attention_heads"),
        "intermediate_size": fairseq_field(model, "encoder_ffn_embed_dim"),
        "conv_dim": conv_dim,
        "conv_kernel": conv_kernel,
        "conv_stride": conv_stride,
        "conv_bias": fairseq_field(model, "conv_bias"),
        "feat_extract_norm": _EXTRACTOR_NORM[mode],
        "do_stable_layer_norm": fairseq_field(model, "layer_norm_first"),
        "num_conv_pos_embeddings": fairseq_field(model, "conv_pos"),
        "num_conv_pos_embedding_groups": fairseq_field(model, "conv_pos_groups"),
        "layer_norm_eps": _FAIRSEQ_LAYER_NORM_EPS,
    }


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Parses fairseq's `conv_feature_layers`, e.g. "[(512,10,5)] + [(512,3,2)] * 4".

    fairseq `eval`s this string; here only list/tuple literals of ints, `+` and `*` are
    accepted, so a config can never run code.

    Returns:
        One `(channels, kernel, stride)` per conv layer.

    Raises:
        CheckpointError: the string is not such an expression of (int, int, int) triples.
    """
    try:
        layers = _eval_layers(ast.parse(spec, mode="eval").body)
    except (SyntaxError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"fairseq conv_feature_layers={spec!r} is not a list expression: {err}"
        ) from err
    if not (isinstance(layers, list) and layers and all(map(_is_int_triple, layers))):
        raise CheckpointError(
            f"fairseq conv_feature_layers={spec!r} must give a non-empty list of "
            "(dim, kernel, stride) with positive ints"
        )
    return [tuple(layer) for layer in layers]


def load_fairseq_checkpoint(
    path: str | os.PathLike,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a fairseq HuBERT or MERT `.pt` (or s3prl's fairseq-free copy of one) without fairseq.

    The file is opened with `torch.load(weights_only=True)`. Besides tensors and builtin
    containers it may hold `argparse.Namespace` (the `args` of pre-2021 checkpoints),
    which is allowed, and fairseq/numpy objects outside the weights (task dictionaries,
    training meters), which become inert placeholders.

    Args:
        path: a fairseq checkpoint (`cfg` or `args`, plus `model`) or an s3prl converted
            checkpoint (`model_cfg`, `task_cfg`, `model_weight`).

    Returns:
        `(state_dict, cfg)` where cfg has sections "model" and "task" (plain dicts), ready
        for `convert_state_dict` and `config_from_fairseq`.

    Raises:
        CheckpointError: naming the path, if the file is unreadable, truncated, holds other
            pickled code, or lacks the weights or the config.
    """
    path = Path(path)
    checkpoint = _torch_load(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(checkpoint).__name__}")
    if "model_weight" in checkpoint:  # s3prl's converted layout
        state_dict = checkpoint["model_weight"]
        cfg = {"model": checkpoint.get("model_cfg"), "task": checkpoint.get("task_cfg")}
    elif "model" in checkpoint:
        state_dict, cfg = checkpoint["model"], _fairseq_cfg(checkpoint)
    else:
        raise CheckpointError(
            f"{path} is not a fairseq checkpoint: expected keys 'model' and 'cfg' "
            f"(fairseq) or 'model_weight' and 'model_cfg' (s3prl), found {sorted(checkpoint)}"
        )
    _check_loaded(path, state_dict, cfg)
    return state_dict, cfg


def _rename(key: str) -> str | None:
    """The KEY_MAP target of a fairseq key, or None when no rule matches."""
    for pattern, replacement in KEY_MAP:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _matches_any(key: str, patterns: dict[str, str]) -> bool:
    """Whether a key is one a table leaves out on purpose."""
    return any(re.fullmatch(pattern, key) for pattern in patterns)


def _check_expected(
    converted: dict[str, torch.Tensor],
    expected: dict[str, torch.Size] | None,
    sources: dict[str, str],
) -> list[str]:
    """Missing and mis-shaped target keys, one line each (none when `expected` is None)."""
    if expected is None:
        return []
    problems = [f"missing key {key!r}" for key in expected if key not in converted]
    for key, tensor in converted.items():
        if key not in expected:
            problems.append(f"unexpected key {key!r} (from {sources[key]!r})")
        elif tuple(tensor.shape) != tuple(expected[key]):
            problems.append(
                f"shape of {key!r} (from {sources[key]!r}) is {tuple(tensor.shape)}, "
                f"model expects {tuple(expected[key])}"
            )
    return problems


def _raise_if_any(problems: list[str], what: str) -> None:
    """Raises one CheckpointError listing all problems, so a user fixes them in one pass."""
    if problems:
        listing = "\n  ".join(problems)
        raise CheckpointError(f"{what} does not convert ({len(problems)} problems):\n  {listing}")


def fairseq_field(section: dict[str, Any], name: str, default: Any = None) -> Any:
    """A fairseq config value, defaulted as fairseq does, with the default's type enforced.

    `default` is needed only for fields outside fairseq's HubertConfig defaults table; an
    int is accepted where the default is a float (YAML writes 32 for 32.0).
    """
    default = _FAIRSEQ_DEFAULTS[name] if default is None else default
    value = section.get(name, default)
    if isinstance(default, float) and type(value) is int:
        value = float(value)
    if type(value) is not type(default):
        raise CheckpointError(
            f"fairseq {name}={value!r} has type {type(value).__name__}, expected {type(default).__name__}"
        )
    return value


def _eval_layers(node: ast.AST) -> Any:
    """Evaluates int literals, lists/tuples of them, `+` and `*`: nothing else."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.List):
        return [_eval_layers(element) for element in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_eval_layers(element) for element in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval_layers(node.left), _eval_layers(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"unsupported syntax {ast.dump(node)}")


def _is_int_triple(layer: Any) -> bool:
    """Whether a parsed conv layer is (channels, kernel, stride) with positive ints."""
    return isinstance(layer, tuple) and len(layer) == 3 and all(type(x) is int and x > 0 for x in layer)


class _Placeholder:
    """Stands in for a pickled fairseq/numpy object: accepts any construction, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _placeholders(path: Path) -> list[tuple[type, str]]:
    """Placeholder classes for the fairseq/numpy globals pickled in a checkpoint.

    Only zip checkpoints (torch >= 1.6, which includes every released HuBERT) can be
    scanned; for legacy files torch's own error names any global left.
    """
    if not zipfile.is_zipfile(path):
        return []
    names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    placeholders = []
    for name in names:
        if name.startswith(_PLACEHOLDER_MODULES):
            module, _, qualname = name.rpartition(".")
            placeholders.append((type(qualname, (_Placeholder,), {"__module__": module}), name))
    return placeholders


def _torch_load(path: Path) -> Any:
    """`torch.load(weights_only=True)` with the allow-list a fairseq checkpoint needs."""
    allowed = [argparse.Namespace, *_placeholders(path)] if path.is_file() else []
    return read_torch_file(path, "a fairseq checkpoint (a torch.save file)", allowed)


def _fairseq_cfg(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The "model"/"task" config of a fairseq checkpoint, from `args` or `cfg`.

    fairseq prefers `args` when set: pre-2021 checkpoints store one flat argparse.Namespace
    holding model and task fields alike; newer ones set `args=None` and store `cfg` as
    `OmegaConf.to_container(...)`, a plain dict with sections.
    """
    args = checkpoint.get("args")
    if isinstance(args, argparse.Namespace):
        return {"model": vars(args), "task": vars(args)}
    return checkpoint.get("cfg")


def _check_loaded(path: Path, state_dict: Any, cfg: Any) -> None:
    """Fails with the path when the weights or the config are not what they should be."""
    tensors = isinstance(state_dict, dict) and all(isinstance(v, torch.Tensor) for v in state_dict.values())
    if not tensors:
        raise CheckpointError(f"{path}: the model weights are not a dict of tensors")
    if not (isinstance(cfg, dict) and all(isinstance(cfg.get(s), dict) for s in ("model", "task"))):
        raise CheckpointError(
            f"{path}: no fairseq config found; expected 'cfg' with dict sections 'model' "
            "and 'task' (or an argparse 'args'; s3prl: 'model_cfg' and 'task_cfg')"
        )


def fairseq_processor(do_normalize: bool, sampling_rate: int = 16000) -> "AudioProcessor":
    """The processor of a fairseq checkpoint: its `task.normalize` as fairseq computes it,
    `F.layer_norm(wav, wav.shape)`, whose variance floor is 1e-5 (transformers' is 1e-7)."""
    from zoo.audio import FAIRSEQ_NORMALIZE_EPS, AudioProcessor

    floor = {"normalize_eps": FAIRSEQ_NORMALIZE_EPS} if do_normalize else {}
    return AudioProcessor(sampling_rate=sampling_rate, do_normalize=do_normalize, **floor)


def encoder_from_fairseq(path: str | os.PathLike) -> "HubertEncoder":
    """A fairseq (or s3prl-converted) HuBERT checkpoint file as a zoo `HubertEncoder`.

    The processor repeats the checkpoint's waveform normalisation (`task.normalize`).
    """
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    state_dict, cfg = load_fairseq_checkpoint(path)
    model_config, do_normalize = config_from_fairseq(cfg)
    encoder = HubertEncoder(HubertEncoderConfig(**model_config), fairseq_processor(do_normalize))
    expected = {key: value.shape for key, value in encoder.model.state_dict().items()}
    encoder.model.load_state_dict(convert_state_dict(state_dict, expected), strict=True)
    return encoder.eval()


def from_transformers_checkpoint(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> tuple["HubertEncoderConfig", dict[str, torch.Tensor]]:
    """A transformers HuBERT repo (config.json dict + weights) as a zoo config and state dict."""
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    zoo_config = HubertEncoderConfig.from_transformers(config)
    with torch.device("meta"):
        expected = {key: value.shape for key, value in HubertEncoder(zoo_config).model.state_dict().items()}
    normalized = normalize_transformers_state_dict(state_dict, expected)
    return zoo_config, {f"model.{key}": value for key, value in normalized.items()}
