"""Official BEATs files -> zoo checkpoints: `zoo convert`, auto-conversion on first load
(offline, from the zoo's download cache), and the errors for files that are not BEATs."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
import zoo
from helpers import shared_path
from zoo import hub
from zoo.cli import main
from zoo.errors import CheckpointError, OfflineError

GOLDEN_URL = "https://example.org/share/BEATs/beats_tiny_finetuned.pt?sig=abc"


def golden_file(name: str):
    return shared_path("golden", "beats", f"beats_tiny_{name}.pt")


def test_zoo_convert_writes_a_folder_that_reloads_identically(tmp_path, capsys):
    for kind in ("pretrained", "finetuned", "tokenizer"):
        out = tmp_path / kind
        assert main(["convert", "beats", str(golden_file(kind)), str(out)]) == 0
        assert "reload verified" in capsys.readouterr().err  # a message, as embed's "wrote"
        model = zoo.load(out)
        encoder = getattr(model, "encoder", model)
        assert type(encoder).__name__ == "BEATsEncoder" and encoder.config.encoder_layers == 2
        assert json.loads((out / "preprocessor_config.json").read_text())["min_samples"] == 2800
    assert zoo.load(tmp_path / "finetuned").labels[:2] == ["/m/0gold00", "/m/0gold01"]
    assert zoo.load(tmp_path / "tokenizer").config.codebook_size == 512


def url_entry(tmp_path, sha256=None, params=None) -> str:
    entry = {"name": "beats-url-test", "family": "beats", "modality": "audio", "description": "test",
             "format": "official", "upstream": {"url": GOLDEN_URL, "format": "official", "sha256": sha256},
             "params": params}
    path = tmp_path / "beats-url-test.json"
    path.write_text(json.dumps(entry))
    zoo.add_model_config(path)
    return entry["name"]


def test_unpinned_upstream_file_converts_on_first_load_and_logs_its_digest(offline_cache, tmp_path, caplog):
    name = url_entry(tmp_path)
    with pytest.raises(OfflineError, match=r"example.org/share/BEATs/beats_tiny_finetuned.pt.*unpinned"):
        zoo.load(name, cache_dir=offline_cache)
    target = hub.zoo_cache_root() / "downloads" / "unpinned" / "beats_tiny_finetuned.pt"
    target.parent.mkdir(parents=True)
    shutil.copyfile(golden_file("finetuned"), target)
    digest = hub.file_sha256(target)
    with caplog.at_level("WARNING", logger="zoo.hub"):
        tagger = zoo.load(name, cache_dir=offline_cache)
    assert digest in caplog.text and "pins no digest" in caplog.text
    assert (hub.zoo_cache_root() / "converted" / name / digest[:16] / "model.safetensors").is_file()
    assert len(tagger.labels) == 10 and not tagger.training


def test_an_unpinned_file_of_another_size_is_refused(offline_cache, tmp_path):
    """The tiny golden file placed where beats-iter3's download is looked for loaded as beats-iter3
    (241,848 parameters for the 90,311,792 its hub_config and `zoo info` state)."""
    name = url_entry(tmp_path, params=90_311_792)
    target = hub.zoo_cache_root() / "downloads" / "unpinned" / "beats_tiny_finetuned.pt"
    target.parent.mkdir(parents=True)
    shutil.copyfile(golden_file("finetuned"), target)
    with pytest.raises(CheckpointError, match=r"converts to an encoder of [\d,]+ parameters, but 'beats-url-test' "
                                              r"has 90,311,792: it is another checkpoint's file"):
        zoo.load(name, cache_dir=offline_cache)
    assert not (hub.zoo_cache_root() / "converted" / name).exists()


def test_pinned_digest_is_checked(offline_cache, tmp_path):
    name = url_entry(tmp_path, sha256="0" * 64)
    target = hub.zoo_cache_root() / "downloads" / ("0" * 64) / "beats_tiny_finetuned.pt"
    target.parent.mkdir(parents=True)
    shutil.copyfile(golden_file("finetuned"), target)
    with pytest.raises(CheckpointError, match="expected 0000"):
        zoo.load(name, cache_dir=offline_cache)


def test_files_that_are_not_beats_are_refused(tmp_path):
    from modalities.audio.beats.convert import encoder_from_official

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*garbage.pt"):
        encoder_from_official(garbage)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"is not an official BEATs checkpoint \{'cfg', 'model'\}: it holds keys "
                                              r"\['state_dict'\]$"):
        encoder_from_official(tmp_path / "other.pt")
    torch.save({f"layer{index:02d}.weight": torch.zeros(1) for index in range(51)}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match=r"it holds keys \['layer00.weight', .*'layer07.weight'\] and 43 more$"):
        encoder_from_official(tmp_path / "state.pt")  # all 51 keys came before what was wrong
    torch.save({"SiT_model": {}, "args": argparse.Namespace(model="vit_tiny")}, tmp_path / "gmml.pth")
    with pytest.raises(CheckpointError, match=r"gmml.pth' is not an official BEATs checkpoint: it pickles "
                                              r"argparse.Namespace.*GMML training checkpoints \(zoo convert gmml\)"):
        encoder_from_official(tmp_path / "gmml.pth")  # was: corrupt or incomplete, download it again
    checkpoint = torch.load(golden_file("pretrained"), weights_only=True)
    checkpoint["model"]["encoder.layers.0.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="cannot place.*extra.weight"):
        encoder_from_official(tmp_path / "extra.pt")
    checkpoint = torch.load(golden_file("pretrained"), weights_only=True)
    checkpoint["model"]["encoder.layers.1.self_attn.relative_attention_bias.weight"] += 1
    torch.save(checkpoint, tmp_path / "unshared.pt")
    with pytest.raises(CheckpointError, match="shares one relative-bias table"):
        encoder_from_official(tmp_path / "unshared.pt")
    checkpoint = torch.load(golden_file("pretrained"), weights_only=True)
    checkpoint["cfg"]["encoder_layers"] = 3
    torch.save(checkpoint, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not match its own cfg: missing.*layers.2"):
        encoder_from_official(tmp_path / "mismatch.pt")


def test_missing_cfg_keys_take_upstream_class_defaults():
    from modalities.audio.beats.convert import config_from_official

    config = config_from_official({"input_patch_size": 16}, tokenizer=False)
    assert config.max_distance == 1280 and not config.relative_position_embedding and not config.gru_rel_pos
    assert not config.deep_norm and config.dropout == 0.1 and config.codebook_size == 0
    tokenizer = config_from_official({"input_patch_size": 16}, tokenizer=True)
    assert (tokenizer.codebook_size, tokenizer.codebook_dim) == (1024, 256)
    with pytest.raises(CheckpointError, match="layer_norm_first=True"):
        config_from_official({"input_patch_size": 16, "layer_norm_first": True}, tokenizer=False)


def test_every_release_has_a_hub_config_with_its_official_url():
    names = [name for name in zoo.list_models("beats-*") if zoo.info(name)["upstream"]]
    assert len(names) == 19
    for name in names:
        info = zoo.info(name)
        assert info["license"] == "mit" and info["upstream"]["format"] == "official"
        assert info["upstream"]["url"].startswith("https://msranlcmtteamdrive.blob.core.windows.net/share/BEATs/")
    assert sum("tokenizer" in name for name in names) == 4 and sum("-ft-as2m-" in name for name in names) == 10


def test_audioset_ids_map_to_ontology_names():
    from modalities.audio.beats.convert import audioset_names
    from modalities.audio.beats.labels import audioset_display_names

    names = audioset_display_names()
    assert len(names) == 632
    assert names["/m/09x0r"] == "Speech" and names["/m/05zppz"] == "Male speech, man speaking"
    assert audioset_names({0: "/m/04rlf", 1: "/m/unknown"}, 2) == ["Music", "/m/unknown"]
    with pytest.raises(CheckpointError, match="expected 0..2"):
        audioset_names({0: "/m/04rlf", 2: "/m/09x0r"}, 3)
