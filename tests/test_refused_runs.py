"""A refused new `zoo pretrain` run leaves its output folder as it was: absent, empty, or
holding only what it held (`zoo.run_folders.undone_if_refused`, around every `zoo pretrain` command).

Before, a run recorded its input files (inputs.json) and then checked its batches, corruption
and teacher settings, and `train_and_save` wrote args.json before the trainer moved the model to
its device: each refusal after those writes left a folder where nothing had trained (GMML:
inputs.json after a --batch-size larger than the folder or a --drop-perc of 2; HuBERT and MERT:
inputs.json after too many --clusters; every family: args.json after a device it cannot use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import shared_path
from zoo.cli import main
from zoo.run_folders import LOG_FILE, undone_if_refused

#: a tiny GMML ViT on 32-pixel crops
TINY_GMML = ["--set", "image_size=32", "--set", "patch_size=8", "--set", "depth=2", "--set", "hidden_size=24",
             "--set", "num_heads=3", "--steps", "1", "--no-progress"]
#: a device torch has on no Linux machine, which the trainer refuses when it moves the model
UNUSABLE_DEVICE = ["--device", "mps"]


@pytest.fixture
def image_folder(tmp_path):
    """Three 36 x 36 RGB PNGs."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, (36, 36, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


@pytest.fixture
def wav_folder(tmp_path):
    """Four FSDD recordings (about 1.5 s of speech in all)."""
    recordings = shared_path("data", "fsdd", "recordings")
    folder = tmp_path / "wavs"
    folder.mkdir()
    for digit in range(4):
        (folder / f"{digit}_george_10.wav").write_bytes((recordings / f"{digit}_george_10.wav").read_bytes())
    return folder


@pytest.fixture
def no_mps():
    if torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device, so --device mps is no refusal here")


def refused(argv: list[str], capsys, message: str) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    (["--batch-size", "8"], "holds 3 images, fewer than --batch-size 8"),
    (["--drop-perc", "2"], "drop_perc=2.0; use a share of pixels in (0, 1)"),
    (["--set", "in_channels=4"], "in_channels=4: zoo pretrain gmml reads grey or colour images"),
])
def test_a_refused_gmml_run_writes_nothing(tmp_path, image_folder, capsys, setting, message):
    out = tmp_path / "runs" / "first"
    refused(["pretrain", "gmml", "--data", str(image_folder), "-o", str(out), "--batch-size", "2", *TINY_GMML,
             *setting], capsys, message)
    assert not (tmp_path / "runs").exists()  # was runs/first/inputs.json for the batch size and drop_perc


