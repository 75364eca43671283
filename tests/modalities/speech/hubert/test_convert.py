"""Tests of the fairseq/transformers HuBERT converter against a hand-built reference.

The fairseq key list below is written from fairseq's module structure
(fairseq/models/hubert/hubert.py and wav2vec/wav2vec2.py: ConvFeatureExtractionModel,
make_conv_pos, TransformerSentenceEncoderLayer), independently of `KEY_MAP`. The reference
model copies each fairseq tensor into HubertModel by attribute, and recomputes the
positional conv's weight from g and v by weight norm's formula, so a swapped g/v or a
wrong rename shows up as an output difference.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq_hubert import (
    DIM,
    FFN,
    HEADS,
    LAYERS,
    MODES,
    POS_GROUPS,
    POS_KERNEL,
    PRETRAINING_HEADS,
    fairseq_model_cfg,
    fairseq_state_dict,
)
from torch.nn.utils import parametrize
from transformers import HubertConfig, HubertModel

from modalities.speech.hubert.convert import (
    config_from_fairseq,
    convert_state_dict,
    encoder_from_fairseq,
    load_fairseq_checkpoint,
    normalize_transformers_state_dict,
    parse_conv_layers,
)
from zoo.errors import CheckpointError

TOLERANCE = 1e-5  # float32 outputs of two models holding identical weights


def hf_config(mode: str) -> dict:
    """The HubertConfig arguments of the tiny model, written out by hand."""
    extractor_mode, layer_norm_first, conv_bias = MODES[mode]
    return {
        "hidden_size": DIM,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": FFN,
        "conv_dim": (24, 24, 24),
        "conv_kernel": (10, 3, 3),
        "conv_stride": (5, 2, 2),
        "conv_bias": conv_bias,
        "feat_extract_norm": "layer" if extractor_mode == "layer_norm" else "group",
        "do_stable_layer_norm": layer_norm_first,
        "num_conv_pos_embeddings": POS_KERNEL,
        "num_conv_pos_embedding_groups": POS_GROUPS,
        "layer_norm_eps": 1e-5,
    }


def expected_shapes(config: dict) -> dict[str, torch.Size]:
    """Target key -> shape of HubertModel for a config."""
    return {key: value.shape for key, value in HubertModel(HubertConfig(**config)).state_dict().items()}


@torch.no_grad()
def reference_model(sd: dict[str, torch.Tensor], config: dict) -> tuple[HubertModel, set[str]]:
    """HubertModel with fairseq weights copied in by attribute; returns it and the keys used."""
    model = HubertModel(HubertConfig(**config)).eval()
    used: set[str] = set()
    filled: set[int] = set()

    def put(param: torch.Tensor, key: str) -> None:
        param.copy_(sd[key])
        used.add(key)
        filled.add(id(param))

    def put_linear_or_norm(module: torch.nn.Module, prefix: str) -> None:
        put(module.weight, f"{prefix}.weight")
        if module.bias is not None:
            put(module.bias, f"{prefix}.bias")

    for i, block in enumerate(model.feature_extractor.conv_layers):
        put_linear_or_norm(block.conv, f"feature_extractor.conv_layers.{i}.0")
        if hasattr(block, "layer_norm"):
            layer_norm = config["feat_extract_norm"] == "layer"
            norm = f"feature_extractor.conv_layers.{i}.2" + (".1" if layer_norm else "")
            put_linear_or_norm(block.layer_norm, norm)
    put_linear_or_norm(model.feature_projection.layer_norm, "layer_norm")
    put_linear_or_norm(model.feature_projection.projection, "post_extract_proj")
    put(model.masked_spec_embed, "mask_emb")

    conv = model.encoder.pos_conv_embed.conv
    parametrize.remove_parametrizations(conv, "weight")
    g, v = sd["encoder.pos_conv.0.weight_g"], sd["encoder.pos_conv.0.weight_v"]
    conv.weight = torch.nn.Parameter(g * v / v.norm(dim=(0, 1), keepdim=True))  # weight_norm, dim=2
    used |= {"encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v"}
    filled.add(id(conv.weight))
    put(conv.bias, "encoder.pos_conv.0.bias")

    put_linear_or_norm(model.encoder.layer_norm, "encoder.layer_norm")
    for i, layer in enumerate(model.encoder.layers):
        prefix = f"encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            put_linear_or_norm(getattr(layer.attention, proj), f"{prefix}.self_attn.{proj}")
        put_linear_or_norm(layer.layer_norm, f"{prefix}.self_attn_layer_norm")
        put_linear_or_norm(layer.feed_forward.intermediate_dense, f"{prefix}.fc1")
        put_linear_or_norm(layer.feed_forward.output_dense, f"{prefix}.fc2")
        put_linear_or_norm(layer.final_layer_norm, f"{prefix}.final_layer_norm")
    assert filled == {id(p) for p in model.parameters()}, "reference left a parameter at its init"
    return model, used


def converted_model(sd: dict[str, torch.Tensor], config: dict) -> HubertModel:
    """HubertModel loaded strictly from the converter's output."""
    model = HubertModel(HubertConfig(**config)).eval()
    model.load_state_dict(convert_state_dict(sd, expected_shapes(config)), strict=True)
    return model


