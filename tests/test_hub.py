"""Checkpoint I/O through huggingface_hub: populated caches offline, revisions, upstream
files converted once, corrupt or mismatched files, atomic writes."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import soundfile
import torch
from helpers import put_in_hf_cache, transformers_hubert, write_tones

import zoo
from zoo import hub
from zoo.errors import CheckpointError, ConfigError, OfflineError, UnknownModelError

RATE = 16000


def reference_frames(model, wave: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(wave)[None]).last_hidden_state[0]


def test_repo_id_from_populated_cache_offline(offline_cache, tmp_path):
    reference = transformers_hubert(0, tmp_path / "repo")
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "repo", commit="a" * 40)
    encoder = zoo.load("test-org/hubert-micro", cache_dir=offline_cache)
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    tokens = encoder.embed([wave], pool="none", sampling_rate=RATE, progress=False)[0]
    assert (tokens - reference_frames(reference, wave)).abs().max() <= 1e-5


def test_revisions_select_the_snapshot(offline_cache, tmp_path):
    first = transformers_hubert(0, tmp_path / "v1")
    second = transformers_hubert(1, tmp_path / "v2")
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "v1", commit="1" * 40, refs=("v1",))
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "v2", commit="2" * 40, refs=("main",))
    wave = np.random.default_rng(1).standard_normal(6000).astype(np.float32)
    for revision, reference in (("v1", first), ("1" * 40, first), ("main", second), (None, second)):
        encoder = zoo.load("test-org/hubert-micro", revision=revision, cache_dir=offline_cache)
        tokens = encoder.embed([wave], pool="none", sampling_rate=RATE, progress=False)[0]
        assert (tokens - reference_frames(reference, wave)).abs().max() <= 1e-5, revision


def test_a_revision_that_is_a_path_is_refused_before_the_cache_is_read(offline_cache, tmp_path):
    """Offline, huggingface_hub reads the commit of a revision from the file refs/REVISION: a
    revision `../../../x` read a file outside the cache, whose contents a raw ValueError then
    showed. A branch with '/' (a pull request's refs/pr/1) is still a revision."""
    transformers_hubert(0, tmp_path / "v1")
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "v1", commit="1" * 40, refs=("refs/pr/1",))
    for revision in ("../../../evil/ref", "/etc/passwd", "a\\..\\b"):
        with pytest.raises(ConfigError, match=re.escape(f"revision={revision!r} is not a branch, tag or commit")):
            zoo.load("test-org/hubert-micro", revision=revision, cache_dir=offline_cache)
    assert zoo.load("test-org/hubert-micro", revision="refs/pr/1", cache_dir=offline_cache).num_layers == 2


def test_info_reads_a_repo_at_its_revision_without_its_weights(offline_cache, tmp_path, monkeypatch, capsys):
    """`zoo info` of a Hub repo showed main only and downloaded the weights to count them. Its
    snapshots here hold config files alone (no model.safetensors): info still describes each
    revision, head included, with the parameter count `load` gives."""
    from helpers import MICRO_HUBERT
    from huggingface_hub import constants
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    from zoo.cli import main

    counts = {}
    for layers, ref, commit in ((1, "v1", "1" * 40), (2, "main", "2" * 40)):
        encoder = HubertEncoder(HubertEncoderConfig(**{**MICRO_HUBERT, "num_hidden_layers": layers}))
        model = zoo.for_classification(encoder, labels=["a", "b", "c"])
        model.save_pretrained(tmp_path / ref)
        counts[ref] = sum(parameter.numel() for parameter in model.parameters())
        (tmp_path / ref / "model.safetensors").unlink()
        put_in_hf_cache(offline_cache, "test-org/described", tmp_path / ref, commit=commit, refs=(ref,))
    for revision, ref in (("v1", "v1"), ("1" * 40, "v1"), (None, "main")):
        shown = zoo.info("test-org/described", revision=revision, cache_dir=offline_cache)
        assert shown["architecture"]["num_hidden_layers"] == (1 if ref == "v1" else 2), revision
        assert shown["params"] == counts[ref] and shown["head"]["labels"] == ["a", "b", "c"], revision
    with pytest.raises(OfflineError, match="revision 'v2'"):
        zoo.info("test-org/described", revision="v2", cache_dir=offline_cache)
    with pytest.raises(OfflineError, match="model.safetensors of Hub repo 'test-org/described'"):
        zoo.load("test-org/described", cache_dir=offline_cache)  # the weights are indeed not cached
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(offline_cache))
    assert main(["info", "test-org/described", "--revision", "v1"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"]["num_hidden_layers"] == 1


def test_info_of_a_zoo_name_reads_its_hub_repo_at_a_revision(offline_cache, tmp_path, monkeypatch, capsys):
    """`zoo info hubert-base-ls960 --revision v1.0` was refused ("a zoo name, whose hub_config has no
    revisions") while `zoo embed` read v1.0 from the same cache: it describes the snapshot `load`
    reads (the 2-layer, width-32 repo here, not the hub_config's 12 layers). A name read from no
    Hub repo still has no revisions."""
    from huggingface_hub import constants

    from zoo.cli import main

    transformers_hubert(0, tmp_path / "v1")
    put_in_hf_cache(offline_cache, "facebook/hubert-base-ls960", tmp_path / "v1", commit="1" * 40, refs=("v1.0",))
    shown = zoo.info("hubert-base-ls960", revision="v1.0", cache_dir=offline_cache)
    loaded = zoo.load("hubert-base-ls960", revision="v1.0", cache_dir=offline_cache)
    assert (shown["num_layers"], shown["embed_dim"]) == (loaded.num_layers, loaded.embed_dim) == (2, 32)
    assert shown["params"] == sum(parameter.numel() for parameter in loaded.parameters())
    assert shown["preprocessing"] == loaded.processor.to_dict()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(offline_cache))
    assert main(["info", "hubert-base-ls960", "--revision", "v1.0"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == shown["params"]
    with pytest.raises(ConfigError, match="'hubert-tiny-fsdd' is not read from a Hub repo, so it has no revisions"):
        zoo.info("hubert-tiny-fsdd", revision="v1.0")


def test_cli_probe_and_finetune_read_the_revision_asked_for(offline_cache, tmp_path, monkeypatch, capsys):
    """`--revision` of zoo probe and zoo finetune (as of zoo embed) picks the snapshot: v1's probe
    is that of v1's files, and a linear head trains on v1's frozen weights."""
    from huggingface_hub import constants

    from zoo.cli import main

    transformers_hubert(0, tmp_path / "v1")
    transformers_hubert(1, tmp_path / "v2")
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "v1", commit="1" * 40, refs=("v1",))
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "v2", commit="2" * 40, refs=("main",))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(offline_cache))
    write_tones(tmp_path / "tones")
    data = ["--data", str(tmp_path / "tones"), "--label-regex", r"^(\w+)_", "--test-regex", r"_[0-3]\.wav$"]

    def probe(*args: str) -> dict:
        assert main(["probe", *args, *data, "--k", "3"]) == 0
        return json.loads(capsys.readouterr().out)

    at_v1 = probe("test-org/hubert-micro", "--revision", "v1")
    assert at_v1.pop("revision") == "v1" and at_v1.pop("model") == "test-org/hubert-micro"
    assert at_v1 == {key: value for key, value in probe(str(tmp_path / "v1")).items() if key != "model"}
    assert at_v1["rankme"] != probe("test-org/hubert-micro")["rankme"]
    assert main(["finetune", "test-org/hubert-micro", "--revision", "v1", *data, "--mode", "linear", "--epochs", "1",
                 "--batch-size", "4", "--no-progress", "-o", str(tmp_path / "run")]) == 0
    trained = zoo.load(tmp_path / "run" / "classifier").encoder.state_dict()
    assert all(torch.equal(trained[key], value) for key, value in zoo.load(tmp_path / "v1").state_dict().items())


