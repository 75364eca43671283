"""NaN and infinities never pass unseen: float16's range, weights of a diverged training and
inputs of extreme scale give a zoo error naming the input and the fix, where `embed`, `predict`
and `zoo embed` returned and wrote NaN rows without a word."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Data

import zoo
from modalities.tabular.processing import TableProcessor
from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
from zoo.cli import main
from zoo.embed_job import run_embed_job
from zoo.errors import CheckpointError, ConfigError, InputError

#: a second of a full-scale square wave in int16 counts, passed as float samples: the first conv
#: of a float16 HuBERT overflows float16 (65504) on it
LOUD = (32767 * np.sign(np.sin(np.arange(16000) / 5))).astype(np.float32)


def test_float16_overflow_inside_the_model_is_named_not_returned_as_nan(micro_hubert):
    quiet = LOUD / 32768
    half = micro_hubert.half()
    assert torch.isfinite(half.embed([quiet], sampling_rate=16000, progress=False)).all()
    with pytest.raises(ConfigError, match=r"input 1: the float16 model overflowed inside \(float16 holds at most "
                                          r"65504\) and gave NaN or infinite features; load the model in float32 "
                                          r"or bfloat16"):
        half.embed([quiet, LOUD], sampling_rate=16000, progress=False)
    head = zoo.for_classification(half, labels=["a", "b"])
    with pytest.raises(ConfigError, match="input 0: the float16 model overflowed"):
        head.predict([LOUD], sampling_rate=16000)
    assert torch.isfinite(micro_hubert.float().embed([LOUD], sampling_rate=16000, progress=False)).all()


def test_a_finite_input_beyond_float16s_range_is_refused_for_its_scale_not_as_nan(micro_hubert):
    """The cast to float16 made it infinite, and the input check then said "holds NaN or infinite
    samples; clean the waveforms" of a clean recording."""
    with pytest.raises(ConfigError, match=r"input_values holds values up to 9.83e\+05, beyond float16's range "
                                          r"\(±65504\), so the float16 model would see infinities; load the model "
                                          r"in float32 or bfloat16"):
        micro_hubert.half().embed([LOUD * 30], sampling_rate=16000, progress=False)
    graph = Data(x=torch.full((3, 1433), 1e5), edge_index=torch.tensor([[0, 1], [1, 2]]))
    cora = zoo.load("graphmae-cora", dtype="float16")
    cora.processor.feature_norm = None
    with pytest.raises(ConfigError, match=r"x holds values up to 1e\+05, beyond float16's range"):
        cora.embed(graph, node_batch_size=2, progress=False)


def test_the_nan_rows_of_diverged_weights_are_refused_by_embed_and_zoo_embed(tmp_path, capsys):
    encoder = zoo.load("gmml-vit-tiny-cifar10")
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.mul_(1e29)
    image = np.full((32, 32, 3), 100, np.uint8)
    with pytest.raises(CheckpointError, match=r"input 0: the model gave NaN or infinite features: its weights "
                                              r"reach 1.\d+e\+29, those of a training that diverged; retrain"):
        encoder.embed([image], progress=False)
    encoder.save_pretrained(tmp_path / "diverged")  # finite, so saved and loaded: only its outputs are NaN
    assert main(["embed", str(tmp_path / "diverged"), "zoo/examples/vision", "-o", str(tmp_path / "rows.npy"),
                 "--no-progress"]) == 2
    assert "input 0: the model gave NaN or infinite features" in capsys.readouterr().err
    assert not (tmp_path / "rows.npy").exists()


def test_features_that_overflow_float32_from_sane_weights_name_the_inputs_scale():
    mutag = zoo.load("graphmae-mutag")
    graph = Data(x=torch.full((4, 7), 1e38), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
    with pytest.raises(InputError, match="input 0: the model gave NaN or infinite features from finite inputs, "
                                         "whose scale overflows inside it; scale the inputs down"):
        mutag.embed([graph], progress=False)


def test_nan_weights_are_named_as_the_cause_of_nan_features(micro_hubert):
    with torch.no_grad():
        micro_hubert.model.encoder.layers[0].attention.q_proj.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"input 0: the model's weights hold NaN or infinite values "
                                              r"\(model.encoder.layers.0.attention.q_proj.weight\)"):
        micro_hubert.embed([LOUD / 32768], sampling_rate=16000, progress=False)


def test_weights_holding_nan_are_not_saved_where_load_would_refuse_them(micro_hubert, tmp_path):
    head = zoo.for_classification(micro_hubert, labels=["a", "b"])
    with torch.no_grad():
        head.head.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"cannot save .*clf: the weights hold NaN or infinite values "
                                              r"\(head.weight\), which load refuses"):
        head.save_pretrained(tmp_path / "clf")
    assert not (tmp_path / "clf").exists()


def test_a_nan_row_of_a_table_job_is_named_by_its_row_in_the_table(tmp_path):
    """`zoo embed` and `zoo predict` of a table embed it a shard at a time: the bad row was named by
    its place in its shard (input 0 for row 4 here)."""
    table = pd.DataFrame({"x": [0.5, 1.5, 2.0, 3.0, 1.0], "colour": ["red", "blue", "red", None, "red"]})
    torch.manual_seed(0)
    processor = TableProcessor.fit(table)
    encoder = TJEPAEncoder(TJEPAConfig.for_table(processor, hidden_dim=16, num_layers=2, num_heads=2,
                                                 dim_feedforward=32), processor).eval()
    forward = encoder.forward

    def far_rows_nan(**batch):  # a model that fails on one row, past the first shard
        output = forward(**batch)
        output.last_hidden_state[batch["numeric"][:, 0] > 2] = float("nan")
        return output

    encoder.forward = far_rows_nan
    table.assign(x=[0.5, 1.5, 2.0, 3.0, 9.0]).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(InputError, match="^input 4: the model gave NaN or infinite features"):
        run_embed_job(encoder, [str(tmp_path / "rows.csv")], tmp_path / "rows.npy", shard_size=2, progress=False)


def test_a_batch_tensor_of_images_and_a_heads_scores_are_checked_too(micro_hubert):
    """GMML embeds a (B, C, H, W) tensor on a path of its own, and a head's scores come from
    its own weights: both gave NaN rows or probabilities without a word."""
    encoder = zoo.load("gmml-vit-tiny-cifar10")
    with torch.no_grad():
        encoder.backbone.blocks[0].attn.qkv.weight[0, 0] = float("nan")
    for pool in ("mean", "none"):
        with pytest.raises(CheckpointError, match=r"^input 0: the model's weights hold NaN or infinite values "
                                                  r"\(backbone.blocks.0.attn.qkv.weight\)"):
            encoder.embed(torch.rand(3, 3, 32, 32), pool=pool, batch_size=2, progress=False)
    head = zoo.for_classification(micro_hubert, labels=["a", "b"])
    with torch.no_grad():
        head.head.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"the model's weights hold NaN or infinite values \(head.weight\)"):
        head.predict([LOUD / 32768], sampling_rate=16000)