@torch.no_grad()
def max_output_diff(model_a: HubertModel, model_b: HubertModel) -> float:
    """Largest |difference| over last_hidden_state and every hidden state on one waveform."""
    wav = torch.randn(1, 4000, generator=torch.Generator().manual_seed(1))
    out_a = model_a(wav, output_hidden_states=True)
    out_b = model_b(wav, output_hidden_states=True)
    assert len(out_a.hidden_states) == len(out_b.hidden_states) == LAYERS + 1
    pairs = [
        (out_a.last_hidden_state, out_b.last_hidden_state),
        *zip(out_a.hidden_states, out_b.hidden_states, strict=True),
    ]
    return max((a - b).abs().max().item() for a, b in pairs)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_convert_matches_reference(mode: str) -> None:
    sd, config = fairseq_state_dict(mode), hf_config(mode)
    reference, used = reference_model(sd, config)
    assert used == set(sd) - PRETRAINING_HEADS  # every non-head key consumed
    model = converted_model(sd, config)
    assert torch.equal(model.masked_spec_embed, sd["mask_emb"])
    pos_conv, reference_pos_conv = model.encoder.pos_conv_embed.conv, reference.encoder.pos_conv_embed.conv
    assert torch.allclose(pos_conv.weight, reference_pos_conv.weight)
    diff = max_output_diff(model, reference)
    print(f"{mode}: max abs diff {diff:.3g}")
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("mode", sorted(MODES))
def test_config_from_fairseq(mode: str) -> None:
    cfg = {"model": fairseq_model_cfg(mode), "task": {"normalize": True}}
    model_config, do_normalize = config_from_fairseq(cfg)
    assert model_config == hf_config(mode)
    assert do_normalize is True


def test_config_defaults_are_fairseq_base() -> None:
    model_config, do_normalize = config_from_fairseq({"model": {"_name": "hubert"}, "task": {}})
    assert model_config["conv_dim"] == (512,) * 7
    assert model_config["conv_kernel"] == (10, 3, 3, 3, 3, 2, 2)
    assert model_config["conv_stride"] == (5, 2, 2, 2, 2, 2, 2)
    assert (model_config["hidden_size"], model_config["num_hidden_layers"]) == (768, 12)
    assert (model_config["feat_extract_norm"], model_config["do_stable_layer_norm"]) == ("group", False)
    assert do_normalize is False


def test_parse_conv_layers_refuses_code() -> None:
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4") == [(512, 10, 5)] + [(512, 3, 2)] * 4
    for spec in ("__import__('os').system('true')", "[(512, 10)]", "[]", "[(1.5, 2, 3)]"):
        with pytest.raises(CheckpointError, match="conv_feature_layers"):
            parse_conv_layers(spec)