def test_offline_without_cache_names_the_repo_and_the_fix(offline_cache):
    with pytest.raises(OfflineError, match=r"test-org/absent.*hf download test-org/absent"):
        zoo.load("test-org/absent", cache_dir=offline_cache)


def test_a_gated_repo_says_to_accept_its_conditions(offline_cache, monkeypatch):
    """huggingface_hub's GatedRepoError is a RepositoryNotFoundError: a gated repo was said to "not
    exist or be private; check the id". It is named gated, with the page where its conditions are
    accepted and the Hub's own words."""
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants, errors

    said = "Access to model org/gated is restricted. You must have access to it and be authenticated to access it."

    def gated(*args, **kwargs):
        request = httpx2.Request("GET", f"{constants.ENDPOINT}/org/gated/resolve/main/config.json")
        raise errors.GatedRepoError(said, response=httpx2.Response(403, request=request))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(UnknownModelError) as caught:
        zoo.load("org/gated", cache_dir=offline_cache)
    assert (f"Hub repo 'org/gated' is gated: accept its conditions at {constants.ENDPOINT}/org/gated while logged in "
            f"(`hf auth login`, or token=), then load again (the Hub said: {said})") in str(caught.value)
    assert "does not exist" not in str(caught.value)
    assert "local folder" not in str(caught.value)  # the repo is there: no folder was meant


def test_a_missing_revision_of_a_repo_there_is_named_without_the_local_folder_note(offline_cache, monkeypatch):
    """The repo answered, so its name was not a misspelt folder: "...check the branch, tag or commit;
    there is no local folder '/cwd/org/model' either" sent the reader looking for a folder."""
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants, errors

    def no_revision(*args, **kwargs):
        request = httpx2.Request("GET", f"{constants.ENDPOINT}/org/model/resolve/v9/config.json")
        raise errors.RevisionNotFoundError("Invalid rev id: v9", response=httpx2.Response(404, request=request))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_revision)
    with pytest.raises(UnknownModelError, match="Hub repo 'org/model' has no revision 'v9'") as caught:
        zoo.load("org/model", revision="v9", cache_dir=offline_cache)
    assert "local folder" not in str(caught.value)


def test_a_token_goes_with_every_hub_file_and_into_no_message(offline_cache, tmp_path, monkeypatch):
    """load(token=) was refused ("load() takes no token=; ... set HF_TOKEN") though transformers'
    from_pretrained and the zoo's push_to_hub take it. Every file fetched for load, from_pretrained
    or info, of a repo id or a zoo name, goes with it; the next call without one sends None (the
    stored login); an error does not show it."""
    import huggingface_hub
    from modalities.speech.hubert.model import HubertEncoder

    transformers_hubert(0, tmp_path / "repo")
    put_in_hf_cache(offline_cache, "test-org/hubert-micro", tmp_path / "repo", commit="a" * 40)
    entry = {"name": "micro-test-model", "family": "hubert", "modality": "speech", "description": "test",
             "repo_id": "test-org/hubert-micro", "architecture": {}}
    (tmp_path / "micro-test-model.json").write_text(json.dumps(entry))
    zoo.add_model_config(tmp_path / "micro-test-model.json")
    download, sent = huggingface_hub.hf_hub_download, []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda *args, **kwargs: sent.append(kwargs["token"]) or download(*args, **kwargs))
    secret = "hf_TESTsecret0123456789abcdef"
    for call in (lambda: zoo.load("test-org/hubert-micro", cache_dir=offline_cache, token=secret),
                 lambda: HubertEncoder.from_pretrained("micro-test-model", cache_dir=offline_cache, token=secret),
                 lambda: zoo.load("micro-test-model", revision="main", cache_dir=offline_cache, pretrained=False,
                                  token=secret),
                 lambda: zoo.info("micro-test-model", revision="main", cache_dir=offline_cache, token=secret),
                 lambda: zoo.info("test-org/hubert-micro", cache_dir=offline_cache, token=secret)):
        sent.clear()
        call()
        assert len(sent) >= 3 and set(sent) == {secret}  # config.json, preprocessor_config.json, README.md, ...
    sent.clear()
    zoo.load("test-org/hubert-micro", cache_dir=offline_cache)
    assert len(sent) == 4 and set(sent) == {None}
    with pytest.raises(OfflineError) as caught:
        zoo.load("test-org/absent", cache_dir=offline_cache, token=secret)
    assert sent[-1] == secret and secret not in str(caught.value) and "hf_" not in str(caught.value)


