"""`zoo convert gmml`: the three upstream layouts, format detection, `--set`, and clear errors."""

from __future__ import annotations

import argparse
import fractions
import os

import pytest
import torch
from helpers import shared_path

import zoo
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def folder():
    return shared_path("golden", "gmml")


@pytest.fixture
def tiny_state():
    """A random DINO-layout backbone: width 24 (3 heads must be given), 2 blocks, patch 4, 8 x 8 grid."""
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    torch.manual_seed(0)
    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=2, num_heads=3))
    return {key.removeprefix("backbone."): value for key, value in encoder.state_dict().items()}


def test_cli_converts_the_training_checkpoint_and_zoo_load_reads_it(folder, tmp_path, capsys):
    assert main(["convert", "gmml", str(folder / "gmml_tiny_checkpoint.pth"), str(tmp_path / "out")]) == 0
    assert "reload verified" in capsys.readouterr().err  # a message, as embed's "wrote"
    encoder = zoo.load(tmp_path / "out")
    assert type(encoder).__name__ == "GmmlEncoder" and encoder.config.reconstruction_head
    assert (encoder.config.hidden_size, encoder.config.num_heads, encoder.config.depth) == (24, 3, 12)
    assert encoder.processor.crop_size == 224 and encoder.processor.resize_size == 256
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]


def test_set_may_not_contradict_what_the_checkpoint_states(folder, tmp_path, capsys):
    """Its args say vit_tiny (3 heads) and blocks 6-8-10-12: `--set num_heads=6` converted and
    reported "reload verified", with attention split otherwise than in training; `--set in_channels=1`
    failed as a shape mismatch that blamed the file."""
    upstream = str(folder / "gmml_tiny_checkpoint.pth")
    assert main(["convert", "gmml", upstream, str(tmp_path / "a"), "--set", "num_heads=6"]) == 2
    assert "--set num_heads=6 (its args say 3) contradicts the checkpoint" in capsys.readouterr().err
    assert main(["convert", "gmml", upstream, str(tmp_path / "d"), "--set", "in_channels=1"]) == 2
    assert "--set in_channels=1 (its weights say 3) contradicts" in capsys.readouterr().err  # was blamed on the file
    assert main(["convert", "gmml", upstream, str(tmp_path / "b"), "--set", "recons_blocks=[12]"]) == 2
    assert "recons_blocks=[12] (its args say (6, 8, 10, 12))" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "f.txt").write_text("a file")  # was FileExistsError's traceback, after converting
    assert main(["convert", "gmml", upstream, str(tmp_path / "f.txt" / "out")]) == 2
    assert "cannot write a checkpoint in" in capsys.readouterr().err
    assert main(["convert", "gmml", upstream, str(tmp_path / "c"), "--set", "num_heads=3",
                 "--set", "recons_blocks=[6, 8, 10, 12]", "--set", "pool=cls"]) == 0  # agreeing values pass


def test_dino_layout_needs_heads_and_takes_them_from_set(folder, tmp_path, capsys):
    upstream = str(folder / "gmml_tiny_backbone_dino_layout.pth")
    assert main(["convert", "gmml", upstream, str(tmp_path / "out")]) == 2
    assert "--set num_heads=N" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["convert", "gmml", upstream, str(tmp_path / "out"), "--set", "num_heads=3",
                 "--set", "pool=mean"]) == 0
    encoder = zoo.load(tmp_path / "out")
    assert encoder.config.num_heads == 3 and encoder.config.pool == "mean"
    assert not encoder.config.reconstruction_head
    assert main(["convert", "gmml", upstream, str(tmp_path / "x"), "--set", "heads=3"]) == 2
    assert "unknown settings ['heads']" in capsys.readouterr().err


def test_formats_are_detected_and_can_be_forced(folder):
    from modalities.vision.gmml.convert import detect_format, read_checkpoint

    assert detect_format(read_checkpoint(folder / "gmml_tiny_checkpoint.pth")) == "gmml"
    assert detect_format(read_checkpoint(folder / "gmml_tiny_backbone_dino_layout.pth")) == "dino"
    assert detect_format({"cls_token": torch.zeros(1), "head.weight": torch.zeros(1)}) == "timm"
    with pytest.raises(CheckpointError, match="not a GMML training checkpoint"):
        zoo.registry.get_family("gmml").converters["gmml"](folder / "gmml_tiny_backbone_dino_layout.pth")


def test_timm_layout_with_classifier_drops_it_with_a_warning(tiny_state, tmp_path):
    from safetensors.torch import save_file

    from modalities.vision.gmml.convert import CONVERTERS

    state = {**tiny_state, "head.weight": torch.randn(10, 24), "head.bias": torch.zeros(10)}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.warns(UserWarning, match=r"dropped \['head.bias \(10,\)', 'head.weight \(10, 24\)'\].*classifier"):
        encoder = CONVERTERS["auto"](tmp_path / "model.safetensors", num_heads=3)
    assert (encoder.config.image_size, encoder.config.patch_size, encoder.config.depth) == (32, 4, 2)
    for key, value in tiny_state.items():
        assert torch.equal(encoder.state_dict()[f"backbone.{key}"], value)