@pytest.mark.parametrize(
    "model_cfg, message",
    [
        ({"_name": "hubert_ctc"}, "hubert_ctc"),
        ({"activation_fn": "relu"}, "activation_fn"),
        ({"conv_pos_batch_norm": True}, "conv_pos_batch_norm"),
        ({"extractor_mode": "group"}, "extractor_mode"),
        ({"encoder_layers": "12"}, "encoder_layers"),
    ],
)
def test_config_from_fairseq_rejects(model_cfg: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        config_from_fairseq({"model": model_cfg, "task": {}})


def test_file_round_trip(tmp_path: Path) -> None:
    mode = "layer_pre_ln"
    sd = fairseq_state_dict(mode)
    path = tmp_path / "hubert.pt"
    torch.save({"cfg": {"model": fairseq_model_cfg(mode), "task": {"normalize": False}}, "model": sd}, path)
    loaded_sd, cfg = load_fairseq_checkpoint(path)
    config, do_normalize = config_from_fairseq(cfg)
    assert do_normalize is False
    diff = max_output_diff(converted_model(loaded_sd, config), converted_model(sd, hf_config(mode)))
    assert diff == 0.0, diff


@pytest.fixture
def fake_fairseq(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class that pickles as fairseq.data.dictionary.Dictionary, gone again at load time."""
    dictionary = type("Dictionary", (), {"__module__": "fairseq.data.dictionary"})
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["fairseq.data.dictionary"].Dictionary = dictionary
    return dictionary


def test_load_real_fairseq_layout(
    tmp_path: Path, fake_fairseq: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """args Namespace, fairseq Dictionary objects and numpy values load without fairseq."""
    labels = fake_fairseq()
    labels.symbols = ["<s>", "0", "1"]
    sd = fairseq_state_dict("group_post_ln")
    args = argparse.Namespace(
        **fairseq_model_cfg("group_post_ln"), normalize=False, task="hubert_pretraining"
    )
    checkpoint = {
        "args": args,
        "cfg": None,
        "model": sd,
        "task_state": {"dictionaries": [labels]},
        "extra_state": {"metrics": {"loss": np.float64(1.5)}, "offsets": np.arange(3)},
    }
    path = tmp_path / "checkpoint_best.pt"
    torch.save(checkpoint, path)
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
        monkeypatch.delitem(sys.modules, name)
    loaded_sd, cfg = load_fairseq_checkpoint(path)
    assert set(loaded_sd) == set(sd) and all(torch.equal(loaded_sd[k], sd[k]) for k in sd)
    assert config_from_fairseq(cfg) == (hf_config("group_post_ln"), False)


def test_load_s3prl_layout(tmp_path: Path) -> None:
    sd = fairseq_state_dict("group_post_ln")
    path = tmp_path / "hubert_base_ls960.pt"
    torch.save(
        {
            "task_cfg": {"normalize": True},
            "model_cfg": fairseq_model_cfg("group_post_ln"),
            "model_weight": sd,
            "dictionaries_symbols": [["0", "1"]],
        },
        path,
    )
    loaded_sd, cfg = load_fairseq_checkpoint(path)
    assert set(loaded_sd) == set(sd)
    assert config_from_fairseq(cfg) == (hf_config("group_post_ln"), True)
    encoder = encoder_from_fairseq(path)
    assert not encoder.training  # as zoo.load gives a model: no dropout on a first forward
    assert encoder.processor.do_normalize and encoder.processor.normalize_eps == 1e-5  # fairseq's F.layer_norm


def test_every_bad_key_in_one_error() -> None:
    mode = "group_post_ln"
    sd = fairseq_state_dict(mode)
    sd["encoder.layers.0.self_attn.rotary.weight"] = torch.zeros(3)
    del sd["encoder.layers.1.fc2.bias"]
    sd["encoder.layers.0.fc1.weight"] = torch.zeros(FFN + 1, DIM)
    with pytest.raises(CheckpointError) as error:
        convert_state_dict(sd, expected_shapes(hf_config(mode)))
    message = str(error.value)
    assert "3 problems" in message
    assert "encoder.layers.0.self_attn.rotary.weight" in message
    assert "encoder.layers.1.feed_forward.output_dense.bias" in message
    assert "encoder.layers.0.feed_forward.intermediate_dense.weight" in message


def test_unmapped_key_fails_without_expected() -> None:
    sd = fairseq_state_dict("group_post_ln")
    sd["feature_extractor.conv_layers.1.2.weight"] = torch.zeros(24)  # GroupNorm only exists in block 0
    with pytest.raises(CheckpointError, match=r"feature_extractor\.conv_layers\.1\.2\.weight"):
        convert_state_dict(sd)


def test_parametrization_names_accepted() -> None:
    sd = fairseq_state_dict("group_post_ln")
    sd["encoder.pos_conv.0.parametrizations.weight.original0"] = sd.pop("encoder.pos_conv.0.weight_g")
    sd["encoder.pos_conv.0.parametrizations.weight.original1"] = sd.pop("encoder.pos_conv.0.weight_v")
    converted = convert_state_dict(sd, expected_shapes(hf_config("group_post_ln")))
    magnitude = converted["encoder.pos_conv_embed.conv.parametrizations.weight.original0"]
    assert magnitude.shape == (1, 1, POS_KERNEL)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "hubert.pt"
    torch.save({"cfg": {"model": {}, "task": {}}, "model": fairseq_state_dict("group_post_ln")}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="hubert.pt"):
        load_fairseq_checkpoint(path)


def test_file_without_model(tmp_path: Path) -> None:
    path = tmp_path / "not_hubert.pt"
    torch.save({"cfg": {"model": {}, "task": {}}}, path)
    with pytest.raises(CheckpointError, match=r"not_hubert\.pt.*'model'"):
        load_fairseq_checkpoint(path)


def test_file_with_foreign_code(tmp_path: Path) -> None:
    path = tmp_path / "pickled_code.pt"
    torch.save({"model": {}, "cfg": {"model": {}, "task": {}}, "hook": Path("x")}, path)
    with pytest.raises(CheckpointError, match=r"(?s)pickled_code\.pt.*pathlib"):
        load_fairseq_checkpoint(path)


def transformers_hub_layout(model: HubertModel) -> dict[str, torch.Tensor]:
    """A HubertModel state dict as an old task checkpoint stores it: `hubert.` prefix,
    weight_g/weight_v names, and a CTC head."""
    sd = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        sd["hubert." + key.replace("parametrizations.weight.original1", "weight_v")] = value
    sd["lm_head.weight"], sd["lm_head.bias"] = torch.zeros(5, DIM), torch.zeros(5)
    return sd


def test_normalize_transformers_state_dict() -> None:
    config = hf_config("layer_pre_ln")
    source = HubertModel(HubertConfig(**config))
    normalized = normalize_transformers_state_dict(transformers_hub_layout(source), expected_shapes(config))
    target = HubertModel(HubertConfig(**config))
    target.load_state_dict(normalized, strict=True)
    assert all(torch.equal(value, normalized[key]) for key, value in target.state_dict().items())
    assert "masked_spec_embed" in normalized


def test_normalize_rejects_unknown_keys() -> None:
    sd = transformers_hub_layout(HubertModel(HubertConfig(**hf_config("group_post_ln"))))
    sd["hubert.encoder.adapter.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"hubert\.encoder\.adapter\.weight"):
        normalize_transformers_state_dict(sd)