def test_offline_set_after_import_is_honoured(tmp_path, monkeypatch):
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; the zoo reads it at each call, so a
    notebook that sets it later gets the offline error at once, not a minute of retries."""
    import huggingface_hub

    calls = []
    original = huggingface_hub.hf_hub_download

    def recording(*args, **kwargs):
        calls.append(kwargs["local_files_only"])
        return original(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="test-org/absent"):
        zoo.load("test-org/absent", cache_dir=tmp_path / "cache")
    assert calls == [True]


#: a checkpoint saved and loaded where the locale's encoding is ASCII (as Windows' is cp1252)
ASCII_LOCALE_ROUND_TRIP = r"""
import locale, sys
import zoo
print(locale.getpreferredencoding(False))
encoder = zoo.load("graphmae-mutag")  # its hub_config holds non-ASCII text
encoder.save_pretrained(sys.argv[1], model_card="# pm \u00b1 1 \u2192 \u00e9\n")
zoo.load(sys.argv[1])
"""


def test_text_files_are_utf8_whatever_the_locale(tmp_path):
    """Config, card and JSON files were read and written in the locale's encoding: under an ASCII
    locale every `zoo.load` failed, saying the hub config "is not valid JSON"."""
    env = {**os.environ, "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C"}
    run = subprocess.run([sys.executable, "-c", ASCII_LOCALE_ROUND_TRIP, str(tmp_path / "saved")], env=env,
                         capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    if "utf" in run.stdout.lower():
        pytest.skip(f"this Python reads the C locale as {run.stdout.strip()}, so it cannot show the fault")
    assert (tmp_path / "saved" / "README.md").read_bytes() == "# pm \u00b1 1 \u2192 \u00e9\n".encode()


def test_a_hugging_face_cache_that_is_a_file_is_named(tmp_path):
    """HF_HOME set to a file was a raw NotADirectoryError from huggingface_hub's token lookup."""
    (tmp_path / "hf").write_text("not a folder")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "zoo.cli", "info", "org/tiny"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "cannot use the Hugging Face cache for 'org/tiny' (NotADirectoryError" in run.stderr
    assert "point HF_HOME or HF_HUB_CACHE" in run.stderr


def test_zoo_name_resolves_through_its_hub_config(offline_cache, tmp_path, micro_hubert):
    micro_hubert.save_pretrained(tmp_path / "zoo-repo")
    put_in_hf_cache(offline_cache, "test-org/zoo-micro", tmp_path / "zoo-repo", commit="c" * 40)
    entry = {"name": "micro-test-model", "family": "hubert", "modality": "speech", "description": "test",
             "repo_id": "test-org/zoo-micro", "architecture": {}}
    (tmp_path / "micro-test-model.json").write_text(json.dumps(entry))
    zoo.add_model_config(tmp_path / "micro-test-model.json")
    assert "micro-test-model" in zoo.list_models("micro-*")
    loaded = zoo.load("micro-test-model", cache_dir=offline_cache)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), micro_hubert.state_dict().values()))


def test_unknown_names_suggest_close_ones():
    with pytest.raises(UnknownModelError, match="did you mean.*hubert-base-ls960"):
        zoo.load("hubert-base-ls96")
    with pytest.raises(UnknownModelError, match="did you mean.*mert-v1-95m"):
        zoo.load("mert-v1.95m")  # a dot does not make a name a path


@pytest.mark.parametrize("path", ["/no/such/run", "./run", "../run/encoder", "runs/a/encoder", "run/", "~/run"])
def test_a_path_that_does_not_exist_is_named_as_a_folder(path):
    """Was "unknown model '/no/such/run'; run `zoo list`", or a huggingface_hub HFValidationError for "./run"."""
    with pytest.raises(UnknownModelError, match="there is no folder .*run"):
        zoo.load(path)


def test_a_hub_id_that_is_not_cached_or_not_valid_says_no_local_folder_is_there_either(offline_cache, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OfflineError, match="hf download runs/typo.*no local folder .*runs/typo' either"):
        zoo.load("runs/typo", cache_dir=offline_cache)
    with pytest.raises(UnknownModelError, match="'bad name/x' is not a valid Hub repo id"):
        zoo.load("bad name/x", cache_dir=offline_cache)


def test_a_cached_repo_of_another_model_type_is_named_without_the_local_folder_note(offline_cache, tmp_path):
    """Was "...convert the checkpoint with `zoo convert` first There is no local folder ... either.":
    run together, and the repo had been found."""
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    put_in_hf_cache(offline_cache, "me/bert", tmp_path / "bert", commit="b" * 40)
    with pytest.raises(UnknownModelError, match=r"model_type 'bert' \(they read .*hubert.*\); an upstream") as err:
        zoo.load("me/bert", cache_dir=offline_cache, pretrained=False)
    assert "local folder" not in str(err.value)


def test_corrupt_and_mismatched_checkpoints(tmp_path, micro_hubert):
    folder = tmp_path / "ckpt"
    micro_hubert.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 64, "num_attention_heads": 4}))
    with pytest.raises(CheckpointError, match=r"wrong shapes \[.model.encoder.layer_norm.bias: \(32,\) != \(64,\)"):
        zoo.load(folder)
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(CheckpointError, match=r"0 missing \[\], [0-9]+ unexpected \[.model.encoder.layers.1"):
        zoo.load(folder)
    (folder / "config.json").write_text(json.dumps(config)[:40])  # cut short: README lists it as a CheckpointError
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        zoo.load(folder)
    (folder / "config.json").write_text(json.dumps(config))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        zoo.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        zoo.load(folder)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_holding_nan_or_infinite_values_are_refused_by_tensor(tmp_path, micro_hubert, value):
    """An infinite weight makes every output NaN as surely as a NaN does (inf - inf in a norm),
    so both are refused, not NaN alone."""
    from safetensors.torch import load_file, save_file

    micro_hubert.save_pretrained(tmp_path / "ckpt")
    weights = load_file(tmp_path / "ckpt" / "model.safetensors")
    key = sorted(key for key, value in weights.items() if value.is_floating_point())[0]
    weights[key][0] = value
    save_file(weights, tmp_path / "ckpt" / "model.safetensors", metadata={"format": "pt"})
    # named as the encoder names it: HuBERT's folder holds HubertModel's weights, without `model.`
    with pytest.raises(CheckpointError, match=rf"NaN or infinite values \(model\.{key}\); every output would be NaN"):
        zoo.load(tmp_path / "ckpt")


