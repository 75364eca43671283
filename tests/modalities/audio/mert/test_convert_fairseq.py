"""MERT's fairseq training checkpoints (`MERT-v1-95M_fairseq.pt`) against the official outputs.

No fairseq MERT file is reachable here, and fairseq does not install on this Python, so
each golden variant (../shared/golden/mert: Hub-layout weights and the outputs of the
official remote code) is written back into the fairseq layout of MERT's training model,
named from its modules (yizhilll/MERT mert_fairseq/models/mert/mert_model.py: the
wav2vec 2.0 `ConvFeatureExtractionModel`, `post_extract_proj`, `layer_norm`,
`encoder.pos_conv.0` with weight norm, `TransformerSentenceEncoderLayer`s, `mask_emb`) and
its config fields (MERT_RVQ-VAE_CQT_95M.yaml), with the pretraining heads a real file
holds: label embeddings, `final_proj`, and the CQT teacher's `fc` and nnAudio kernels.
The official converter (scripts/convert_MERT_HF.py) maps these names to the Hub layout
with the same table as transformers' HuBERT converter. Measured max abs diff against the
official outputs, every hidden state of each item alone, 1 thread: 1.8e-6 (v1-like),
1.4e-6 (stable layer norm), 1.4e-6 (deepnorm), 1.8e-6 (CQT); 0.0 against the same folder
loaded from its Hub layout. Tolerance 2e-5.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import shared_path

import zoo
from modalities.audio.mert.convert import config_from_fairseq, encoder_from_fairseq
from modalities.audio.mert.model import MertEncoderConfig
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError

TOLERANCE = 2e-5
VARIANTS = ("v1_like", "v1_stable_layer_norm", "deepnorm", "cqt")
FINAL_DIM, CLASSES, TEACHER_BINS = 16, 1024, 84
#: training-time fields the converter leaves at the zoo's defaults, as HuBERT's does
DROPOUTS = ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout", "layerdrop")

# Hub (transformers HubertModel) key -> the fairseq MERTModel key of the same tensor
FAIRSEQ_NAMES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_extractor\.conv_layers\.0\.layer_norm\.(weight|bias)", r"feature_extractor.conv_layers.0.2.\1"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"post_extract_proj.\1"),
    (r"encoder\.pos_conv_embed\.conv\.(weight_g|weight_v|bias)", r"encoder.pos_conv.0.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(\w+)_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"masked_spec_embed", "mask_emb"),
]


def fairseq_key(hub_key: str) -> str:
    for pattern, replacement in FAIRSEQ_NAMES:
        if re.fullmatch(pattern, hub_key):
            return re.sub(pattern, replacement, hub_key)
    raise AssertionError(f"no fairseq name for {hub_key}")


def nnaudio_buffers(prefix: str, sample_rate: int, bins: int) -> dict[str, torch.Tensor]:
    """The state dict of nnAudio's CQT as MERT builds it (its kernels are buffers)."""
    from nnAudio.features.cqt import CQT

    cqt = CQT(sr=sample_rate, hop_length=sample_rate // 50, fmin=32.7, n_bins=bins, bins_per_octave=bins // 7,
              filter_scale=1, norm=1, window="hann", center=True, pad_mode="constant", trainable=False,
              output_format="Magnitude", verbose=False)
    return {f"{prefix}.{key}": value for key, value in cqt.state_dict().items()}


