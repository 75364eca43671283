"""BEATs' iterations on FSDD: random-projection labels, masked label prediction, tokenizer
distillation and the second iteration, through `zoo pretrain beats` (micro sizes)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import zoo
from helpers import ctrl_c_at_step, shared_path
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError, InputError, UnknownModelError

MICRO = ["--set", "encoder_layers=2", "--set", "encoder_embed_dim=32", "--set", "encoder_ffn_embed_dim=64",
         "--set", "encoder_attention_heads=4", "--set", "embed_dim_patches=48", "--set", "conv_pos=16",
         "--set", "conv_pos_groups=4", "--codebook-size", "64", "--codebook-dim", "16", "--head-layers", "1",
         "--threads", "1", "--no-progress", "--batch-size", "8", "--seed", "0"]


def fsdd_args(tmp_path, name: str, steps: int, *extra: str) -> list[str]:
    data = shared_path("data", "fsdd", "recordings")
    return ["pretrain", "beats", "--data", str(data), "--exclude", "[!01]_*", "--exclude", "*_[0-4].wav",
            "-o", str(tmp_path / name), "--steps", str(steps), "--checkpoint-every", "10", *MICRO, *extra]


def losses(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()]


def test_patch_rows_follow_the_token_order():
    from modalities.audio.beats.pretrain import patch_rows

    fbanks = torch.randn(2, 40, 128)
    rows = patch_rows(fbanks, 16)
    assert rows.shape == (2, 2 * 8, 256)
    assert torch.equal(rows[1, 1 * 8 + 3], fbanks[1, 16:32, 48:64].flatten())


def test_keep_positions_leave_a_quarter_visible():
    from modalities.audio.beats.pretrain import keep_positions

    keep = keep_positions(3, 40, 0.75)
    assert keep.shape == (3, 10)
    assert all(len(row.unique()) == 10 and bool((row.diff() > 0).all()) for row in keep)


def test_three_stages_train_and_chain(tmp_path):
    assert main(fsdd_args(tmp_path, "iter1", 80)) == 0
    first = losses(tmp_path / "iter1")
    assert sum(first[-5:]) / 5 < 0.9 * math.log(64) < sum(first[:5]) / 5  # from chance to well below it
    encoder = zoo.load(tmp_path / "iter1" / "encoder")
    assert encoder.config.encoder_embed_dim == 32 and encoder.config.codebook_size == 0

    assert main(fsdd_args(tmp_path, "tok", 30, "--stage", "tokenizer", "--teacher", str(tmp_path / "iter1"))) == 0
    distill = [json.loads(line) for line in (tmp_path / "tok" / "log.jsonl").read_text().splitlines()]
    assert distill[-1]["cosine"] > distill[0]["cosine"] + 0.1
    tokenizer = zoo.load(tmp_path / "tok" / "tokenizer")
    wave = torch.randn(16000).numpy() * 0.1
    labels = tokenizer.tokenize([wave], sampling_rate=16000)[0]
    assert labels.shape == (8 * 6,) and int(labels.max()) < 64
    assert torch.allclose(tokenizer.codebook.embed.norm(dim=-1), torch.ones(64), atol=1e-5)

    assert main(fsdd_args(tmp_path, "iter2", 30, "--tokenizer", str(tmp_path / "tok"))) == 0
    second = losses(tmp_path / "iter2")
    assert sum(second[-5:]) / 5 < sum(second[:5]) / 5


def test_an_interrupted_stage_resumes_with_the_same_losses(tmp_path, monkeypatch):
    assert main(fsdd_args(tmp_path, "whole", 20)) == 0
    with ctrl_c_at_step(monkeypatch, 13):
        assert main(fsdd_args(tmp_path, "parts", 20)) == 130  # Ctrl-C: the CLI's exit status for SIGINT
    assert main(fsdd_args(tmp_path, "parts", 20)) == 0  # resumes from the checkpoint of step 10
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")


def write_chirps(folder, count: int, suffix: str = ".wav") -> None:
    import numpy as np
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        t = np.arange(int(16000 * rng.uniform(0.4, 0.9))) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (150 + 90 * index) * t * (1 + t)) + 0.02 * rng.normal(size=len(t))
        soundfile.write(folder / f"{index}{suffix}", wave.astype(np.float32), 16000)


def test_a_resumed_stage_keeps_the_recordings_it_began_with(tmp_path, capsys):
    """Recordings a --data folder lists only since the run stopped (here an .aiff, an ending the
    listing took up later) are left out with a warning; they changed its seeded batches silently."""
    write_chirps(tmp_path / "a", 5)
    write_chirps(tmp_path / "b", 4)
    data = ["--data", str(tmp_path / "a"), "--data", str(tmp_path / "b"), "--steps", "4", *MICRO]
    assert main(["pretrain", "beats", *data, "-o", str(tmp_path / "whole")]) == 0
    assert main(["pretrain", "beats", *data, "-o", str(tmp_path / "sliced"), "--time-limit", "0"]) == 0
    write_chirps(tmp_path / "b" / "late", 2, ".aiff")
    capsys.readouterr()
    assert main(["pretrain", "beats", *data, "-o", str(tmp_path / "sliced")]) == 0
    assert losses(tmp_path / "sliced") == losses(tmp_path / "whole")
    assert "2 files in --data not among the 9 that the run in" in capsys.readouterr().err


def test_stage_arguments_are_checked(tmp_path):
    import argparse

    from modalities.audio.beats.pretrain import make_objective
    from modalities.audio.beats_pretrain_options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data", str(tmp_path), "-o", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="pass --teacher"):
        make_objective(parser.parse_args(base + ["--stage", "tokenizer"]))
    with pytest.raises(ConfigError, match="--teacher is for --stage tokenizer"):
        make_objective(parser.parse_args(base + ["--teacher", str(tmp_path)]))
    with pytest.raises(CheckpointError, match="--tokenizer: .* has no config.json, nor a subfolder with one"):
        make_objective(parser.parse_args(base + ["--tokenizer", str(tmp_path)]))
    with pytest.raises(UnknownModelError, match="--tokenizer: .*did you mean 'beats-tiny-tokenizer'"):
        make_objective(parser.parse_args(base + ["--tokenizer", "beats-tiny-tokeniser"]))
    with pytest.raises(InputError, match="holds a BEATsEncoder that is not a BEATs tokenizer"):
        make_objective(parser.parse_args(base + ["--tokenizer", "beats-tiny"]))
    objective, model, folder = make_objective(parser.parse_args(base + ["--tokenizer", "beats-tiny-tokenizer"]))
    assert folder == "encoder" and objective.head.out_features == zoo.load("beats-tiny-tokenizer").config.codebook_size
    objective, model, folder = make_objective(parser.parse_args(base + ["--stage", "tokenizer", "--teacher",
                                                                        "beats-tiny"]))
    assert folder == "tokenizer"



def test_init_goes_on_from_the_embedded_model_of_the_stage(tmp_path):
    """--init: the ssl stage from beats-tiny, the tokenizer stage from beats-tiny-tokenizer
    (float32 copies of their weights); the other kind, or --variant with it, is refused."""
    import argparse

    from modalities.audio.beats.pretrain import make_objective
    from modalities.audio.beats_pretrain_options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data", str(tmp_path), "-o", str(tmp_path / "out"), "--init"]
    for name, stage in (("beats-tiny", []), ("beats-tiny-tokenizer", ["--stage", "tokenizer", "--teacher",
                                                                      "beats-tiny"])):
        _, model, _ = make_objective(parser.parse_args(base + [name, *stage]))
        start = zoo.load(name)
        assert model.config == start.config and model.training
        assert all(torch.equal(value, start.state_dict()[key].float()) and value.dtype == torch.float32
                   for key, value in model.state_dict().items())
    with pytest.raises(InputError, match="'beats-tiny-tokenizer' is not a BEATs encoder, which --stage ssl trains"):
        make_objective(parser.parse_args(base + ["beats-tiny-tokenizer"]))
    with pytest.raises(ConfigError, match="drop --variant and --set"):
        make_objective(parser.parse_args(base + ["beats-tiny", "--variant", "tiny"]))


def test_the_codebook_is_set_by_its_options_not_by_set(tmp_path):
    """`--set codebook_size=` was replaced by --codebook-size's default in the tokenizer stage, and made
    the ssl stage's encoder a tokenizer, refused as "--init None is not a BEATs encoder"."""
    import argparse

    from modalities.audio.beats.pretrain import encoder_config
    from modalities.audio.beats_pretrain_options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for stage in ("ssl", "tokenizer"):
        args = parser.parse_args(["--data", str(tmp_path), "-o", str(tmp_path / "out"), "--stage", stage,
                                  "--set", "codebook_dim=8", "--set", "codebook_size=32"])
        with pytest.raises(ConfigError, match=r"--set codebook_dim=...: the codebook is set by --codebook-dim N "
                                              r"--codebook-size N, in the tokenizer stage"):
            encoder_config(args, stage == "tokenizer")