def test_a_failed_save_leaves_the_old_folder_whole(tmp_path, micro_hubert, micro_hubert_stable, monkeypatch):
    """Another model's save that fails half-way through its weights file leaves the old files as
    they were (the same model's save, failing before a byte, proved nothing: it passed with the
    folder written in place)."""
    folder = tmp_path / "ckpt"
    micro_hubert.save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken_save(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        micro_hubert_stable.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_saving_never_deletes_what_is_not_a_checkpoint(tmp_path, micro_hubert, monkeypatch):
    """A save replaces the folder whole, so a file or a folder of other things is refused and
    kept; a checkpoint folder (its own files only) is overwritten."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(CheckpointError, match="notes.txt is a file; a checkpoint is a folder"):
        micro_hubert.save_pretrained(notes)
    assert notes.read_text() == "mine"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data.csv").write_text("a,b")
    with pytest.raises(CheckpointError, match="holds 1 other file.*data.csv.*would delete them"):
        micro_hubert.save_pretrained(tmp_path / "work")
    assert (tmp_path / "work" / "data.csv").read_text() == "a,b"
    (tmp_path / "notes").mkdir()  # a README.md of one's own, and a folder named config.json, were replaced
    (tmp_path / "notes" / "README.md").write_text("my notes")
    (tmp_path / "withdir" / "config.json").mkdir(parents=True)
    for kept in (tmp_path / "notes" / "README.md", tmp_path / "withdir" / "config.json"):
        with pytest.raises(CheckpointError, match=rf"holds 1 other file.*\({kept.name}\).*would delete them"):
            micro_hubert.save_pretrained(kept.parent)
        assert kept.exists()
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    with pytest.raises(ConfigError, match="cannot write a checkpoint in .*notes.txt.* is a file, not a folder"):
        micro_hubert.save_pretrained(notes / "sub")  # was FileExistsError
    monkeypatch.chdir(tmp_path / "ckpt")
    for inside in (".", tmp_path):  # os.replace of "." failed and left an empty ..old.* folder in the checkpoint
        with pytest.raises(CheckpointError, match="holds the working folder, which saving would replace"):
            micro_hubert.save_pretrained(inside)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]


def test_push_to_hub_uploads_the_checkpoint_folder(micro_hubert, monkeypatch):
    """The upload itself needs the Hub; this checks what would be sent, through HfApi's own calls
    (and that offline mode refuses it first). `zoo publish` does the sending: tests/test_publishing.py."""
    from huggingface_hub import HfApi, constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="^cannot publish to 'me/my-encoder': HF_HUB_OFFLINE is set"):
        micro_hubert.push_to_hub("me/my-encoder")  # named the temporary folder it had saved in
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    sent = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: sent.setdefault("repo", repo_id))
    monkeypatch.setattr(HfApi, "create_commit", lambda self, repo_id, operations, **kw: sent.update(
        files=sorted(op.path_in_repo for op in operations), card=operations[-1].path_or_fileobj.decode(),
        message=kw["commit_message"], token=self.token, pr=kw["create_pr"]) or type(
            "CommitInfo", (), {"commit_url": "url", "pr_url": "pr"}))
    assert micro_hubert.push_to_hub("me/my-encoder", model_card="# my card\n", commit_message="first") == "url"
    assert sent == {"repo": "me/my-encoder", "card": "# my card\n", "message": "first", "token": None, "pr": False,
                    "files": ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]}
    # transformers' token= and create_pr= were a TypeError raised from inside, naming push_folder
    assert micro_hubert.push_to_hub("me/my-encoder", token="hf_x", create_pr=True) == "pr"
    assert sent["token"] == "hf_x" and sent["pr"]


def test_cli_embed_offline_from_the_cache(tmp_path):
    """`zoo embed REPO_ID file -o e.npy` in a fresh process with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "cache"
    reference = transformers_hubert(0, tmp_path / "repo")
    put_in_hf_cache(cache, "test-org/hubert-micro", tmp_path / "repo", commit="d" * 40)
    wave = np.random.default_rng(2).standard_normal(8000).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", wave, RATE, subtype="FLOAT")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "embed", "test-org/hubert-micro", str(tmp_path / "a.wav"),
                             "-o", str(tmp_path / "e.npy")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = reference_frames(reference, wave).mean(0)
    assert np.abs(np.load(tmp_path / "e.npy")[0] - expected.numpy()).max() <= 1e-5
    missing = subprocess.run([sys.executable, "-m", "zoo.cli", "embed", "test-org/other", str(tmp_path / "a.wav"),
                              "-o", str(tmp_path / "f.npy")], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "hf download test-org/other" in missing.stderr
    assert not (tmp_path / "f.npy").exists()


def upstream_entry(tmp_path: Path, sha256: str) -> str:
    """A hub_config whose weights are a fairseq file in a Hub repo (converted on first load)."""
    entry = {"name": "hubert-upstream-test", "family": "hubert", "modality": "speech", "description": "test",
             "format": "fairseq", "upstream": {"repo_id": "test-org/fairseq-hubert", "filename": "hubert.pt",
                                               "format": "fairseq", "sha256": sha256}}
    path = tmp_path / "hubert-upstream-test.json"
    path.write_text(json.dumps(entry))
    zoo.add_model_config(path)
    return entry["name"]


def fairseq_repo(tmp_path: Path) -> tuple[Path, str]:
    import hashlib

    from fairseq_hubert import fairseq_model_cfg, fairseq_state_dict

    folder = tmp_path / "fairseq-repo"
    folder.mkdir()
    torch.save({"cfg": {"model": fairseq_model_cfg("group_post_ln"), "task": {"normalize": False}},
                "model": fairseq_state_dict("group_post_ln")}, folder / "hubert.pt")
    return folder, hashlib.sha256((folder / "hubert.pt").read_bytes()).hexdigest()


def test_upstream_file_is_checked_converted_once_and_cached(offline_cache, tmp_path, monkeypatch):
    folder, sha256 = fairseq_repo(tmp_path)
    put_in_hf_cache(offline_cache, "test-org/fairseq-hubert", folder, commit="e" * 40)
    name = upstream_entry(tmp_path, sha256)
    first = zoo.load(name, cache_dir=offline_cache)
    converted = hub.zoo_cache_root() / "converted" / name / sha256[:16]
    assert (converted / "model.safetensors").is_file() and (converted / "README.md").is_file()
    assert hub.zoo_cache_root() == tmp_path / "hf-home" / "ssl-zoo"  # beside the Hub cache, not in cache_dir
    from huggingface_hub import scan_cache_dir

    assert scan_cache_dir(offline_cache).warnings == []  # was a "corrupt repo" ssl-zoo/ folder

    from zoo import registry

    def no_second_conversion(path):
        raise AssertionError("converted again")

    monkeypatch.setitem(registry.get_family("hubert").converters, "fairseq", no_second_conversion)
    second = zoo.load(name, cache_dir=offline_cache)
    wave = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    assert torch.equal(first.embed([wave], sampling_rate=RATE, progress=False),
                       second.embed([wave], sampling_rate=RATE, progress=False))


def test_loads_converting_one_upstream_file_at_once_convert_it_once(offline_cache, tmp_path, monkeypatch, capsys):
    """Nothing held the conversion into the zoo cache: 2 of 4 first loads at once each converted the
    same file. The others wait, saying so, then read the one conversion."""
    from concurrent.futures import ThreadPoolExecutor

    folder, sha256 = fairseq_repo(tmp_path)
    put_in_hf_cache(offline_cache, "test-org/fairseq-hubert", folder, commit="e" * 40)
    name = upstream_entry(tmp_path, sha256)
    from zoo import registry

    conversions, convert = [], registry.get_family("hubert").converters["fairseq"]

    def slow_conversion(path):
        conversions.append(path)
        time.sleep(1.0)
        return convert(path)

    monkeypatch.setitem(registry.get_family("hubert").converters, "fairseq", slow_conversion)
    with ThreadPoolExecutor(3) as pool:
        encoders = list(pool.map(lambda _: zoo.load(name, cache_dir=offline_cache), range(3)))
    assert len(conversions) == 1 and len(encoders) == 3
    assert f"waiting for another process converting '{name}'" in capsys.readouterr().err


def test_zoo_cache_moves_with_its_variable(offline_cache, tmp_path, monkeypatch):
    """$ZOO_CACHE holds the conversions (and the datasets, unless $ZOO_DATASETS says otherwise)."""
    from modalities.graphs.datasets import cache_root

    folder, sha256 = fairseq_repo(tmp_path)
    put_in_hf_cache(offline_cache, "test-org/fairseq-hubert", folder, commit="e" * 40)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))
    zoo.load(upstream_entry(tmp_path, sha256), cache_dir=offline_cache)
    assert list((tmp_path / "zoo-cache" / "converted").iterdir()) and not (tmp_path / "hf-home").exists()
    assert cache_root() == tmp_path / "zoo-cache" / "datasets"
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "data"))
    assert cache_root() == tmp_path / "data"


