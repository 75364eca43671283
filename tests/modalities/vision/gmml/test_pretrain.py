"""`zoo pretrain gmml` on tiny ViTs: the loss falls, runs resume exactly, the result loads,
embeds and reconstructs, and bad input is refused with a zoo error."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import zoo
from helpers import ctrl_c_at_step
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError, InputError, ZooError

TINY = ["--set", "image_size=32", "--set", "patch_size=4", "--set", "depth=2", "--set", "hidden_size=24",
        "--set", "num_heads=2", "--threads", "1", "--no-progress", "--seed", "0"]


def write_images(folder, count: int = 12, size: int = 40) -> None:
    """Smooth two-colour gradients: easy to inpaint from the pixels left, so the loss must fall."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)[None, :, None]
    for index in range(count):
        start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = np.broadcast_to(start + (end - start) * ramp, (size, size, 3))
        if index % 2:
            pixels = pixels.transpose(1, 0, 2)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:02d}.png")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    write_images(folder)
    return folder


def run_args(data, out, steps: int, *extra: str) -> list[str]:
    return ["pretrain", "gmml", "--data", str(data), "-o", str(out), "--steps", str(steps), "--batch-size", "8",
            "--checkpoint-every", "5", *TINY, *extra]


def losses(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()]


def test_loss_falls_and_the_encoder_loads_embeds_and_reconstructs(image_folder, tmp_path):
    assert main(run_args(image_folder, tmp_path / "run", 200, "--lr", "2e-3", "--views", "1")) == 0
    curve = losses(tmp_path / "run")
    assert np.mean(curve[-10:]) < 0.7 * np.mean(curve[:10])  # 0.64 from upstream's head init (0.53 from torch's)
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    encoder = zoo.load(tmp_path / "run" / "encoder")
    assert encoder.config.recons_blocks == (1, 2) and encoder.config.reconstruction_head
    embeddings = encoder.embed(str(image_folder), progress=False)
    assert embeddings.shape == (12, 24) and bool(torch.isfinite(embeddings).all())
    batch = encoder.preprocess([str(image_folder / "00.png")])["pixel_values"]
    with torch.no_grad():
        image = encoder.reconstruct(batch)[0]
    std, mean = torch.tensor(encoder.processor.image_std), torch.tensor(encoder.processor.image_mean)
    pixels = ((image * std[:, None, None] + mean[:, None, None]).clamp(0, 1) * 255).byte()
    from PIL import Image

    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / "reconstruction.png")
    assert pixels.shape == (3, 32, 32)


def test_an_interrupted_run_resumes_with_the_same_losses(image_folder, tmp_path, monkeypatch, capsys):
    assert main(run_args(image_folder, tmp_path / "whole", 12)) == 0
    capsys.readouterr()
    with ctrl_c_at_step(monkeypatch, 8):
        assert main(run_args(image_folder, tmp_path / "parts", 12)) == 130  # Ctrl-C: the CLI's exit status for SIGINT
    said = capsys.readouterr().err
    assert f"interrupted during step 9; {tmp_path / 'parts' / 'checkpoint.pt'} holds step 5" in said
    assert "zoo: interrupted; a rerun of the same command continues from the last checkpoint" in said
    assert "Traceback" not in said
    # resumes from the checkpoint of step 5; checkpointing saves memory and changes no step
    assert main(run_args(image_folder, tmp_path / "parts", 12, "--activation-checkpointing", "--variant",
                         "tiny")) == 0  # naming the default variant was refused: "variant: None then, 'tiny' now"
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")
    said = capsys.readouterr().err
    assert f"resuming from {tmp_path / 'parts' / 'checkpoint.pt'} at step 5 of 12 (going on)" in said  # it did not
    assert "from its checkpoint" in said and "random init" not in said  # it said "from a random init" first
    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert records[0]["weight_decay"] == pytest.approx(0.04) and records[-1]["weight_decay"] > 0.35


