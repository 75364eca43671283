"""`zoo publish` / `zoo.publish`: what is checked and what would be sent. The Hub is not
reachable here, so uploads are checked through the calls HfApi would receive."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import put_in_hf_cache, transformers_hubert

import zoo
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError, OfflineError, UnknownModelError
from zoo.cards import model_card_text
from zoo.publishing import publish


@pytest.fixture
def hub_calls(monkeypatch):
    """Online mode, with HfApi's repo, branch and commit calls recorded instead of sent."""
    from huggingface_hub import HfApi, constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    class CommitInfo:
        commit_url = "https://huggingface.co/me/enc/commit/abc"
        pr_url = "https://huggingface.co/me/enc/discussions/1"

    def create_commit(self, repo_id, operations, **kwargs):
        files = {op.path_in_repo: op.path_or_fileobj if isinstance(op.path_or_fileobj, bytes)
                 else Path(op.path_or_fileobj).read_bytes() for op in operations}
        calls.append(("commit", repo_id, files, kwargs))
        return CommitInfo()

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("repo", repo_id, kw)))
    monkeypatch.setattr(HfApi, "create_branch", lambda self, repo_id, **kw: calls.append(("branch", repo_id, kw)))
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


def test_an_embedded_name_goes_to_its_repo_with_its_card_and_the_images_the_card_links(hub_calls):
    url = publish("gmml-vit-tiny-cifar10")
    assert url == "https://huggingface.co/me/enc/commit/abc"
    (_, repo, created), (_, _, files, options) = hub_calls
    assert repo == "ssl-zoo/gmml-vit-tiny-cifar10" and created == {"private": False, "exist_ok": True}
    folder = Path(zoo.__file__).parent / "checkpoints" / "gmml-vit-tiny-cifar10"
    assert sorted(files) == ["README.md", "config.json", "loss.png", "model.safetensors", "preprocessor_config.json",
                             "reconstructions.png"]
    assert all(files[name] == (folder / name).read_bytes() for name in files)
    assert files["README.md"].decode() == model_card_text("gmml-vit-tiny-cifar10")
    assert options == {"commit_message": "Upload with ssl-zoo", "revision": None, "create_pr": False}


def test_a_branch_is_created_and_a_pull_request_creates_none(hub_calls, micro_hubert, tmp_path):
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt")
    publish(folder, "me/enc", revision="v2", private=True, commit_message="v2 weights")
    assert [call[0] for call in hub_calls] == ["repo", "branch", "commit"]
    assert hub_calls[0][2]["private"] and hub_calls[1][2] == {"branch": "v2", "exist_ok": True}
    assert hub_calls[2][3] == {"commit_message": "v2 weights", "revision": "v2", "create_pr": False}
    hub_calls.clear()
    assert publish(folder, "me/enc", revision="main", create_pr=True).endswith("discussions/1")
    assert [call[0] for call in hub_calls] == ["repo", "commit"] and hub_calls[1][3]["create_pr"]


def test_a_run_folder_publishes_its_one_checkpoint_and_nothing_else(hub_calls, micro_hubert, tmp_path):
    run = tmp_path / "run"
    micro_hubert.save_pretrained(run / "encoder")
    (run / "checkpoint.pt").write_bytes(b"optimizer state")
    (run / "log.jsonl").write_text("{}\n")
    publish(run, "me/enc")
    assert sorted(hub_calls[-1][2]) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    micro_hubert.save_pretrained(run / "tokenizer")
    with pytest.raises(ConfigError, match=r"holds 2 checkpoints \(encoder, tokenizer\); pass one of them"):
        publish(run, "me/enc")
    with pytest.raises(CheckpointError, match="has no config.json, nor a subfolder with one"):
        publish(tmp_path, "me/enc")


def test_a_corrupt_or_mismatched_checkpoint_is_refused_before_anything_is_sent(hub_calls, micro_hubert, tmp_path):
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors .*: the file is corrupt or incomplete"):
        publish(folder, "me/enc")
    (folder / "model.safetensors").write_bytes(weights)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(CheckpointError, match="do not match its config"):
        publish(folder, "me/enc")
    assert hub_calls == []