def test_upstream_file_with_the_wrong_sha256_is_refused(offline_cache, tmp_path):
    folder, sha256 = fairseq_repo(tmp_path)
    put_in_hf_cache(offline_cache, "test-org/fairseq-hubert", folder, commit="f" * 40)
    name = upstream_entry(tmp_path, "0" * 64)
    with pytest.raises(CheckpointError, match=f"has sha256 {sha256}, expected 0000"):
        zoo.load(name, cache_dir=offline_cache)


def add_url_entry(tmp_path: Path) -> None:
    """A hub_config "hubert-url-test" whose upstream file is a URL (as BEATs' are)."""
    entry = {"name": "hubert-url-test", "family": "hubert", "modality": "speech", "description": "test",
             "upstream": {"url": "https://example.org/files/hubert.pt?sig=1", "format": "fairseq", "sha256": "ab" * 32}}
    (tmp_path / "hubert-url-test.json").write_text(json.dumps(entry))
    zoo.add_model_config(tmp_path / "hubert-url-test.json")


def test_upstream_url_offline_says_where_to_put_the_file(offline_cache, tmp_path):
    add_url_entry(tmp_path)
    with pytest.raises(OfflineError, match=r"https://example.org/files/hubert.pt.*place it at .*abab.*/hubert.pt, "
                                           r"or run `zoo convert hubert FILE OUT_DIR --format fairseq`"):
        zoo.load("hubert-url-test", cache_dir=offline_cache)


def test_a_failed_upstream_download_is_named_and_leaves_no_file(tmp_path, monkeypatch):
    """Online, with no route to the upstream host: a zoo error, not the HTTP client's traceback."""
    from huggingface_hub import constants, file_download

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(url, handle):
        handle.write(b"partial")
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(file_download, "http_get", unreachable)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))  # where upstream files are downloaded
    add_url_entry(tmp_path)
    with pytest.raises(OfflineError, match=r"cannot download the upstream file of 'hubert-url-test' from "
                                           r"https://example.org/files/hubert.pt\?sig=1 \(ConnectionError: "
                                           r"Name or service not known\); check the network"):
        zoo.load("hubert-url-test", cache_dir=tmp_path / "cache")
    assert (tmp_path / "zoo-cache" / "downloads").is_dir()  # the download began there, and left no file
    left = [path for path in (tmp_path / "zoo-cache").rglob("*") if path.is_file()]
    assert [path.name for path in left] == ["hubert-url-test-abababababababab.lock"]  # the conversion's empty lock


def test_published_name_offline_without_cache_names_its_repo(offline_cache):
    with pytest.raises(OfflineError, match="facebook/hubert-base-ls960"):
        zoo.load("hubert-base-ls960", cache_dir=offline_cache)