def test_timm_layout_warns_of_its_normalisation_and_takes_processor_settings(tiny_state, tmp_path, capsys):
    """A timm ViT state dict does not say how its images were normalised: timm's own
    vit_*_patch16_224 weights expect mean = std = 0.5 and a 0.9 crop, and converted silently with
    ImageNet's mean / std (pixel values up to 1.25 off); `--set image_mean=...` was refused."""
    from modalities.vision.gmml.convert import CONVERTERS

    torch.save({**tiny_state, "head.weight": torch.randn(10, 24), "head.bias": torch.zeros(10)}, tmp_path / "t.pth")
    with pytest.warns(UserWarning, match=r"does not say how its images were normalised.*image_mean=\[0.5, 0.5, 0.5\]"):
        encoder = CONVERTERS["auto"](tmp_path / "t.pth", num_heads=3)
    assert encoder.processor.image_mean == (0.485, 0.456, 0.406)
    upstream, out = str(tmp_path / "t.pth"), str(tmp_path / "out")
    with pytest.warns(UserWarning, match="dropped") as caught:
        assert main(["convert", "gmml", upstream, out, "--set", "num_heads=3", "--set", "image_mean=[0.5, 0.5, 0.5]",
                     "--set", "image_std=[0.5, 0.5, 0.5]", "--set", "resize_size=36", "--set", "crop_size=32"]) == 0
        assert main(["convert", "gmml", upstream, str(tmp_path / "x"), "--set", "num_heads=3", "--set", "mean=1"]) == 2
    assert not [warning for warning in caught if "normalised" in str(warning.message)]
    processor = zoo.load(out).processor
    assert (processor.image_mean, processor.image_std) == ((0.5,) * 3, (0.5,) * 3)
    assert (processor.resize_size, processor.crop_size) == (36, 32)
    assert "unknown settings ['mean']" in capsys.readouterr().err


def test_half_precision_weights_are_read_as_float32(tiny_state, tmp_path):
    from modalities.vision.gmml.convert import CONVERTERS

    torch.save({key: value.half() for key, value in tiny_state.items()}, tmp_path / "half.pth")
    encoder = CONVERTERS["dino"](tmp_path / "half.pth", num_heads=3)
    assert encoder.dtype == torch.float32


def test_unknown_and_missing_keys_are_listed(tiny_state, tmp_path):
    from modalities.vision.gmml.convert import CONVERTERS

    torch.save({**tiny_state, "reg_token": torch.zeros(1, 4, 24), "fc_norm.weight": torch.ones(24)}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"2 keys .*\['reg_token', 'fc_norm.weight'\].*--format"):
        CONVERTERS["auto"](tmp_path / "a.pth", num_heads=3)
    del tiny_state["blocks.1.mlp.fc2.bias"]
    torch.save(tiny_state, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"missing \['backbone.blocks.1.mlp.fc2.bias'\]"):
        CONVERTERS["auto"](tmp_path / "b.pth", num_heads=3)
    del tiny_state["pos_embed"]
    torch.save(tiny_state, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="no 'backbone.pos_embed'"):
        CONVERTERS["auto"](tmp_path / "c.pth", num_heads=3)


def test_mismatched_shapes_and_heads_are_refused(tiny_state, tmp_path):
    from modalities.vision.gmml.convert import CONVERTERS

    tiny_state["blocks.1.attn.proj.weight"] = torch.zeros(24, 12)
    torch.save(tiny_state, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"wrong shapes \['backbone.blocks.1.attn.proj.weight: \(24, 12\)"):
        CONVERTERS["auto"](tmp_path / "a.pth", num_heads=3)
    with pytest.raises(ConfigError, match="hidden_size 24 is not divisible by num_heads 5"):
        CONVERTERS["auto"](tmp_path / "a.pth", num_heads=5)


def test_reconstruction_head_with_other_patches_is_refused(folder, tmp_path):
    from modalities.vision.gmml.convert import CONVERTERS, read_checkpoint

    checkpoint = read_checkpoint(folder / "gmml_tiny_checkpoint.pth")
    model = checkpoint["SiT_model"]
    model["module.head_recons.convTrans.weight"] = torch.zeros(24, 3, 8, 8)
    torch.save({"SiT_model": model, "args": checkpoint["args"]}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="paints 8-pixel patches but the backbone cuts 16-pixel"):
        CONVERTERS["auto"](tmp_path / "bad.pth")


class RunsCode:
    """What a malicious checkpoint pickles: a call of os.system."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_corrupt_and_foreign_files_raise_checkpoint_errors(tmp_path, capsys):
    from modalities.vision.gmml.convert import CONVERTERS

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth' as a GMML, DINO or timm ViT checkpoint: the file is "
                                              "corrupt"):
        CONVERTERS["auto"](tmp_path / "garbage.pth")
    torch.save({"args": argparse.Namespace(model="vit_tiny"), "SiT_model": {}, "extra": fractions.Fraction(1, 3)},
               tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="pickled.pth' is not a GMML, DINO or timm ViT checkpoint: it pickles "
                                              "fractions.Fraction, which is not unpickled"):
        CONVERTERS["auto"](tmp_path / "pickled.pth")
    torch.save({"SiT_model": {}, "x": RunsCode()}, tmp_path / "system.pth")  # torch: "posix is blocked"
    with pytest.raises(CheckpointError, match=r"system.pth' is not a GMML, DINO or timm ViT checkpoint: it pickles "
                                              r"posix.system, which is not unpickled for such a file \(unpickling runs "
                                              r"code\)\.$"):  # it was "corrupt", with torch's advice
        CONVERTERS["auto"](tmp_path / "system.pth")
    torch.save({"teacher": {"x": torch.zeros(1)}}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match=r"holds \['teacher'\].*--format"):
        CONVERTERS["auto"](tmp_path / "wrapped.pth")
    assert main(["convert", "gmml", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert "missing.pth' does not exist" in capsys.readouterr().err


def test_set_is_refused_by_converters_without_settings(tmp_path, capsys):
    assert main(["convert", "beats", str(tmp_path / "x.pt"), str(tmp_path / "out"), "--set", "a=1"]) == 2
    assert "takes no --set options" in capsys.readouterr().err