def test_a_resumed_run_keeps_the_images_it_began_with(image_folder, tmp_path, capsys):
    """An image added to the folder after the run stopped (here a .tga, an ending the folder
    listing took up later) is left out with a warning; the batch settings' image count refused
    the rerun (and a swapped file would have changed its batches silently)."""
    import shutil

    from PIL import Image

    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    assert main(run_args(folder, tmp_path / "whole", 8)) == 0
    assert main(run_args(folder, tmp_path / "sliced", 8, "--time-limit", "0")) == 0
    Image.new("RGB", (40, 40), (200, 30, 90)).save(folder / "late.tga")
    capsys.readouterr()
    assert main(run_args(folder, tmp_path / "sliced", 8)) == 0
    assert losses(tmp_path / "sliced") == losses(tmp_path / "whole")
    assert f"1 file in --data not among the 12 that the run in {str(tmp_path / 'sliced')!r} began with (e.g. " \
           f"{str(folder / 'late.tga')!r}): the resumed run keeps its original files" in capsys.readouterr().err


def test_a_resumed_run_refuses_an_image_it_began_with_that_is_gone(image_folder, tmp_path, capsys):
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    assert main(run_args(folder, tmp_path / "run", 4, "--time-limit", "0")) == 0
    (folder / "03.png").unlink()
    capsys.readouterr()
    assert main(run_args(folder, tmp_path / "run", 4)) == 2
    said = capsys.readouterr().err
    assert f"zoo: error: {str(folder / '03.png')!r}, one of the 12 files the run in {str(tmp_path / 'run')!r} began " \
           "with, no longer exists (1 missing); put the files back" in said


def test_a_time_limited_run_stops_with_its_encoder_and_goes_on(image_folder, tmp_path, capsys):
    """--time-limit 0 stops after one step with a checkpoint and the encoder; reruns continue exactly,
    also with other --workers (each batch's crops are seeded by its number, not by a worker)."""
    assert main(run_args(image_folder, tmp_path / "whole", 6)) == 0
    for step in (1, 2):
        assert main(run_args(image_folder, tmp_path / "sliced", 6, "--time-limit", "0", "--workers", str(step))) == 0
        assert f"time limit reached at step {step} of 6" in capsys.readouterr().err
        assert len(losses(tmp_path / "sliced")) == step
    assert zoo.load(tmp_path / "sliced" / "encoder").embed(str(image_folder), progress=False).shape == (12, 24)
    assert "for 2 of 6 steps (its time limit stopped it" in (tmp_path / "sliced" / "encoder" / "README.md").read_text()
    assert main(run_args(image_folder, tmp_path / "sliced", 6)) == 0
    assert "done: 6 steps" in capsys.readouterr().err
    assert losses(tmp_path / "sliced") == losses(tmp_path / "whole")


def test_the_saved_encoder_has_a_card_of_its_run_with_the_loss_curve(image_folder, tmp_path):
    """`zoo publish RUN` then sends where the weights came from, and the curve beside the card."""
    run = tmp_path / "run"
    assert main(run_args(image_folder, run, 6, "--lr", "1e-3")) == 0
    card = (run / "encoder" / "README.md").read_text()
    first, last = losses(run)[0], losses(run)[-1]
    assert f"Pretrained with `zoo pretrain gmml` (ssl-zoo {zoo.__version__}) for 6 steps in " in card
    assert f"The loss went from {first:.4g} to {last:.4g} (its first and its last step)" in card
    assert "![loss curve](loss.png)" in card
    assert (run / "encoder" / "loss.png").read_bytes() == (run / "loss.png").read_bytes()
    assert "| lr | `0.001` |" in card and "| batch_size | `8` |" in card and "| output |" not in card
    assert "| warmup_steps | `0` |" in card  # left unset, it is the recipe's share of the steps: the value used
    plan = zoo.publish(run, "me/gmml-run", dry_run=True)
    assert "loss.png" in plan and "checkpoint.pt" not in plan and "(the folder's README.md)" in plan


def test_init_goes_on_from_the_weights_a_run_saved(image_folder, tmp_path, capsys):
    """--init starts a new run (fresh AdamW and schedule) from a saved encoder and its head, so
    its loss starts near where the first run's ended, not where a random init starts."""
    first = tmp_path / "first"
    assert main(run_args(image_folder, first, 60, "--lr", "2e-3", "--views", "1")) == 0
    again = ["pretrain", "gmml", "--data", str(image_folder), "-o", str(tmp_path / "again"), "--steps", "10",
             "--batch-size", "8", "--lr", "2e-3", "--views", "1", "--init", str(first / "encoder"),
             "--threads", "1", "--no-progress", "--seed", "0"]
    assert main(again) == 0
    assert f"from {first / 'encoder'}" in capsys.readouterr().err
    fresh, continued = losses(first), losses(tmp_path / "again")
    assert np.mean(continued[:5]) < 0.85 * np.mean(fresh[:5])  # the same batches (seed 0): 0.70 against 0.90
    assert np.mean(continued[:5]) < 1.1 * np.mean(fresh[-5:])  # where the first run ended: 0.72
    assert json.loads((tmp_path / "again" / "args.json").read_text())["init"] == str(first / "encoder")