def test_a_run_folder_loads_as_its_one_checkpoint(tmp_path, micro_hubert):
    """`zoo.load(RUN)` (and so `zoo embed RUN ...`) reads `zoo pretrain`'s encoder/ or `zoo finetune`'s
    classifier/; a folder with several checkpoints, or none, is named."""
    micro_hubert.save_pretrained(tmp_path / "run" / "encoder")
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"optimizer state")
    killed = tmp_path / "run" / ".encoder.6xh1xcor"  # a save killed half-way leaves its temporary folder
    killed.mkdir()
    (killed / "config.json").write_text("{}")
    wave = np.random.default_rng(4).standard_normal(4000).astype(np.float32)
    assert torch.equal(zoo.load(tmp_path / "run").embed([wave], sampling_rate=RATE, progress=False),
                       micro_hubert.embed([wave], sampling_rate=RATE, progress=False))
    micro_hubert.save_pretrained(tmp_path / "run" / "tokenizer")
    with pytest.raises(ConfigError, match=r"holds 2 checkpoints \(encoder, tokenizer\); pass one of them, e.g. "):
        zoo.load(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no config.json, nor a subfolder with one: pass a checkpoint folder"):
        zoo.load(tmp_path / "empty")
    trainer_saved = tmp_path / "trainer"  # what Trainer.save_model writes for a model that is not a transformers one
    trainer_saved.mkdir()
    safetensors.torch.save_file(micro_hubert.state_dict(), trainer_saved / "model.safetensors")
    (trainer_saved / "training_args.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="holds weights but no config.json, as transformers' Trainer saves a "
                                              "model that is not a transformers one .*: call save_pretrained"):
        zoo.load(trainer_saved)  # was told it has no config.json, nor a subfolder with one


def test_a_file_is_not_a_checkpoint_folder(tmp_path):
    (tmp_path / "hubert.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="zoo convert FAMILY FILE OUT_DIR"):
        zoo.load(tmp_path / "hubert.pt")


def test_saved_files_get_the_usual_permissions(tmp_path, micro_hubert):
    """Atomic writes go through private temp files; the results must not stay private."""
    umask = os.umask(0)
    os.umask(umask)
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt")
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(path.stat().st_mode & 0o777 == 0o666 & ~umask for path in folder.iterdir())


@pytest.mark.parametrize("name", [None, "", " "])
def test_no_name_is_refused_by_name(name):
    with pytest.raises(UnknownModelError, match=r"load\(.*\): pass a zoo name"):
        zoo.load(name)


def test_weights_of_another_kind_of_number_and_a_malformed_config_are_named(tmp_path, micro_hubert):
    """bool, integer or complex weights were cast silently (bool to 1.0, complex to its real
    part); config.json errors did not name the file, and a malformed head was a raw KeyError."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    micro_hubert.save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    key = sorted(weights)[0]
    save_file({**weights, key: weights[key].bool()}, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"1 wrong kinds of number \['model.{key}: torch.bool for torch.float"):
        zoo.load(folder)
    save_file({**weights, key: weights[key].half()}, folder / "model.safetensors", metadata={"format": "pt"})
    assert zoo.load(folder).dtype == torch.float32  # another float precision is a float
    config = json.loads((folder / "config.json").read_text())
    for change, error, said in (({"family": "nosuch"}, UnknownModelError, "unknown family 'nosuch'"),
                                ({"family": ["hubert"]}, UnknownModelError, "unknown family ['hubert']"),  # unhashable
                                ({"head": {}}, CheckpointError, "a malformed entry (KeyError: 'task')")):
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(error, match=re.escape(f"{folder / 'config.json'}: {said}")):
            zoo.load(folder)


def test_an_outsized_config_a_name_too_long_and_fp8_weights_are_met_as_they_should_be(tmp_path, micro_hubert):
    """A 3 GB config.json was read whole (6 GB, then a MemoryError); `zoo.load('a' * 5000)` was
    pathlib's "File name too long"; fp8 weights were torch's "isfinite not implemented". The first
    two are named, and fp8 weights load as any other float precision does."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    micro_hubert.save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    key = sorted(weights)[0]
    save_file({**weights, key: weights[key].to(torch.float8_e4m3fn)}, folder / "model.safetensors",
              metadata={"format": "pt"})
    assert zoo.load(folder).dtype == torch.float32
    with open(folder / "config.json", "r+b") as handle:
        handle.truncate(17 * 2**20)
    with pytest.raises(CheckpointError, match=r"config.json is 17,825,792 bytes; a settings file is a few kB"):
        zoo.load(folder)
    with pytest.raises(UnknownModelError, match=r"a part of it is 5000 bytes long, longer than a file name can be"):
        zoo.load("a" * 5000)
    from zoo.cli import main

    assert main(["info", "a" * 5000]) == 2  # a traceback while named_entry looked for a folder of that name
    with pytest.raises(UnknownModelError, match="a part of it is 300 bytes long"):
        zoo.publish("a" * 300, "me/x", dry_run=True)  # an OSError from pathlib


def test_a_folder_under_home_is_written_and_read_there(tmp_path, monkeypatch, micro_hubert):
    """`save_pretrained("~/enc")` made a folder named ~ in the working folder (inviting `rm -rf ~`),
    and `zoo.load("~/enc")` read that one; both now mean the home folder, as the CLI does."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    micro_hubert.save_pretrained("~/enc")
    assert (tmp_path / "home" / "enc" / "config.json").is_file() and not (tmp_path / "~").exists()
    assert zoo.load("~/enc").num_layers == micro_hubert.num_layers
    assert zoo.info("~/enc")["params"] == sum(p.numel() for p in micro_hubert.parameters())


def test_a_config_describing_a_model_too_big_to_build_is_named(tmp_path, micro_hubert):
    """`intermediate_size` 10**12 in config.json ended in a 14-frame traceback from torch's
    allocator (and `zoo info`, which reads no weights, built the same model); it is the file's
    error now. Nothing near its size is allocated: the first layer's request fails at once."""
    folder = tmp_path / "ckpt"
    micro_hubert.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 10**12}))
    for call in (zoo.load, zoo.info):
        with pytest.raises(CheckpointError, match=re.escape(f"{folder / 'config.json'} describes a model that cannot "
                                                            "be built here (RuntimeError: ")):
            call(folder)