def test_a_refused_run_leaves_an_existing_folder_as_it_was(tmp_path, image_folder, capsys, no_mps):
    empty, busy = tmp_path / "empty", tmp_path / "busy"
    empty.mkdir()
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for out in (empty, busy):
        refused(["pretrain", "gmml", "--data", str(image_folder), "-o", str(out), "--batch-size", "2", *TINY_GMML,
                 *UNUSABLE_DEVICE], capsys, "cannot move the model to device='mps'")
    assert list(empty.iterdir()) == []  # was args.json and inputs.json
    assert [path.name for path in busy.iterdir()] == ["notes.txt"] and (busy / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("family", ["hubert", "mert"])
def test_a_refused_audio_run_writes_nothing_after_listing_its_recordings(tmp_path, wav_folder, capsys, family):
    out = tmp_path / "run"
    refused(["pretrain", family, "--data", str(wav_folder), "-o", str(out), "--steps", "1", "--no-progress",
             "--clusters", "1000"], capsys, "cannot make 1000 clusters")
    assert not out.exists()  # was run/inputs.json


@pytest.mark.parametrize("family", ["hubert", "mert", "beats"])
def test_a_run_refused_by_its_device_writes_nothing(tmp_path, wav_folder, capsys, family, no_mps):
    out = tmp_path / "run"
    refused(["pretrain", family, "--data", str(wav_folder), "-o", str(out), "--steps", "1", "--no-progress",
             "--clusters", "4", *UNUSABLE_DEVICE] if family != "beats" else
            ["pretrain", family, "--data", str(wav_folder), "-o", str(out), "--steps", "1", "--no-progress",
             *UNUSABLE_DEVICE], capsys, "cannot move the model to device='mps'")
    assert not out.exists()  # was run/inputs.json and run/args.json


def test_a_refused_tjepa_run_writes_nothing(tmp_path, capsys, no_mps):
    table = tmp_path / "table.csv"
    values = np.random.default_rng(0).normal(size=(100, 6)).round(3)
    table.write_text("a,b,c,d,e,f\n" + "".join(",".join(map(str, row)) + "\n" for row in values))
    out = tmp_path / "run"
    refused(["pretrain", "tjepa", "--table", str(table), "-o", str(out), "--epochs", "1", "--no-progress",
             *UNUSABLE_DEVICE], capsys, "cannot move the model to device='mps'")
    assert not out.exists()  # was run/args.json


@pytest.mark.parametrize("family, dataset, folder", [("graphmae", "mutag", "tu"), ("paretognn", "cora", "planetoid")])
def test_a_refused_graph_run_writes_nothing(tmp_path, capsys, family, dataset, folder, no_mps):
    out = tmp_path / "run"
    refused(["pretrain", family, "--dataset", dataset, "--data", str(shared_path("data", folder)), "-o", str(out),
             "--no-progress", *UNUSABLE_DEVICE], capsys, "cannot move the model to device='mps'")
    assert not out.exists()  # was run/args.json


@pytest.mark.parametrize("family, setting, message", [
    ("hubert", ["--steps", "2", "--warmup-steps", "50"],
     "warmup_steps=50 must lie in [0, steps=2]; train for more steps or warm up for fewer "
     "(--steps N or --warmup-steps N)"),
    ("beats", ["--bf16"],
     "bf16=True is autocast for CUDA devices, not device='cpu'; train without it on CPU (drop --bf16)"),
    ("paretognn", ["--steps", "2"],  # the recipe's 10 warmup steps
     "warmup_steps=10 must lie in [0, steps=2]; train for more steps or warm up for fewer (--steps N or "
     "--set warmup_steps=N)"),
    ("tjepa", ["--bf16"], "train without it on CPU (drop --bf16)"),
])
def test_a_training_setting_is_refused_naming_the_recipes_option(tmp_path, wav_folder, capsys, family, setting,
                                                                 message):
    """Each recipe's own spelling of the field: every refusal said `--set warmup_steps=N`, which HuBERT's --set
    refuses ("unknown config fields"), and "drop bf16", whose option is --bf16."""
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n3,5\n")
    data = {"hubert": ["--data", str(wav_folder)], "beats": ["--data", str(wav_folder)],
            "tjepa": ["--table", str(table)],
            "paretognn": ["--dataset", "cora", "--data", str(shared_path("data", "planetoid"))]}[family]
    out = tmp_path / "run"
    refused(["pretrain", family, *data, "-o", str(out), "--no-progress", *setting], capsys, message)
    assert not out.exists()


def test_a_resumed_runs_refusal_leaves_its_files(tmp_path, image_folder, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "gmml", "--data", str(image_folder), "-o", str(out), "--batch-size", "2",
                 *TINY_GMML]) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    refused(["pretrain", "gmml", "--data", str(image_folder), "-o", str(out), "--batch-size", "3", *TINY_GMML],
            capsys, "cannot resume")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_undone_if_refused_removes_only_what_the_block_made(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(ValueError), undone_if_refused(out):
        out.mkdir(parents=True)
        (out / "inputs.json").write_text("{}")
        raise ValueError("refused")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError), undone_if_refused(out):
        out.mkdir(parents=True)
        (tmp_path / "a" / "other_run").mkdir()  # begun beside it meanwhile: its parent stays
        raise ValueError("refused")
    assert [path.name for path in (tmp_path / "a").iterdir()] == ["other_run"]
    out.mkdir(parents=True)
    (out / "kept.txt").write_text("")
    with pytest.raises(ValueError), undone_if_refused(out):
        (out / "labels").mkdir()
        (out / "args.json").write_text("{}")
        raise ValueError("refused")
    assert [path.name for path in out.iterdir()] == ["kept.txt"]


def test_a_run_that_logged_a_step_keeps_its_files(tmp_path):
    """A failure after the run logged a step (a NaN loss, a broken file met mid-run) is no refusal
    of the run's setup: its log and settings stay for a look and a restart. One in the first batch
    (graphs of another width than the encoder's) left args.json and an empty log where nothing had
    trained."""
    out = tmp_path / "run"
    with pytest.raises(ValueError), undone_if_refused(out):
        out.mkdir()
        (out / "args.json").write_text("{}")
        (out / LOG_FILE).write_text("")
        raise ValueError("input 0: graph has 1433 node features but this encoder was trained on 7")
    assert not out.exists()
    with pytest.raises(ValueError), undone_if_refused(out):
        out.mkdir()
        (out / "args.json").write_text("{}")
        (out / LOG_FILE).write_text('{"step": 1, "loss": 0.5}\n')
        raise ValueError("the loss is nan at step 2")
    assert sorted(path.name for path in out.iterdir()) == ["args.json", LOG_FILE]


def test_the_outermost_missing_folder_is_found(tmp_path):
    from zoo.run_folders import outermost_missing

    assert outermost_missing(tmp_path) is None
    assert outermost_missing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    assert outermost_missing(Path(tmp_path / "a")) == tmp_path / "a"


def test_a_finetune_failing_on_its_first_batch_writes_nothing(tmp_path, capsys):
    """Cora's graph given to an encoder of MUTAG's 7 features failed in its first batch and left
    args.json and an empty log.jsonl in the output folder."""
    out = tmp_path / "run"
    refused(["finetune", "graphmae-mutag", "--dataset", "cora", "--data", str(shared_path("data", "planetoid")),
             "-o", str(out), "--epochs", "1"], capsys, "graph has 1433 node features but this encoder was trained on 7")
    assert not out.exists()
