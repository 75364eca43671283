"""`zoo publish`: push a checkpoint to the Hugging Face Hub with its model card, after checking
that what would be pushed loads, so that nobody downloads a folder the zoo cannot read.

A source is a checkpoint folder, a `zoo pretrain` / `zoo finetune` run folder (its one
checkpoint subfolder), or a zoo name: an embedded checkpoint, an upstream checkpoint
converted from the cache, or a transformers-format one (saved in the zoo's format first).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import urllib.parse
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from zoo import registry
from zoo.cards import CardSource, card_text, model_card_text, origin_card
from zoo.config import read_json
from zoo.errors import CheckpointError, ConfigError, OfflineError, UnknownModelError, ZooError
from zoo.hub import (
    CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, check_name, checkpoint_in, entry_folder, is_offline, load_folder,
    save_folder,
)
from zoo.processing import FILE_NAME as PROCESSOR_FILE
from zoo.run_cards import base_model_of

#: the files of a zoo checkpoint that are always sent (the card is sent from `Publication.card`)
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, PROCESSOR_FILE)
#: targets of Markdown links and images (`[text](target)`, `![alt](target "title")`) and of HTML images
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img\s[^>]*?src=[\"']([^\"']+)[\"']")
#: fenced code blocks and inline code spans, whose brackets are code, not links
CODE = re.compile(r"^(```|~~~).*?^\1|`[^`\n]*`", re.MULTILINE | re.DOTALL)


@dataclasses.dataclass
class Publication:
    """What `publish` sends: the files of `folder` named in `files`, and `card` as README.md;
    `origin` says where they came from (a folder of another format is sent as saved anew)."""

    repo_id: str
    folder: Path
    origin: str
    files: list[str]
    card: str
    card_source: str
    left_out: list[str]
    model_class: str
    parameters: int

    def describe(self, revision: Optional[str] = None, private: bool = False, create_pr: bool = False) -> str:
        """The plan in lines, as `zoo publish --dry-run` prints it, with how `upload` would push:
        the dry run is the only check of a push, and it showed neither --private nor --create-pr."""
        push = f"{'a pull request against ' if create_pr else ''}revision {revision or 'main'}"
        if private:
            push += "; the repo made private if it does not exist yet"
        lines = [f"{self.model_class} ({self.parameters:,} parameters) from {self.origin} to {self.repo_id} ({push}):"]
        lines += [f"  {name:<28} {(self.folder / name).stat().st_size:>14,} bytes" for name in self.files]
        lines.append(f"  {CARD_FILE:<28} {len(self.card.encode()):>14,} bytes ({self.card_source})")
        if self.left_out:
            lines.append(f"left out (not part of the checkpoint, nor linked from its card): {', '.join(self.left_out)}")
        return "\n".join(lines)


def publish(
    source: str | Path,
    repo_id: Optional[str] = None,
    model_card: Optional[CardSource] = None,
    revision: Optional[str] = None,
    private: bool = False,
    create_pr: bool = False,
    commit_message: str = "Upload with ssl-zoo",
    dry_run: bool = False,
    token: Optional[str] = None,
) -> str:
    """Check a checkpoint and push it to a Hub repo as one commit; returns the commit (or pull
    request) URL, or with `dry_run` the plan, without reaching the Hub.

    Args:
        source: a checkpoint folder, a training run folder, or a zoo name.
        repo_id: "org/name"; a zoo name of the zoo's own format defaults to its hub_config's repo.
        model_card: the README.md to send, as its Markdown text or the path of its file, instead
            of the folder's (or the zoo name's) card.
        revision: the branch to push to (created from main if missing).
        private: create the repo private, where it does not exist yet.
        create_pr: open a pull request instead of pushing to the branch.
        commit_message: the message of the one commit.
        dry_run: return the plan (files, sizes, card, repo) without reaching the Hub.
        token: a Hugging Face token, instead of the one logged in (`hf auth login`, HF_TOKEN).
    """
    check_name(source, "publish")  # a part too long for a file name was an OSError from pathlib
    if not dry_run:
        check_online(repr(str(source)) + (f" to {repo_id!r}" if repo_id else ""))
    with ExitStack() as stack:
        publication = prepare(source, repo_id, model_card, stack)
        if dry_run:
            return publication.describe(revision, private, create_pr)
        return upload(publication, revision=revision, private=private, create_pr=create_pr,
                      commit_message=commit_message, token=token)


def check_online(what: str) -> None:
    """Refuse to publish `what` offline, before anything is loaded or saved for it."""
    if is_offline():
        raise OfflineError(f"cannot publish {what}: HF_HUB_OFFLINE is set; publish from a machine with network "
                           "(`zoo publish --dry-run` shows here what would be sent)")


def prepare(source: str | Path, repo_id: Optional[str], model_card: Optional[CardSource],
            stack: ExitStack) -> Publication:
    """Find the folder, load it strictly (a corrupt or mismatched checkpoint fails here, not for
    the people who download it), and decide the files and the card. A folder of another format
    (transformers', or pytorch_model.bin weights) is saved in the zoo's format first."""
    entry = registry.named_entry(source)
    if Path(source).expanduser().is_dir():  # "~/ckpt", which load and info read as a folder of the home
        source = Path(source).expanduser()
    # A zoo name's files are fetched or converted after the checks that need no network, so that
    # an offline dry run without a repo id says so; a local source's errors come first.
    named = entry if entry is not None and entry.has_weights else None
    folder = None if named else source_folder(source, entry)
    repo_id = repo_id or (entry.repo_id if entry is not None and entry.format == "zoo" else None)
    if repo_id is None:
        raise ConfigError(f"say where to publish {str(source)!r}: pass a Hub repo id, e.g. "
                          f"`zoo publish {source} your-org/{Path(str(source)).name}`")
    check_repo_id(repo_id)
    folder = folder or source_folder(source, entry)
    model = load_folder(folder, entry)
    model.origin = base_model_of(str(source), folder)
    as_is, origin = in_zoo_format(folder), str(folder)
    card, card_source = choose_card(folder if as_is else None, named, model, model_card, repo_id)
    if not as_is:
        origin += " (saved anew in the zoo's format: config.json, model.safetensors)"
        staging = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "checkpoint"
        folder = save_folder(model, staging, model_card=card)
    linked = linked_files(card, folder)
    files = [*CHECKPOINT_FILES, *(name for name in linked if name not in CHECKPOINT_FILES)]
    sent_under = {name.split("/")[0] for name in files}  # a linked img/a.png sends part of img/
    left_out = sorted(path.name for path in folder.iterdir() if path.name not in {*sent_under, CARD_FILE})
    parameters = sum(parameter.numel() for parameter in model.parameters())
    return Publication(repo_id, folder, origin, files, card, card_source, left_out, type(model).__name__, parameters)


def source_folder(source: str | Path, entry: Optional[registry.ModelEntry]) -> Path:
    """The checkpoint folder a source names: a folder (or a run folder's checkpoint), or a zoo
    name's files."""
    path = Path(source)
    if path.is_dir():
        return checkpoint_in(path)
    if entry is not None:
        return entry_folder(entry, None, None, False)
    if path.is_file():
        raise CheckpointError(f"{path} is a file, but a zoo checkpoint is a folder; an upstream checkpoint file "
                              "becomes one with `zoo convert FAMILY FILE OUT_DIR`: publish OUT_DIR")
    raise UnknownModelError(f"there is no folder {str(path.absolute())!r} and {str(source)!r} is not a zoo name "
                            f"(`zoo list --pretrained`); publish a local folder or a zoo name"
                            f"{registry.unknown_name_hint(str(source))}")


def check_repo_id(repo_id: str) -> None:
    """Refuse a repo id the Hub would refuse, or one without an owner, before the model is loaded."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"{repo_id!r} is not a Hub repo id ({err}); use 'org/name'") from err
    if "/" not in repo_id:
        raise ConfigError(f"{repo_id!r} names no owner; use 'your-org/{repo_id}' (or your user name)")


def in_zoo_format(folder: Path) -> bool:
    """A zoo config.json and safetensors weights (`load` has refused a zoo folder without its
    preprocessor config): the files can be sent as they are; a transformers folder is saved anew."""
    return "family" in read_json(folder / CONFIG_FILE) and (folder / WEIGHTS_FILE).is_file()


def choose_card(folder: Optional[Path], entry: Optional[registry.ModelEntry], model: Any,
                model_card: Optional[CardSource], repo_id: Optional[str] = None) -> tuple[str, str]:
    """The card to send and where it came from: the one given, the folder's (None: a folder of
    another format, whose card describes that format), the zoo name's `entry`, or a default card
    describing the model, with the base model and licence of where it came from (`origin_card`).
    A zoo name's card (model_cards/NAME.md, which its embedded or converted folder holds too)
    presents the weights in the name's own repo (mert-v1-95m's: read by ssl-zoo from
    m-a-p/MERT-v1-95M): published to another `repo_id`, the name gets the default card instead,
    the one `push_to_hub` sends for `zoo.load(name)`. Its YAML metadata must parse, or the Hub
    refuses the commit."""
    from huggingface_hub import ModelCard

    if model_card is not None:
        card, card_source = card_text(model_card), "the card given"
    elif entry is not None and repo_id != entry.repo_id:
        card, card_source = origin_card(model, repo_id), "a default card describing the model"
    elif folder is not None and (folder / CARD_FILE).is_file():
        card, card_source = (folder / CARD_FILE).read_text(encoding="utf-8"), f"the folder's {CARD_FILE}"
    elif entry is not None and (shipped := model_card_text(entry.name)) is not None:
        card, card_source = shipped, f"model_cards/{entry.name}.md"
    else:
        card, card_source = origin_card(model, repo_id), "a default card describing the model"
    try:
        ModelCard(card, ignore_metadata_errors=False)
    except Exception as err:  # yaml raises several parser error types
        raise CheckpointError(f"the metadata block of {card_source} is not valid YAML ({err}); "
                              "fix the lines between the '---' markers") from err
    return card, card_source


def linked_files(card: str, folder: Path) -> list[str]:
    """The local files the card links or shows (e.g. a loss curve): they are sent beside it, and a
    link to a file the folder lacks is refused, since it would be broken on the Hub."""
    names = []
    for markdown, html in LINK.findall(CODE.sub("", card)):
        target = markdown or html
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target, re.IGNORECASE):
            continue
        name = urllib.parse.unquote(re.split(r"[#?]", target)[0])  # `loss%20curve.png?raw=true` is a file
        path = (folder / name).resolve()
        if not path.is_relative_to(folder.resolve()) or not path.is_file():
            raise CheckpointError(f"the model card links {target!r}, which is not a file in {folder}; "
                                  "put it there or remove the link, since it would be broken on the Hub")
        names.append(path.relative_to(folder.resolve()).as_posix())
    return sorted(set(names))


def upload(publication: Publication, revision: Optional[str] = None, private: bool = False,
           create_pr: bool = False, commit_message: str = "Upload with ssl-zoo", token: Optional[str] = None) -> str:
    """One commit with the checkpoint's files and the card (creating the repo, and the branch
    unless a pull request is asked for); returns its URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(publication.folder / name))
                  for name in publication.files]
    operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=publication.card.encode()))
    with hub_errors(publication.repo_id):
        api.create_repo(publication.repo_id, private=private, exist_ok=True)
        if revision is not None and not create_pr:
            api.create_branch(publication.repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(publication.repo_id, operations, commit_message=commit_message,
                                   revision=revision, create_pr=create_pr)
    return str(commit.pr_url if create_pr else commit.commit_url)


@contextmanager
def hub_errors(repo_id: str) -> Iterator[None]:
    """The Hub's refusals and a missing network as zoo errors that say what to do. A commit is
    atomic on the Hub: a failed one leaves the repo as it was (at most created, empty)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    login = (f"log in with `hf auth login`, or set HF_TOKEN to a token that may write to "
             f"{repo_id.split('/')[0]!r}")
    try:
        yield
    except LocalTokenNotFoundError as err:
        raise ConfigError(f"publishing to {repo_id!r} needs a Hugging Face token: {login}") from err
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        fix = login if status in (401, 403) else "see the Hub's message"
        raise ZooError(f"the Hub refused to publish to {repo_id!r} (HTTP {status}: {err}); {fix}") from err
    except Exception as err:  # requests', httpx's or httpx2's network errors, by huggingface_hub's version
        raise OfflineError(f"cannot reach the Hub to publish to {repo_id!r} ({type(err).__name__}: {err}); check "
                           "the network (`zoo publish --dry-run` shows offline what would be sent)") from err