def test_a_cached_repo_without_its_processor_settings_says_so(offline_cache, tmp_path, caplog):
    """A repo id's preprocessor_config.json merely not cached (transformers' AutoModel caches only
    config.json and the weights) loaded silently with default settings: a model needing
    do_normalize ran without it. It is a warning, not a refusal: a snapshot of a repo that has no
    such file looks the same offline where the Hub's answer was not cached (its .no_exist marker)."""
    transformers_hubert(0, tmp_path / "repo")
    (tmp_path / "repo" / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    files = sorted(path.name for path in (tmp_path / "repo").iterdir())
    (tmp_path / "partial").mkdir()
    for name in files:
        if name != "preprocessor_config.json":
            (tmp_path / "partial" / name).write_bytes((tmp_path / "repo" / name).read_bytes())
    put_in_hf_cache(offline_cache, "test-org/partial", tmp_path / "partial", commit="b" * 40)
    assert not zoo.load("test-org/partial", cache_dir=offline_cache).processor.do_normalize
    assert "preprocessor_config.json of Hub repo 'test-org/partial' (revision 'main') is not in the cache" in (
        caplog.text)


def test_a_processor_config_the_hub_said_is_absent_is_not_warned_about(offline_cache, tmp_path, caplog):
    """huggingface_hub's .no_exist marker says the repo has no preprocessor_config.json, so
    downloading changes nothing: load and info warned "not in the cache ... Run hf download" all
    the same. A repo where it is merely not cached is still warned about, naming the settings used."""
    transformers_hubert(0, tmp_path / "repo")  # config.json and model.safetensors: no processor config
    put_in_hf_cache(offline_cache, "test-org/none", tmp_path / "repo", commit="b" * 40,
                    no_exist=("preprocessor_config.json",))
    put_in_hf_cache(offline_cache, "test-org/uncached", tmp_path / "repo", commit="c" * 40)
    for call in (zoo.load, zoo.info):
        caplog.clear()
        call("test-org/none", cache_dir=offline_cache)
        assert "preprocessor_config.json" not in caplog.text
        call("test-org/uncached", cache_dir=offline_cache)
        assert ("preprocessor_config.json of Hub repo 'test-org/uncached' (revision 'main') is not in the cache: "
                "the processor runs with its defaults and what config.json implies (sampling_rate=16000, "
                "do_normalize=False, ") in caplog.text


@pytest.mark.parametrize("safetensors", [True, False])
def test_a_sharded_checkpoint_loads_from_the_cache_and_a_folder(offline_cache, tmp_path, safetensors):
    """transformers' `save_pretrained(max_shard_size=...)` writes an index and shards: the zoo
    fetched only model.safetensors (OfflineError though every file was cached) and a folder said
    it had no weights. Both now give the unsharded checkpoint's outputs exactly."""
    reference = transformers_hubert(0, tmp_path / "whole")
    sharded = tmp_path / "sharded"
    if safetensors:
        reference.save_pretrained(sharded, max_shard_size="20KB")
    else:  # transformers 5 writes safetensors only: the same shards as pickles, as older versions wrote them
        from safetensors.torch import load_file

        shutil.copytree(tmp_path / "whole", sharded, ignore=shutil.ignore_patterns("*.safetensors"))
        reference.save_pretrained(tmp_path / "as-safetensors", max_shard_size="20KB")
        index = json.loads((tmp_path / "as-safetensors" / "model.safetensors.index.json").read_text())
        index["weight_map"] = {key: shard.replace(".safetensors", ".bin") for key, shard in index["weight_map"].items()}
        (sharded / "pytorch_model.bin.index.json").write_text(json.dumps(index))
        for shard in set(index["weight_map"].values()):
            torch.save(load_file(tmp_path / "as-safetensors" / shard.replace(".bin", ".safetensors")), sharded / shard)
    index_name = "model.safetensors.index.json" if safetensors else "pytorch_model.bin.index.json"
    shards = set(json.loads((sharded / index_name).read_text())["weight_map"].values())
    names = {path.name for path in sharded.iterdir()}
    assert len(shards) > 1 and not {"model.safetensors", "pytorch_model.bin"} & names
    put_in_hf_cache(offline_cache, "test-org/sharded", sharded, commit="d" * 40)
    whole = zoo.load(tmp_path / "whole")
    wave = np.random.default_rng(2).standard_normal(7000).astype(np.float32)
    expected = whole.embed([wave], pool="none", sampling_rate=RATE, progress=False)[0]
    for source in ("test-org/sharded", sharded):
        encoder = zoo.load(source, cache_dir=offline_cache)
        state, whole_state = encoder.state_dict(), whole.state_dict()
        assert state.keys() == whole_state.keys() and all(torch.equal(state[key], whole_state[key]) for key in state)
        tokens = encoder.embed([wave], pool="none", sampling_rate=RATE, progress=False)[0]
        assert torch.equal(tokens, expected), source  # exactly: the same weights, the same computation


def test_a_missing_or_damaged_shard_is_named_with_the_fix(offline_cache, tmp_path):
    transformers_hubert(0, tmp_path / "whole").save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shard = tmp_path / "sharded" / sorted(set(index["weight_map"].values()))[1]
    snapshot = put_in_hf_cache(offline_cache, "test-org/sharded", tmp_path / "sharded", commit="e" * 40)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(f"cannot read {shard} (") + ".*corrupt or incomplete. Save "
                                              "it again"):
        zoo.load(tmp_path / "sharded")
    shard.unlink()
    missing = f"{shard} is missing, though model.safetensors.index.json lists it: the sharded checkpoint is incomplete"
    with pytest.raises(CheckpointError, match=re.escape(f"{missing}. Save it again")):
        zoo.load(tmp_path / "sharded")
    (snapshot / shard.name).unlink()  # a shard never downloaded: offline, named with what to download
    with pytest.raises(OfflineError, match=re.escape(f"{shard.name} of Hub repo 'test-org/sharded' (revision 'main') "
                                                     "is not in the Hugging Face cache") + ".*hf download test-org/"):
        zoo.load("test-org/sharded", cache_dir=offline_cache)
    index["weight_map"]["masked_spec_embed"] = "../whole/model.safetensors"
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="lists shard '../whole/model.safetensors', which is not a file name "
                                              "beside it: it is damaged"):
        zoo.load(tmp_path / "sharded")


@pytest.mark.parametrize("shard", ["/tmp/model.safetensors", "sub/model.safetensors", "", ".."])
def test_an_index_listing_a_shard_that_is_not_a_file_name_beside_it_is_refused(tmp_path, shard):
    """An absolute path in a weight_map read that file wherever it lay (joined to the folder, it
    replaces it), and one in a subfolder read past the files the checkpoint lists; only a plain
    file name beside the index is taken."""
    from zoo.hub import listed_shards

    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-1.safetensors", "b": shard}}))
    with pytest.raises(CheckpointError, match=re.escape(f"lists shard {shard!r}, which is not a file name beside it")):
        listed_shards(index)


def test_a_corrupt_file_is_named_and_a_pickle_error_gives_no_unsafe_advice(tmp_path, micro_hubert):
    folder = tmp_path / "ckpt"
    micro_hubert.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    said = re.escape(f"cannot read {folder / 'model.safetensors'}") + ".*Save it again"
    with pytest.raises(CheckpointError, match=said):
        zoo.load(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="pytorch_model.bin") as caught:
        zoo.load(folder)
    assert "weights_only" not in str(caught.value)