def test_init_loads_every_weight_and_gives_a_headless_vit_a_head(tmp_path):
    import argparse

    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
    from modalities.vision.gmml.pretrain import initial_encoder
    from modalities.vision.gmml_pretrain_options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data", str(tmp_path), "-o", str(tmp_path / "out"), "--init"]
    config = GmmlConfig(image_size=32, patch_size=4, depth=2, hidden_size=24, num_heads=2)
    for head in (True, False):
        saved = GmmlEncoder(config.replace(reconstruction_head=head, recons_blocks=(1, 2))).half()
        saved.save_pretrained(tmp_path / f"head-{head}")
        encoder = initial_encoder(parser.parse_args(base + [str(tmp_path / f"head-{head}")]))
        assert encoder.config.reconstruction_head and encoder.config.drop_path_rate == 0.1
        assert encoder.config.recons_blocks == (1, 2)
        for name, value in saved.state_dict().items():
            assert torch.equal(encoder.state_dict()[name], value.float()), name
        assert encoder.reconstruction.to_pixels.weight.dtype == torch.float32
    with pytest.raises(ConfigError, match="drop --variant and --set"):
        initial_encoder(parser.parse_args(base + [str(tmp_path / "head-True"), "--set", "depth=3"]))
    with pytest.raises(ZooError, match="not a GmmlEncoder"):
        initial_encoder(parser.parse_args(base + ["tjepa-adult"]))