def test_the_card_must_parse_and_its_local_links_must_exist(hub_calls, micro_hubert, tmp_path):
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt", model_card="# enc\n\n![curve](plots/loss.png)\n")
    with pytest.raises(CheckpointError, match=r"links 'plots/loss.png', which is not a file in"):
        publish(folder, "me/enc")
    (folder / "plots").mkdir()
    (folder / "plots" / "loss.png").write_bytes(b"png")
    (folder / "notes.txt").write_text("mine")
    publish(folder, "me/enc")
    assert hub_calls[-1][2]["plots/loss.png"] == b"png" and "notes.txt" not in hub_calls[-1][2]
    outside = "# enc\n\n[paper](https://arxiv.org/abs/1) [up](#usage) [secret](../ckpt/config.json) [x](../x.md)\n"
    with pytest.raises(CheckpointError, match=r"links '\.\./x\.md'"):
        publish(folder, "me/enc", model_card=outside)
    code = ('# enc\n\n<img src="plots/loss.png" width="300">\n\n```python\nfirst = outputs[0](x)\n```\n\n'
            "and `table[i](j)` inline\n")
    publish(folder, "me/enc", model_card=code)  # brackets in code are not links
    assert sorted(hub_calls[-1][2]) == ["README.md", "config.json", "model.safetensors", "plots/loss.png",
                                        "preprocessor_config.json"]
    with pytest.raises(CheckpointError, match="metadata block of the card given is not valid YAML"):
        publish(folder, "me/enc", model_card="---\nlicense: [mit\n---\n# enc\n")


def test_a_transformers_checkpoint_is_sent_in_the_zoo_format_with_the_card_save_pretrained_writes(
        offline_cache, tmp_path, monkeypatch):
    """`zoo publish hubert-base-ls960 me/hubert` sent model_cards/hubert-base-ls960.md, which says
    ssl-zoo reads the weights from facebook/hubert-base-ls960 and has no base_model nor
    pipeline_tag; the card `zoo.load(name)` saves (and pushes to another repo) had both."""
    from contextlib import ExitStack

    from huggingface_hub import ModelCard, constants

    from zoo.publishing import prepare

    transformers_hubert(0, tmp_path / "repo")
    put_in_hf_cache(offline_cache, "facebook/hubert-base-ls960", tmp_path / "repo", commit="a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(offline_cache))
    plan = publish("hubert-base-ls960", "me/hubert", dry_run=True)
    assert "HubertEncoder (" in plan and "to me/hubert (revision main)" in plan
    assert "(a default card describing the model)" in plan and "pytorch_model.bin" not in plan
    snapshot = offline_cache / "models--facebook--hubert-base-ls960" / "snapshots" / ("a" * 40)
    assert f"from {snapshot} (saved anew in the zoo's format: config.json, model.safetensors)" in plan
    with ExitStack() as stack:
        card = prepare("hubert-base-ls960", "me/hubert", None, stack).card
    saved = zoo.load("hubert-base-ls960").save_pretrained(tmp_path / "saved")
    assert card == (saved / "README.md").read_text()
    data = ModelCard(card).data
    assert (data.base_model, data.license, data.pipeline_tag) == ("facebook/hubert-base-ls960", "apache-2.0",
                                                                  "feature-extraction")


def test_an_embedded_name_sent_to_another_repo_has_the_card_push_to_hub_sends(hub_calls):
    """`zoo publish hubert-tiny-fsdd me/enc` sent the package's card, which presents the weights
    as ssl-zoo's own and has no base_model, where push_to_hub of `zoo.load` sent the default card
    naming ssl-zoo/hubert-tiny-fsdd as its base; to its own repo the name still sends its card."""
    from huggingface_hub import ModelCard

    publish("hubert-tiny-fsdd", "me/enc")
    sent = hub_calls[-1][2]
    zoo.load("hubert-tiny-fsdd").push_to_hub("me/enc")
    assert sent["README.md"] == hub_calls[-1][2]["README.md"]
    assert sorted(sent) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    data = ModelCard(sent["README.md"].decode()).data
    assert (data.base_model, data.license, data.pipeline_tag) == ("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0",
                                                                  "feature-extraction")
    publish("hubert-tiny-fsdd")
    assert hub_calls[-1][2]["README.md"].decode() == model_card_text("hubert-tiny-fsdd")


def test_where_and_what_to_publish_are_named(offline_cache, micro_hubert, tmp_path):
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match=r"say where to publish .*ckpt.*zoo publish .*ckpt your-org/ckpt"):
        publish(folder, dry_run=True)
    with pytest.raises(ConfigError, match="'enc' names no owner; use 'your-org/enc'"):
        publish(folder, "enc", dry_run=True)
    with pytest.raises(ConfigError, match="'me/a b' is not a Hub repo id"):
        publish(folder, "me/a b", dry_run=True)
    with pytest.raises(CheckpointError, match=r"model.safetensors is a file, .*`zoo convert FAMILY FILE OUT_DIR`"):
        publish(folder / "model.safetensors", "me/enc", dry_run=True)
    with pytest.raises(UnknownModelError, match="there is no folder .*absent.* and .* is not a zoo name"):
        publish(tmp_path / "absent", "me/enc", dry_run=True)
    with pytest.raises(UnknownModelError, match=r"or a zoo name; did you mean 'hubert-tiny-fsdd'"):
        publish("hubert-tiny-fsd", "me/enc", dry_run=True)
    with pytest.raises(CheckpointError, match="'graphmae-nci1' is a pretraining recipe with no published weights"):
        publish("graphmae-nci1", "me/g", dry_run=True)
    with pytest.raises(ConfigError, match="say where to publish 'beats-iter3'"):  # was: not cached, then this
        publish("beats-iter3", dry_run=True)
    with pytest.raises(OfflineError, match="upstream file of 'beats-iter3'"):
        publish("beats-iter3", "me/b", dry_run=True)
    with pytest.raises(OfflineError, match=r"cannot publish .*ckpt.*HF_HUB_OFFLINE is set.*--dry-run"):
        publish(folder, "me/enc")