def test_damaged_weights_get_the_fix_of_where_they_are(offline_cache, tmp_path, micro_hubert):
    """A damaged conversion in the zoo cache was told to `hf download REPO --force-download`, which
    leaves it as it is: deleting it makes the next load convert again. A Hub snapshot was told that
    command with REPO as written, and in a cache_dir= cache to save it again, as a folder of one's
    own: both name the repo, the snapshot's commit and the cache_dir= cache."""
    from huggingface_hub import constants

    converted = hub.zoo_cache_root() / "converted" / "beats-iter3" / "0123456789abcdef"
    assert hub.damaged_weights_fix(converted) == f"Delete {converted}: the next load converts the upstream file again"
    snapshot = Path(constants.HF_HUB_CACHE) / "models--a--b" / "snapshots" / ("1" * 40)
    assert hub.damaged_weights_fix(snapshot) == (f"Download it again with `hf download a/b --revision {'1' * 40} "
                                                 "--force-download` (the cache keeps the damaged copy)")
    assert hub.damaged_weights_fix(Path("runs/encoder")).startswith("Save it again")
    micro_hubert.save_pretrained(tmp_path / "repo")
    weights = tmp_path / "repo" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    put_in_hf_cache(offline_cache, "test-org/damaged", tmp_path / "repo", commit="2" * 40)
    fix = (f"the file is corrupt or incomplete. Download it again with `hf download test-org/damaged --revision "
           f"{'2' * 40} --force-download --cache-dir {offline_cache.resolve()}`")
    with pytest.raises(CheckpointError, match=re.escape(fix)):
        zoo.load("test-org/damaged", cache_dir=offline_cache)


def test_a_folder_that_hides_a_zoo_name_or_a_hub_repo_says_so(tmp_path, monkeypatch, micro_hubert):
    """An empty results folder spelt as a zoo name or a repo id is read first: the error said only
    that it has no config.json, and `revision=` that the name is not a Hub repo."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hubert-base-ls960").mkdir()
    (tmp_path / "org" / "name").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="is read in place of the zoo name 'hubert-base-ls960': rename or move"):
        zoo.load("hubert-base-ls960")
    with pytest.raises(ConfigError, match="drop revision='v1' \\(the folder .* is read in place of the Hub repo"):
        zoo.load("org/name", revision="v1")
    micro_hubert.save_pretrained(tmp_path / "org" / "name")  # a checkpoint there is what was meant
    with pytest.raises(ConfigError) as caught:
        zoo.load("org/name", revision="v1")
    assert "read in place" not in str(caught.value)


def test_every_entry_point_reads_a_folder_spelt_as_a_zoo_name(micro_hubert, tmp_path, monkeypatch, capsys):
    """load read the folder, but info, `zoo info`, publish and a fine-tune's card described the zoo
    name: a HuBERT saved as ./graphmae-cora loaded as HuBERT and was shown as GraphMAE, and its card's
    base_model named ssl-zoo/graphmae-cora. Now each reads the folder, as load does."""
    from zoo.cli import main
    from zoo.run_cards import Origin, base_model_of

    monkeypatch.chdir(tmp_path)
    micro_hubert.save_pretrained(tmp_path / "graphmae-cora")
    assert type(zoo.load("graphmae-cora")).__name__ == "HubertEncoder"
    assert zoo.info("graphmae-cora")["family"] == "hubert"
    assert main(["info", "graphmae-cora"]) == 0 and json.loads(capsys.readouterr().out)["family"] == "hubert"
    assert "HubertEncoder" in zoo.publish("graphmae-cora", "me/x", dry_run=True)
    with pytest.raises(ConfigError, match="say where to publish"):  # not to ssl-zoo/graphmae-cora
        zoo.publish("graphmae-cora", dry_run=True)
    assert base_model_of("graphmae-cora", tmp_path / "graphmae-cora") == Origin(None, None)
    (tmp_path / "graphmae-cora" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="is read in place of the zoo name 'graphmae-cora'"):
        zoo.info("graphmae-cora")


def test_a_home_folder_is_the_base_model_of_what_is_trained_from_it(micro_hubert, tmp_path, monkeypatch):
    """base_model_of("~/ckpt") did not look in the home folder: a card of a model trained from it
    lost the folder's base_model and licence."""
    from zoo.run_cards import base_model_of

    monkeypatch.setenv("HOME", str(tmp_path))
    micro_hubert.save_pretrained(tmp_path / "ckpt", model_card="---\nlicense: mit\nbase_model: org/base\n---\n")
    assert base_model_of("~/ckpt") == base_model_of(str(tmp_path / "ckpt"))
    assert base_model_of("~/ckpt").license == "mit"


def test_a_run_folder_of_the_home_gives_its_named_checkpoint(micro_hubert, micro_hubert_stable, tmp_path, monkeypatch):
    """load_trained("~/run", ...) did not look in the home folder for the run's subfolders: a run
    of two checkpoints (BEATs' tokenizer/ and encoder/) was refused as holding two."""
    monkeypatch.setenv("HOME", str(tmp_path))
    micro_hubert.save_pretrained(tmp_path / "run" / "encoder")
    micro_hubert_stable.save_pretrained(tmp_path / "run" / "tokenizer")
    loaded = hub.load_trained("~/run", "--init", ("tokenizer", "encoder"))
    assert loaded.config.do_stable_layer_norm


def test_load_gives_float32_under_another_default_dtype(micro_hubert, tmp_path):
    """Models are built in torch's default dtype: under torch.set_default_dtype(torch.float64),
    `load` gave float64 weights where float32 is promised (and T-JEPA refused them)."""
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        loaded = zoo.load(tmp_path / "ckpt")
        asked = zoo.load(tmp_path / "ckpt", dtype="float64")
    finally:
        torch.set_default_dtype(default)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert {p.dtype for p in asked.parameters()} == {torch.float64}


def test_an_error_importing_a_family_is_not_called_a_malformed_checkpoint(micro_hubert, tmp_path, monkeypatch):
    """A ValueError raised while a family's module imported transformers (a mismatched package of
    the environment) came out as "config.json: a malformed entry ...; save the checkpoint again"."""
    from zoo import registry

    micro_hubert.save_pretrained(tmp_path / "ckpt")

    def broken_import(name):
        raise ValueError("Either a revision or a version must be specified.")

    monkeypatch.setattr(registry, "get_family", broken_import)
    with pytest.raises(ValueError, match="^Either a revision or a version must be specified.$"):
        zoo.load(tmp_path / "ckpt")


def test_loading_weights_leaves_torchs_random_stream_alone(micro_hubert, tmp_path):
    """The model was built with random weights before the checkpoint's replaced them, which moved
    the caller's stream: torch.rand after a load differed from torch.rand without one."""
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    zoo.load(tmp_path / "ckpt")
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(0)  # random weights are drawn from it, so that a seed repeats them
    first = zoo.load(tmp_path / "ckpt", pretrained=False)
    torch.manual_seed(0)
    assert torch.equal(zoo.load(tmp_path / "ckpt", pretrained=False).model.encoder.layers[0].attention.q_proj.weight,
                       first.model.encoder.layers[0].attention.q_proj.weight)
