"""`zoo.load(..., pretrained=False)` and `--random-init SEED`: a checkpoint's architecture and
preprocessing with fresh seeded weights, without reading or downloading its weights."""

import json
import shutil

import numpy as np
import pytest
import soundfile
import torch
from helpers import MICRO_HUBERT, put_in_hf_cache

import zoo
from zoo import registry
from zoo.cli import main
from zoo.errors import CheckpointError, OfflineError

EMBEDDED = [name for name in zoo.list_models() if registry.get_entry(name).embedded]


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", EMBEDDED)
def test_an_embedded_checkpoint_gives_its_architecture_with_seeded_random_weights(name):
    """Seeded, it is exactly the constructor's init (the benchmarks' random-init baselines
    before this option), on the checkpoint's config and processor; never its weights."""
    pretrained = zoo.load(name)
    torch.manual_seed(3)
    fresh = zoo.load(name, pretrained=False)
    torch.manual_seed(3)
    constructed = type(pretrained)(pretrained.config, pretrained.processor)
    assert type(fresh) is type(pretrained) and not fresh.training
    assert fresh.config.to_dict() == pretrained.config.to_dict()
    assert fresh.processor.to_dict() == pretrained.processor.to_dict()
    expected, weights = state_of(constructed), state_of(pretrained)
    assert fresh.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in fresh.state_dict().items())
    floating = [key for key, value in weights.items() if value.is_floating_point() and value.numel() > 1]
    changed = [key for key in floating if not torch.equal(fresh.state_dict()[key], weights[key])]
    assert len(changed) > len(floating) // 2, name


def test_a_folder_without_weights_builds_and_its_weights_file_is_never_read(tmp_path):
    folder = tmp_path / "hubert"
    shutil.copytree(registry.data_folder("checkpoints") / "hubert-tiny-fsdd", folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    encoder = zoo.load(folder, pretrained=False)
    assert encoder.config.to_dict() == zoo.load("hubert-tiny-fsdd").config.to_dict()
    with pytest.raises(CheckpointError, match="model.safetensors .*: the file is corrupt or incomplete"):
        zoo.load(folder)
    (folder / "model.safetensors").unlink()
    assert zoo.load(folder, pretrained=False).embed_dim == 192


def test_a_published_name_builds_offline_from_its_hub_config(offline_cache):
    """Nothing is in the cache and the Hub is off: the hub_config's architecture is enough."""
    encoder = zoo.load("hubert-base-ls960", pretrained=False, cache_dir=offline_cache)
    entry = registry.get_entry("hubert-base-ls960")
    assert sum(p.numel() for p in encoder.parameters()) == entry.params == 94_371_712
    assert encoder.processor.do_normalize is entry.preprocessing["do_normalize"]
    assert not any(offline_cache.iterdir())
    with pytest.raises(OfflineError):
        zoo.load("hubert-base-ls960", cache_dir=offline_cache)


@pytest.mark.parametrize("name", [name for name in zoo.list_models() if name not in EMBEDDED])
def test_every_published_name_builds_its_stated_size_and_preprocessing(name, offline_cache):
    """On the meta device, so that the 1B-parameter HuBERT xlarge costs nothing."""
    entry = registry.get_entry(name)
    with torch.device("meta"):
        encoder = zoo.load(name, pretrained=False, cache_dir=offline_cache)
    assert sum(p.numel() for p in encoder.parameters()) == entry.params
    settings = encoder.processor.to_dict()
    assert {key: settings[key] for key in entry.preprocessing} == entry.preprocessing


def test_a_recipe_without_published_weights_builds_its_architecture():
    entry = registry.get_entry("graphmae-nci1")
    assert not entry.has_weights
    encoder = zoo.load("graphmae-nci1", pretrained=False)
    assert sum(p.numel() for p in encoder.parameters()) == entry.params
    with pytest.raises(CheckpointError, match="no published weights yet"):
        zoo.load("graphmae-nci1")


def test_an_upstream_tagger_name_gives_the_encoder_it_fine_tuned():
    """hub_configs describe encoders; the 527-class head comes only with the upstream file."""
    encoder = zoo.load("beats-iter3-ft-as2m-cpt1", pretrained=False)
    assert isinstance(encoder, zoo.Encoder) and encoder.family == "beats"


def test_a_hub_repo_gives_only_its_config_files(offline_cache, tmp_path):
    """A transformers repo whose cache holds config.json alone: no weights are fetched."""
    from transformers import HubertConfig

    config = {key: list(value) if isinstance(value, tuple) else value for key, value in MICRO_HUBERT.items()}
    HubertConfig(**config).save_pretrained(tmp_path / "repo")
    put_in_hf_cache(offline_cache, "test-org/hubert-config-only", tmp_path / "repo", commit="b" * 40)
    encoder = zoo.load("test-org/hubert-config-only", pretrained=False, cache_dir=offline_cache)
    assert (encoder.embed_dim, encoder.num_layers) == (MICRO_HUBERT["hidden_size"], MICRO_HUBERT["num_hidden_layers"])
    missing = "model.safetensors of Hub repo 'test-org/hubert-config-only' .* is not in the Hugging Face cache"
    with pytest.raises(OfflineError, match=missing):
        zoo.load("test-org/hubert-config-only", cache_dir=offline_cache)


def test_a_head_model_gives_its_encoder_alone(tmp_path):
    classifier = zoo.for_classification(zoo.load("hubert-tiny-fsdd"), labels=["a", "b"])
    classifier.save_pretrained(tmp_path / "clf")
    encoder = zoo.load(tmp_path / "clf", pretrained=False)
    assert isinstance(encoder, zoo.Encoder)
    assert encoder.config.to_dict() == classifier.encoder.config.to_dict()


def test_cli_embed_random_init_is_seeded(tmp_path):
    examples = registry.data_folder("examples") / "vision"
    outputs = {}
    for option in ([], ["--random-init", "0"], ["--random-init", "0"], ["--random-init", "1"]):
        output = tmp_path / f"{len(outputs)}.npy"
        assert main(["embed", "gmml-vit-tiny-cifar10", str(examples), "-o", str(output), *option]) == 0
        outputs[len(outputs)] = np.load(output)
    assert np.array_equal(outputs[1], outputs[2])
    assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[1], outputs[3])