def test_mismatched_or_corrupt_checkpoints_are_refused(image_folder, tmp_path, capsys):
    assert main(run_args(image_folder, tmp_path / "run", 2)) == 0
    assert main(run_args(image_folder, tmp_path / "run", 4, "--drop-perc", "0.6")) == 2
    assert "drop_perc" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(run_args(image_folder, tmp_path / "run", 2)) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_help_and_a_parquet_run(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(SystemExit):
        main(["pretrain", "gmml", "-h"])
    assert "--drop-perc" in capsys.readouterr().out
    write_images(tmp_path / "png", count=4)
    rows = [{"bytes": path.read_bytes(), "path": path.name} for path in sorted((tmp_path / "png").iterdir())]
    pq.write_table(pa.table({"img": rows, "label": list(range(4))}), tmp_path / "train-00000-of-00001.parquet")
    assert main(run_args(tmp_path / "train-00000-of-00001.parquet", tmp_path / "run", 2, "--batch-size", "2")) == 0
    assert len(losses(tmp_path / "run")) == 2


def test_a_run_resumed_on_other_images_of_the_same_number_is_refused(tmp_path, capsys):
    """`--data` may move between reruns, and the image count was all a resume checked: another
    parquet file of as many images went on training the run on them (losses off by 0.31)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_images(tmp_path / "png", count=8)
    blobs = [path.read_bytes() for path in sorted((tmp_path / "png").iterdir())]
    for name, chosen in (("first", blobs[:4]), ("moved", blobs[:4]), ("other", blobs[4:])):
        pq.write_table(pa.table({"img": [{"bytes": blob, "path": None} for blob in chosen]}),
                       tmp_path / f"{name}.parquet")
    out = tmp_path / "run"
    assert main(run_args(tmp_path / "first.parquet", out, 3, "--batch-size", "2", "--time-limit", "0")) == 0
    capsys.readouterr()
    assert main(run_args(tmp_path / "other.parquet", out, 3, "--batch-size", "2")) == 2
    assert re.search(r"cannot resume .*: its run had other settings \(training_data: '4 images, sha256 \w+' then, "
                     r"'4 images, sha256 \w+' now\)", capsys.readouterr().err)
    assert main(run_args(tmp_path / "moved.parquet", out, 3, "--batch-size", "2")) == 0  # the same images
    assert len(losses(out)) == 3


def test_bad_settings_are_zoo_errors(tmp_path):
    import argparse

    from modalities.vision.gmml.pretrain import CorruptionConfig, encoder_config
    from modalities.vision.gmml_pretrain_options import add_arguments
    from modalities.vision.image_sets import open_images

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data", str(tmp_path), "-o", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="recons_blocks"):
        encoder_config(parser.parse_args(base + ["--set", "depth=2", "--recons-blocks", "6-8"]))
    with pytest.raises(ConfigError, match="--variant 'huge'"):
        encoder_config(parser.parse_args(base + ["--variant", "huge"]))
    assert encoder_config(parser.parse_args(base + ["--variant", "small"])).recons_blocks == (6, 8, 10, 12)
    assert encoder_config(parser.parse_args(base + ["--set", "depth=6", "--set", "recons_blocks=[2,6]"])) \
        .recons_blocks == (2, 6)
    assert encoder_config(parser.parse_args(base + ["--set", "depth=6"])).recons_blocks == (3, 4, 5, 6)
    with pytest.raises(ConfigError, match="drop_perc=1.5"):
        CorruptionConfig(drop_perc=1.5)
    with pytest.raises(InputError, match="holds no image files"):
        open_images(tmp_path)


def test_an_image_folder_split_into_folders_gives_the_split_asked_for(tmp_path):
    """--split was ignored on an image folder: a folder of train/ and test/ pretrained on both."""
    from modalities.vision.image_sets import open_images

    write_images(tmp_path / "split" / "train", count=3)
    write_images(tmp_path / "split" / "test", count=2)
    assert len(open_images(tmp_path / "split")) == 3 and len(open_images(tmp_path / "split", "test")) == 2
    assert len(open_images(tmp_path / "split", "all")) == 5
    with pytest.raises(InputError, match="--split 'val': .* has no val/ folder \\(its split folders: test, train\\)"):
        open_images(tmp_path / "split", "val")
    write_images(tmp_path / "plain", count=2)
    assert len(open_images(tmp_path / "plain")) == 2
    with pytest.raises(InputError, match="--split 'test': .* is not split into folders .* drop --split"):
        open_images(tmp_path / "plain", "test")


def test_checkpoint_error_class_is_used_for_data_settings(image_folder):
    from modalities.vision.gmml.pretrain import GmmlBatches
    from modalities.vision.image_sets import open_images

    images = open_images(image_folder)
    batches = GmmlBatches(images, 4, 32, (0.5,) * 3, (0.5,) * 3, seed=0)
    other = GmmlBatches(images, 4, 32, (0.5,) * 3, (0.5,) * 3, seed=1)
    with pytest.raises(CheckpointError, match="seed: 0 then, 1 now"):
        other.load_state_dict(batches.state_dict())
    first = batches[3]
    assert torch.equal(first["corrupted"], batches[3]["corrupted"])  # a batch is a function of (seed, index)
    assert first["clean"].shape == (8, 3, 32, 32) and first["mask"].shape == (8, 1, 32, 32)


def test_worker_processes_make_the_same_batches_and_leave_the_global_rng_alone(image_folder):
    """The global torch RNG draws the drop-path masks: a DataLoader seeding its workers from it
    made a resumed `--workers 1` run 1.4e-3 away from an uninterrupted one."""
    from modalities.vision.gmml.pretrain import GmmlBatches
    from modalities.vision.image_sets import open_images

    images = open_images(image_folder)
    in_process, in_workers = (iter(GmmlBatches(images, 4, 32, (0.5,) * 3, (0.5,) * 3, workers=workers))
                              for workers in (0, 1))
    for _ in range(2):
        state = torch.get_rng_state()
        assert torch.equal(next(in_process)["corrupted"], next(in_workers)["corrupted"])
        assert torch.equal(torch.get_rng_state(), state)


def test_an_unreadable_image_is_named_from_a_worker_process_too(image_folder, tmp_path, capsys):
    """DataLoader re-raises a worker's error with the worker's traceback as its message; the
    zoo's own message must come through as it does without workers."""
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    (folder / "05.png").write_bytes(b"\x89PNG cut short")
    for workers in ("0", "1"):
        assert main(run_args(folder, tmp_path / f"run{workers}", 2, "--workers", workers)) == 2
        error = capsys.readouterr().err.strip().splitlines()[1:]  # after the run's first line
        assert len(error) == 1 and error[0].startswith("zoo: error: cannot decode image file"), error
        assert "05.png" in error[0] and "remove it" in error[0]