def fairseq_cfg(config: dict) -> dict:
    """MERT's fairseq `cfg` for a Hub config.json: model (MERTConfig) and task sections."""
    layers = " + ".join(f"[({d},{k},{s})]" for d, k, s in zip(config["conv_dim"], config["conv_kernel"],
                                                               config["conv_stride"], strict=True))
    model = {
        "_name": "mert", "label_rate": 75, "extractor_mode": "default", "conv_feature_layers": layers,
        "conv_bias": config["conv_bias"], "encoder_layers": config["num_hidden_layers"],
        "encoder_embed_dim": config["hidden_size"], "encoder_ffn_embed_dim": config["intermediate_size"],
        "encoder_attention_heads": config["num_attention_heads"], "conv_pos": config["num_conv_pos_embeddings"],
        "conv_pos_groups": config["num_conv_pos_embedding_groups"], "layer_norm_first": config["do_stable_layer_norm"],
        "deepnorm": config["deepnorm"], "attention_relax": config["attention_relax"],
        "feature_extractor_cqt": config["feature_extractor_cqt"],
        "feature_extractor_cqt_bins": config["feature_extractor_cqt_bins"],
        "audio_cqt_loss_m": True, "audio_cqt_bins": TEACHER_BINS, "final_dim": FINAL_DIM, "untie_final_proj": True,
        "mask_prob": 0.8, "mask_length": 5, "feature_grad_mult": 0.1, "mixture_prob": 0.5,
    }
    task = {"_name": "mert_pretraining", "sample_rate": config["sample_rate"], "normalize": False,
            "label_rate": "${model.label_rate}"}
    return {"model": model, "task": task}


def fairseq_checkpoint(folder: Path) -> dict:
    """A golden Hub folder as the fairseq training checkpoint the official converter reads."""
    config = json.loads((folder / "config.json").read_text())
    hub = torch.load(folder / "pytorch_model.bin", weights_only=True)
    model = {fairseq_key(key): value for key, value in hub.items()}
    hidden, rate = config["hidden_size"], config["sample_rate"]
    model["label_embs_concat"] = torch.randn(CLASSES, FINAL_DIM)
    model["final_proj.weight"], model["final_proj.bias"] = torch.randn(FINAL_DIM, hidden), torch.randn(FINAL_DIM)
    model["encoder_cqt_model.fc.weight"] = torch.randn(TEACHER_BINS, hidden)
    model["encoder_cqt_model.fc.bias"] = torch.randn(TEACHER_BINS)
    model |= nnaudio_buffers("encoder_cqt_model.spec_layer", rate, TEACHER_BINS)
    if config["feature_extractor_cqt"]:
        model |= nnaudio_buffers("feature_extractor_cqt", rate, config["feature_extractor_cqt_bins"])
    return {"args": None, "cfg": fairseq_cfg(config), "model": model, "optimizer_history": [], "extra_state": {}}


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    folder = shared_path("golden", "mert")
    outputs = {variant: load_file(str(folder / variant / "outputs.safetensors")) for variant in VARIANTS}
    return folder, load_file(str(folder / "inputs.safetensors")), outputs


def write_fairseq(golden, variant: str, tmp_path: Path, **edits) -> Path:
    checkpoint = fairseq_checkpoint(golden[0] / variant)
    checkpoint["cfg"]["model"].update(edits)
    path = tmp_path / f"MERT-{variant}_fairseq.pt"
    torch.save(checkpoint, path)
    return path


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("variant", VARIANTS)
def test_fairseq_checkpoint_matches_official(golden, variant, tmp_path):
    folder, inputs, outputs = golden
    encoder = encoder_from_fairseq(write_fairseq(golden, variant, tmp_path))
    assert not encoder.training  # converted in eval mode, as zoo.load gives a model: no dropout on a first call
    hub = zoo.load(folder / variant)
    training_only = {name: getattr(hub.config, name) for name in DROPOUTS}
    assert dataclasses.replace(encoder.config, **training_only) == hub.config
    assert encoder.processor.sampling_rate == hub.processor.sampling_rate and not encoder.processor.do_normalize
    for index, length in enumerate(inputs["lengths"].tolist()):
        with torch.no_grad():
            output = encoder(inputs["input_values"][index : index + 1, :length], output_hidden_states=True)
        for layer, state in enumerate(output.hidden_states):
            assert max_diff(state, outputs[variant][f"alone.{index}.hidden_states.{layer}"]) < TOLERANCE
        assert max_diff(output.last_hidden_state, outputs[variant][f"alone.{index}.last_hidden_state"]) < TOLERANCE