def test_a_folder_under_the_home_is_published_as_load_reads_it(offline_cache, micro_hubert, tmp_path, monkeypatch):
    """zoo.load("~/ckpt") and zoo.info read the home's folder; publish said "there is no folder
    '/cwd/~/ckpt'"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    plan = publish("~/ckpt", "me/enc", dry_run=True)
    assert f"from {tmp_path / 'ckpt'} to me/enc" in plan and "model.safetensors" in plan


def test_cli_dry_run_lists_the_files_offline(offline_cache, capsys):
    assert main(["publish", "mert-tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "MertEncoder (2,216,448 parameters)" in out and "to ssl-zoo/mert-tiny (revision main)" in out
    assert "loss.png" in out and "README.md" in out and "nothing was sent" in out
    assert main(["publish", "mert-tiny", "me/x", "--dry-run", "--private", "--create-pr", "--revision", "dev"]) == 0
    assert "to me/x (a pull request against revision dev; the repo made private if it does not exist yet):" \
        in capsys.readouterr().out  # was "to me/x (revision dev):", the same as a push to the branch
    assert main(["publish", "mert-tiny"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_cli_sends_the_card_given(hub_calls, micro_hubert, tmp_path, capsys):
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "card.md").write_text("---\nlicense: mit\n---\n# my encoder\n")
    assert main(["publish", str(folder), "me/enc", "--model-card", str(tmp_path / "card.md")]) == 0
    assert hub_calls[-1][2]["README.md"] == b"---\nlicense: mit\n---\n# my encoder\n"
    assert "published: https://huggingface.co/me/enc/commit/abc" in capsys.readouterr().out
    assert main(["publish", str(folder), "me/enc", "--model-card", str(tmp_path / "absent.md")]) == 2
    assert "--model-card " in (err := capsys.readouterr().err) and "absent.md' is not a file" in err


@pytest.mark.parametrize("name", zoo.list_models(pretrained=True))
def test_every_shipped_card_passes_the_publish_checks(name, tmp_path):
    """Embedded checkpoints as a whole (strict load, card, linked files); the cards of the others
    must parse and link no local file, since their folders are made by conversion."""
    from zoo import registry
    from zoo.publishing import choose_card, linked_files

    entry = registry.get_entry(name)
    if entry.embedded:
        assert "(the folder's README.md)" in publish(name, dry_run=True)
    else:
        card, source = choose_card(None, entry, None, None, entry.repo_id)
        assert source == f"model_cards/{name}.md" and linked_files(card, tmp_path) == []


def test_what_is_sent_loads_back_from_the_hub_cache(hub_calls, micro_hubert, tmp_path, monkeypatch):
    """The commit's files, laid out as huggingface_hub caches a download of the repo, load offline by
    repo id into the model that was published."""
    from huggingface_hub import constants

    micro_hubert.push_to_hub("me/enc")
    sent = tmp_path / "sent"
    sent.mkdir()
    for name, data in hub_calls[-1][2].items():
        (sent / name).write_bytes(data)
    put_in_hf_cache(tmp_path / "cache", "me/enc", sent, commit="c" * 40)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    wave = np.random.default_rng(5).standard_normal(4000).astype(np.float32)
    loaded = zoo.load("me/enc", cache_dir=tmp_path / "cache")
    assert torch.equal(loaded.embed([wave], sampling_rate=16000, progress=False),
                       micro_hubert.embed([wave], sampling_rate=16000, progress=False))


def test_a_folder_without_its_processor_config_is_refused(hub_calls, micro_hubert, tmp_path):
    """A zoo folder lacking preprocessor_config.json loaded with its processor's defaults, which
    embed otherwise (a graph's feature norm, BEATs' chunks), and was published saved anew with them."""
    micro_hubert.save_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / "preprocessor_config.json").unlink()
    for call in (lambda: zoo.load(tmp_path / "enc"), lambda: publish(tmp_path / "enc", "me/enc", dry_run=True)):
        with pytest.raises(CheckpointError, match="enc has no preprocessor_config.json, which a zoo checkpoint saves"):
            call()
    (tmp_path / "enc" / "preprocessor_config.json").write_text("[]\n")  # was AttributeError: 'list' has no 'items'
    with pytest.raises(CheckpointError, match="preprocessor_config.json holds a JSON list, not an object of settings"):
        zoo.load(tmp_path / "enc")
    micro_hubert.processor.save(tmp_path / "enc")
    settings = json.loads((tmp_path / "enc" / "preprocessor_config.json").read_text())
    (tmp_path / "enc" / "preprocessor_config.json").write_text(json.dumps({**settings, "sampling_rate": "x"}))
    with pytest.raises(ConfigError, match="enc/preprocessor_config.json: AudioProcessor: sampling_rate='x'"):
        zoo.load(tmp_path / "enc")  # the file went unnamed


def test_card_links_in_a_subfolder_or_percent_encoded_are_sent_and_not_left_out(hub_calls, micro_hubert, tmp_path):
    """`img/a.png` was listed as sent and its folder as left out; `loss%20curve.png` and
    `a.png?raw=true`, links that work on the Hub, were refused as missing files."""
    micro_hubert.save_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / "img").mkdir()
    for name in ("img/a.png", "loss curve.png", "b.png"):
        (tmp_path / "enc" / name).write_bytes(b"png")
    (tmp_path / "enc" / "README.md").write_text("# enc\n![a](img/a.png) ![l](loss%20curve.png) ![b](b.png?raw=true)\n")
    plan = publish(tmp_path / "enc", "me/enc", dry_run=True)
    assert all(name in plan for name in ("img/a.png", "loss curve.png", "b.png")) and "left out" not in plan


def test_card_links_with_any_url_scheme_are_not_taken_for_files(tmp_path):
    """`mailto:`, `ftp:` and `hf:` links are not files of the folder: only http(s) was known, so a
    card with a contact address was refused ("links 'mailto:...', which is not a file")."""
    from zoo.publishing import linked_files

    card = "# enc\n[mail](mailto:me@example.org) [mirror](ftp://host/x.bin) [data](hf://datasets/me/x)\n"
    assert linked_files(card, tmp_path) == []


def forbidden() -> Exception:
    """A 403 as huggingface_hub raises it, whatever its HTTP library (requests, httpx)."""
    from types import SimpleNamespace

    from huggingface_hub.errors import HfHubHTTPError

    err = HfHubHTTPError.__new__(HfHubHTTPError)
    Exception.__init__(err, "403 Forbidden: you may not write to this repo")
    err.response = SimpleNamespace(status_code=403)
    return err


@pytest.mark.parametrize("failure, expected", [
    (ConnectionError("no route"), r"OfflineError: cannot reach the Hub to publish to 'me/enc' \(ConnectionError: "
                                  r"no route\); check the network"),
    ("no token", "ConfigError: publishing to 'me/enc' needs a Hugging Face token: log in with `hf auth login`"),
    ("forbidden", r"ZooError: the Hub refused to publish to 'me/enc' \(HTTP 403: 403 Forbidden.*set HF_TOKEN to a "
                  "token that may write to 'me'"),
])
def test_hub_failures_are_zoo_errors_that_say_what_to_do(hub_calls, micro_hubert, tmp_path, monkeypatch, failure,
                                                          expected):
    """Were raw tracebacks: httpx's ConnectError without network, huggingface_hub's token and HTTP errors."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import LocalTokenNotFoundError

    from zoo.errors import ZooError

    error = {"no token": LocalTokenNotFoundError("Token is required"), "forbidden": forbidden()}.get(failure, failure)

    def create_repo(self, repo_id, **kwargs):
        raise error

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    folder = micro_hubert.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ZooError) as raised:
        publish(folder, "me/enc")
    assert re.match(expected, f"{type(raised.value).__name__}: {raised.value}"), str(raised.value)