def test_cli_probe_reports_the_random_init_seed(tmp_path, capsys):
    folder = tmp_path / "set"
    rate = 16000
    generator = np.random.default_rng(0)
    for split in ("", "test/"):
        for label, pitch in (("low", 200.0), ("high", 1200.0)):
            (folder / split / label).mkdir(parents=True)
            for index in range(3):
                time = np.arange(rate // 4) / rate
                noise = 0.01 * generator.standard_normal(time.size)
                tone = np.sin(2 * np.pi * pitch * (1 + 0.05 * index) * time) + noise
                soundfile.write(folder / split / label / f"{index}.wav", tone.astype(np.float32), rate)
    assert main(["probe", "hubert-tiny-fsdd", "--data", str(folder), "--k", "2", "--random-init", "7"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "hubert-tiny-fsdd" and report["random_init"] == 7
    assert main(["probe", "hubert-tiny-fsdd", "--data", str(folder), "--k", "2"]) == 0
    assert "random_init" not in json.loads(capsys.readouterr().out)


def test_a_hub_name_at_a_revision_or_without_an_architecture_reads_its_repo_config(offline_cache, tmp_path):
    """The hub_config's architecture is that of its own revision: another revision, or an added
    hub_config that states none, is built from the repo's config files (no weights)."""
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    for commit, width in (("1" * 40, 32), ("2" * 40, 48)):
        config = {**MICRO_HUBERT, "hidden_size": width}
        HubertEncoder(HubertEncoderConfig(**config)).save_pretrained(tmp_path / str(width))
        (tmp_path / str(width) / "model.safetensors").unlink()
        put_in_hf_cache(offline_cache, "test-org/sizes", tmp_path / str(width), commit=commit,
                        refs=("main",) if width == 32 else ("wide",))
    entry = {"name": "sizes-test", "family": "hubert", "modality": "speech", "description": "test",
             "repo_id": "test-org/sizes"}
    (tmp_path / "sizes-test.json").write_text(json.dumps(entry))
    zoo.add_model_config(tmp_path / "sizes-test.json")
    assert zoo.load("sizes-test", pretrained=False, cache_dir=offline_cache).embed_dim == 32
    assert zoo.load("sizes-test", pretrained=False, revision="wide", cache_dir=offline_cache).embed_dim == 48