def test_zoo_convert_reads_the_fairseq_file(golden, tmp_path, capsys):
    """`--format fairseq`, or a `.pt` file named: with config.json beside it, the file named is read."""
    upstream = write_fairseq(golden, "deepnorm", tmp_path)
    (tmp_path / "config.json").write_text((golden[0] / "v1_like" / "config.json").read_text())
    assert main(["convert", "mert", str(upstream), str(tmp_path / "out"), "--format", "fairseq"]) == 0
    assert "reload verified" in capsys.readouterr().err  # a message, as embed's "wrote"
    assert main(["convert", "mert", str(upstream), str(tmp_path / "out2")]) == 0
    assert zoo.load(tmp_path / "out").config.deepnorm and zoo.load(tmp_path / "out2").config.deepnorm
    upstream.write_bytes(b"garbage")
    assert main(["convert", "mert", str(upstream), str(tmp_path / "out3")]) == 2
    assert upstream.name in capsys.readouterr().err and not (tmp_path / "out3").exists()


def test_waveform_normalisation_reaches_the_processor(golden, tmp_path):
    """fairseq normalises with `F.layer_norm(wav, wav.shape)` (variance floor 1e-5, not
    transformers' 1e-7): on a quiet recording the two differ by a quarter of its scale."""
    encoder = encoder_from_fairseq(write_fairseq(golden, "v1_like", tmp_path, wav_normalize=True))
    assert encoder.processor.do_normalize
    quiet = 0.003 * torch.randn(24000, generator=torch.Generator().manual_seed(0))
    prepared = encoder.processor.prepare(quiet.numpy(), sampling_rate=24000)
    assert (prepared - torch.nn.functional.layer_norm(quiet, quiet.shape)).abs().max() < 1e-5
    encoder.save_pretrained(tmp_path / "converted")
    assert zoo.load(tmp_path / "converted").processor.normalize_eps == 1e-5
    hub_style = zoo.load(golden[0] / "v1_like").processor  # transformers' Wav2Vec2FeatureExtractor floor
    assert hub_style.normalize_eps == 1e-7


@pytest.mark.parametrize(
    "edits, error, message",
    [
        ({"_name": "hubert"}, CheckpointError, "zoo convert hubert"),
        ({"audio_extract_type": "hstft_conv"}, CheckpointError, "audio_extract_type"),
        ({"do_cnn_feat_stable_layernorm": True}, CheckpointError, "do_cnn_feat_stable_layernorm"),
        ({"deepnorm": "yes"}, CheckpointError, "deepnorm"),
        ({"deepnorm": True, "layer_norm_first": True}, ConfigError, "deepnorm"),
    ],
)
def test_config_refusals(edits, error, message):
    cfg = {"model": {"_name": "mert", **edits}, "task": {}}
    with pytest.raises(error, match=message):
        MertEncoderConfig(**config_from_fairseq(cfg)[0])


def test_config_defaults_and_integer_relax():
    model_config, do_normalize = config_from_fairseq({"model": {"_name": "mert", "attention_relax": 32}, "task": {}})
    assert model_config["attention_relax"] == 32.0 and model_config["sample_rate"] == 16000
    assert model_config["feature_extractor_cqt_bins"] == 84 and not model_config["deepnorm"] and not do_normalize


def test_unknown_keys_are_listed(golden, tmp_path):
    checkpoint = fairseq_checkpoint(golden[0] / "v1_like")
    checkpoint["model"]["encoder.layers.0.ffn_layernorm.weight"] = torch.ones(128)
    del checkpoint["model"]["encoder.layers.1.fc2.bias"]
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"(?s)ffn_layernorm.*encoder\.layers\.1\.feed_forward\.output_dense"):
        encoder_from_fairseq(tmp_path / "bad.pt")