def card_metadata(folder: Path) -> tuple:
    from huggingface_hub import ModelCard

    data = ModelCard.load(folder / "README.md").data
    return data.base_model, data.license


def test_a_loaded_checkpoint_saved_again_keeps_its_base_model_and_licence(tmp_path):
    """`zoo.load(name).save_pretrained(dir)` wrote a default card without a licence, so a pushed
    copy or fine-tune of hubert-tiny-fsdd (cc-by-sa-4.0, ShareAlike) showed none on the Hub."""
    encoder = zoo.load("hubert-tiny-fsdd")
    encoder.save_pretrained(tmp_path / "enc")
    assert card_metadata(tmp_path / "enc") == ("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0")
    zoo.load(tmp_path / "enc").save_pretrained(tmp_path / "again")  # a local copy keeps the lineage
    assert card_metadata(tmp_path / "again") == ("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0")
    zoo.for_classification(encoder, num_labels=2).save_pretrained(tmp_path / "run" / "classifier")
    assert card_metadata(tmp_path / "run" / "classifier") == ("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0")
    zoo.load(tmp_path / "run").save_pretrained(tmp_path / "clf")  # a run folder names its classifier/
    assert card_metadata(tmp_path / "clf") == ("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0")
    zoo.load("hubert-tiny-fsdd", pretrained=False).save_pretrained(tmp_path / "random")  # none of its weights
    assert card_metadata(tmp_path / "random") == (None, None)


def test_a_hub_repo_saved_again_keeps_its_cards_licence(offline_cache, micro_hubert, tmp_path):
    """A repo id loaded through the HF cache is the base model, with the licence its card states."""
    micro_hubert.save_pretrained(tmp_path / "repo", model_card="---\nlicense: apache-2.0\n---\n\n# micro\n")
    put_in_hf_cache(offline_cache, "test-org/micro", tmp_path / "repo", commit="d" * 40)
    zoo.load("test-org/micro", cache_dir=offline_cache).save_pretrained(tmp_path / "copy")
    assert card_metadata(tmp_path / "copy") == ("test-org/micro", "apache-2.0")


def test_a_hub_repos_other_licence_keeps_its_name_and_link(offline_cache, micro_hubert, tmp_path):
    """`license: other` came back alone in a re-saved card, without the license_name and
    license_link that say which licence it is; a link to the repo's LICENSE file becomes its URL
    at the commit loaded, since the new repo has no such file."""
    from huggingface_hub import ModelCard

    card = ("---\nlicense: other\nlicense_name: acme-research-1.0\nlicense_link: LICENSE\n"
            "base_model: acme/hubert-parent\n---\n\n# micro\n")
    micro_hubert.save_pretrained(tmp_path / "repo", model_card=card)
    put_in_hf_cache(offline_cache, "acme/hubert-x", tmp_path / "repo", commit="e" * 40)
    encoder = zoo.load("acme/hubert-x", cache_dir=offline_cache)
    link = f"https://huggingface.co/acme/hubert-x/blob/{'e' * 40}/LICENSE"
    encoder.save_pretrained(tmp_path / "enc")
    zoo.load(tmp_path / "enc").save_pretrained(tmp_path / "again")
    zoo.for_classification(encoder, num_labels=2).save_pretrained(tmp_path / "clf")
    for folder in ("enc", "again", "clf"):
        data = ModelCard((tmp_path / folder / "README.md").read_text(), ignore_metadata_errors=False).data
        assert (data.base_model, data.license, data.license_name, data.license_link) == (
            "acme/hubert-x", "other", "acme-research-1.0", link), folder


def test_a_loaded_checkpoint_pushed_to_its_own_repo_is_not_its_own_base(hub_calls, tmp_path):
    from huggingface_hub import ModelCard

    encoder = zoo.load("hubert-tiny-fsdd")
    for repo_id, base in [("ssl-zoo/hubert-tiny-fsdd", None), ("me/enc", "ssl-zoo/hubert-tiny-fsdd")]:
        encoder.push_to_hub(repo_id)
        data = ModelCard(hub_calls[-1][2]["README.md"].decode()).data
        assert (data.base_model, data.license) == (base, "cc-by-sa-4.0")


def test_a_folder_of_another_format_is_published_with_its_cards_licence(hub_calls, tmp_path):
    """A transformers folder is sent saved anew under a default card, which dropped the licence its own card states."""
    folder = tmp_path / "hf"
    transformers_hubert(0, folder)
    (folder / "README.md").write_text("---\nlicense: mit\nbase_model: facebook/hubert-base-ls960\n---\n\n# hf\n")
    publish(folder, "me/enc")
    from huggingface_hub import ModelCard

    data = ModelCard(hub_calls[-1][2]["README.md"].decode()).data
    assert (data.base_model, data.license) == ("facebook/hubert-base-ls960", "mit")


def test_a_card_is_taken_as_its_text_or_as_the_path_of_its_file(tmp_path, monkeypatch):
    """`model_card="mycard.md"` was taken for the card's text: a 9-byte README saying `mycard.md`
    was saved and published. A Path, or a one-line string naming a file, is now read, as
    huggingface_hub's ModelCard.load reads it; a `.md` name of no file is refused."""
    monkeypatch.chdir(tmp_path)
    card = "---\nlicense: mit\n---\n# my encoder\n"
    Path("mycard.md").write_text(card)
    encoder = zoo.load("hubert-tiny-fsdd")
    for given in ("mycard.md", Path("mycard.md"), card):
        folder = encoder.save_pretrained(tmp_path / "enc", model_card=given)
        assert (folder / "README.md").read_text() == card, given
    plan = publish(folder, "me/enc", model_card="mycard.md", dry_run=True)
    assert re.search(rf"README.md +{len(card)} bytes \(the card given\)", plan), plan
    for absent in ("absent.md", Path("absent.txt")):
        with pytest.raises(ConfigError, match=f"model_card '{absent}' (names no file|is not a file)"):
            encoder.save_pretrained(tmp_path / "enc", model_card=absent)
    assert (folder / "README.md").read_text() == card
