"""Checkpoint I/O: local folders, the Hugging Face Hub (through huggingface_hub and its
cache) and upstream files converted once and cached.

A zoo checkpoint folder holds config.json, model.safetensors, preprocessor_config.json
and README.md; a transformers one may hold its weights in shards, listed by an index
(model.safetensors.index.json).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import reprlib
import shutil
from pathlib import Path
from shlex import quote
from typing import Any, Iterator, Optional, Sequence

import torch

from zoo import registry
from zoo.cards import CardSource, card_text, model_card_text, origin_card
from zoo.config import check_keys, read_json
from zoo.errors import CheckpointError, ConfigError, OfflineError, UnknownModelError, ZooError, prefixed
from zoo.numerics import non_finite_weight
from zoo.io import NAME_MAX, atomic_folder, atomic_path, check_writable_folder, through_link, waited_for
from zoo.processing import FILE_NAME as PROCESSOR_FILE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "pytorch_model.bin"
#: what names transformers' index of weights saved in shards (`save_pretrained(max_shard_size=...)`)
INDEX_SUFFIX = ".index.json"
#: the weights a folder may hold, in the order transformers looks for them: each file whole, else its shards' index
WEIGHT_FILES = (WEIGHTS_FILE, WEIGHTS_FILE + INDEX_SUFFIX, LEGACY_WEIGHTS_FILE, LEGACY_WEIGHTS_FILE + INDEX_SUFFIX)
CARD_FILE = "README.md"
#: the zoo cache's folder of upstream checkpoints converted on first load (`converted_folder`)
CONVERTED_FOLDER = "converted"

logger = logging.getLogger(__name__)


def is_offline() -> bool:
    """Whether downloads are off: HF_HUB_OFFLINE as the environment says now, or as huggingface_hub
    read it at import, so that setting it after the import still counts."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(constants.HF_HUB_OFFLINE)


def load(
    name_or_path: str | Path,
    revision: Optional[str] = None,
    cache_dir: Optional[str | Path] = None,
    local_files_only: bool = False,
    device: Optional[str | torch.device] = None,
    dtype: Optional[torch.dtype | str] = None,
    pretrained: bool = True,
    token: Optional[str | bool] = None,
    **others: Any,
) -> Any:
    """Load an encoder (or a fine-tuned head model) by zoo name, Hub repo id or local folder.

    Args:
        name_or_path: a folder, a name from `zoo.list_models()`, or "org/repo".
        revision: Hub branch, tag or commit (default: the hub_config's, else "main").
        cache_dir: Hugging Face cache folder for Hub repos (default: huggingface_hub's); the
            conversions of upstream files go in the zoo's cache, `zoo_cache_root()`.
        local_files_only: never reach the network; use the cache only.
        device / dtype: where and in which precision to put the weights (a torch.dtype or its
            name, e.g. "bfloat16").
        pretrained: False gives the encoder of the same architecture and preprocessing with
            fresh random weights (seed them with `torch.manual_seed`), as timm's
            `create_model(name, pretrained=False)`: the random-init baseline of a probe or a
            start for pretraining. An architecture name (`zoo list --architectures`) builds
            that size, with its family's default preprocessing. No weights are read or
            downloaded: a hub_config's architecture is enough (at another `revision`, its repo's
            config files), and a Hub repo gives only its config files. A head model's folder
            gives its encoder alone.
        token: the Hugging Face access token that every Hub file is fetched with, as
            transformers' `token=` (for a private or gated repo); default: the one `hf auth login`
            stored, or $HF_TOKEN; False sends none. No message shows it.
        others: refused, naming what the zoo takes instead of transformers' `torch_dtype=`,
            `device_map=`, `trust_remote_code=` and `force_download=`.
    """
    refuse_other_keywords(others)
    check_name(name_or_path, "load")
    path = Path(name_or_path).expanduser()  # "~/ckpt" read a folder named ~ in the working folder
    entry = registry.named_entry(name_or_path)
    dtype = resolve_dtype(dtype) or float32_under_another_default()
    not_on_hub = path.is_dir() or (entry is not None and (entry.embedded or entry.upstream is not None))
    if revision is not None and not_on_hub:
        raise ConfigError(f"{str(name_or_path)!r} is not read from a Hub repo, so it has no revisions; "
                          f"drop revision={revision!r}{shadowing(name_or_path)}")
    folder = None
    with hub_token(token):
        if path.is_dir():
            with naming_shadow(name_or_path):
                folder = checkpoint_in(path)
            model = load_folder(folder, pretrained=pretrained)
        elif entry is not None and not pretrained and not entry.embedded:
            model = entry_encoder(entry, revision, cache_dir, local_files_only)
        elif entry is not None:
            folder = entry_folder(entry, revision, cache_dir, local_files_only)
            model = load_folder(folder, entry, pretrained)
        elif is_repo_id(name_or_path):
            try:
                folder = download_repo(name_or_path, revision or "main", cache_dir, local_files_only, pretrained)
            except (OfflineError, UnknownModelError) as err:
                if repo_was_found(err):
                    raise
                where = str(path.absolute())
                raise type(err)(f"{str(err).rstrip('.')}; there is no local folder {where!r} either") from err
            model = load_folder(folder, pretrained=pretrained)
            warn_processor_not_cached(model.processor, folder, str(name_or_path), revision or "main", cache_dir)
        elif not pretrained and str(name_or_path) in registry.list_architectures():
            model = architecture_encoder(str(name_or_path))
        elif path.is_file():
            raise CheckpointError(
                f"{path} is a file, but a zoo checkpoint is a folder (config.json, model.safetensors, ...); "
                "to read an upstream checkpoint file run `zoo convert FAMILY FILE OUT_DIR` and load OUT_DIR"
            )
        elif isinstance(name_or_path, Path) or looks_like_path(str(name_or_path)):
            raise UnknownModelError(f"there is no folder {str(path.absolute())!r}; pass an existing checkpoint folder, "
                                    "a zoo name (`zoo list`) or a Hub repo id")
        else:
            registry.get_entry(str(name_or_path))  # raises with suggestions
    model.eval()
    if pretrained:
        from zoo.run_cards import base_model_of

        model.origin = base_model_of(str(name_or_path), folder)
    return model_to(model, device, dtype) if device is not None or dtype is not None else model


def architecture_encoder(name: str) -> Any:
    """A named size ("gmml-vit-small-patch16") with fresh weights and its family's default
    preprocessing, as timm's `create_model(name, pretrained=False)`: the refusal of the name
    pointed to its config only, and no document said how to build a model from that."""
    config = registry.architecture_config(name)
    return registry.get_family(config.family).encoder_class(config)


def shadowing(name: str | Path) -> str:
    """What to add where a local folder without a checkpoint is read in place of a zoo name or a
    Hub repo id of the same spelling (a results folder called `hubert-base-ls960`, an empty `org/name`)."""
    path, entry = Path(name).expanduser(), registry.find(str(name))
    if not path.is_dir() or path.is_absolute() or not (entry is not None or is_repo_id(str(name))):
        return ""
    if any((folder / CONFIG_FILE).is_file() for folder in (path, *path.iterdir())):
        return ""
    what = f"the zoo name {entry.name!r}" if entry is not None else f"the Hub repo {str(path)!r}"
    return (f" (the folder {str(path.absolute())!r} is read in place of {what}: rename or move it, or run from "
            "another directory)")


@contextlib.contextmanager
def naming_shadow(name: str | Path) -> Iterator[None]:
    """A folder that fails to load says which zoo name or Hub repo it hides, if any."""
    try:
        yield
    except ZooError as err:
        hint = shadowing(name)
        if not hint:
            raise
        raise type(err)(f"{err}{hint}") from err


def checkpoint_in(folder: Path) -> Path:
    """What a folder path names: a checkpoint folder itself, or the one checkpoint subfolder of a
    run folder (`zoo pretrain`'s encoder/, `zoo finetune`'s classifier/). Hidden subfolders are
    not checkpoints: a save killed half-way leaves its temporary `.encoder.*` folder behind. Weights
    without a config are named as such: transformers' Trainer writes them for a zoo head."""
    if (folder / CONFIG_FILE).is_file():
        return folder
    checkpoints = sorted(sub.name for sub in folder.iterdir()
                         if not sub.name.startswith(".") and (sub / CONFIG_FILE).is_file())
    if len(checkpoints) == 1:
        return folder / checkpoints[0]
    if checkpoints:
        raise ConfigError(f"{folder} holds {len(checkpoints)} checkpoints ({', '.join(checkpoints)}); "
                          f"pass one of them, e.g. {folder / checkpoints[0]}")
    if any((folder / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(
            f"{folder} holds weights but no {CONFIG_FILE}, as transformers' Trainer saves a model that is not a "
            "transformers one (Trainer.save_model and its checkpoint-N folders): call save_pretrained(folder) on "
            "the trained model, or build it as for training and load_state_dict the weights "
            "(safetensors.torch.load_file), then save_pretrained")
    raise CheckpointError(f"{folder} has no {CONFIG_FILE}, nor a subfolder with one: pass a checkpoint folder, "
                          "or a `zoo pretrain` or `zoo finetune` run folder")


def info(name_or_path: str | Path, revision: Optional[str] = None, cache_dir: Optional[str | Path] = None,
         local_files_only: bool = False, token: Optional[str | bool] = None) -> dict[str, Any]:
    """A zoo name's hub_config; for a checkpoint folder, a Hub repo of the zoo's format or a zoo
    name's Hub repo at a `revision`, what its config files say, built into the model `load` gives
    (so that what is shown is what loads): family, class, architecture, preprocessing, width of its
    rows and layers (`embed_dim`, `num_layers`: the architecture names them five ways), parameters,
    head and the licence its card states (None where it states none). The weights are neither read
    nor downloaded: a description should not cost a multi-gigabyte fetch. `token`: as `load`'s."""
    check_name(name_or_path, "info")
    entry = registry.named_entry(name_or_path)
    if entry is not None and revision is None:
        return registry.info(str(name_or_path))
    path = Path(name_or_path).expanduser()
    from_hub = is_repo_id(name_or_path) and not path.is_dir()
    with hub_token(token):
        if entry is not None and entry.repo_id and not entry.embedded and entry.upstream is None:  # as load reads it
            folder = download_repo(entry.repo_id, revision, cache_dir, local_files_only, weights=False)
        elif from_hub:
            folder = download_repo(str(name_or_path), revision or "main", cache_dir, local_files_only, weights=False)
        elif path.is_dir() and revision is None:
            with naming_shadow(name_or_path):
                folder = checkpoint_in(path)
        else:
            load(name_or_path, revision, cache_dir, local_files_only)  # raises load's error for this name
    model = load_folder(folder, entry, pretrained=False, head=True)
    encoder = getattr(model, "encoder", model)
    if from_hub:
        warn_processor_not_cached(encoder.processor, folder, str(name_or_path), revision or "main", cache_dir)
    from zoo.run_cards import card_origin

    return {"family": encoder.family, "modality": encoder.modality, "class": type(model).__name__,
            "architecture": encoder.config.to_dict(), "preprocessing": encoder.processor.to_dict(),
            "embed_dim": encoder.embed_dim, "num_layers": encoder.num_layers,  # under one name in every family
            "params": sum(parameter.numel() for parameter in model.parameters()),
            "head": model.head_config() if hasattr(model, "head_config") else None,
            "license": card_origin(folder).license}  # its card's, as a zoo name's hub_config states one


def check_name(name_or_path: Any, call: str) -> None:
    """A name `call` can look up: None, a number or a blank would fail deep in pathlib."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise UnknownModelError(f"{call}({name_or_path!r}): pass a zoo name (`zoo list`), a Hub repo id or a "
                                "checkpoint folder")
    longest = max(len(os.fsencode(part)) for part in Path(name_or_path).parts)
    if longest > NAME_MAX:  # pathlib's is_dir raised "File name too long"
        raise UnknownModelError(f"{call}({reprlib.repr(str(name_or_path))}): a part of it is {longest} bytes long, "
                                f"longer than a file name can be ({NAME_MAX}); pass a zoo name (`zoo list`), a Hub "
                                "repo id or a checkpoint folder")


def is_repo_id(name: str | Path) -> bool:
    """A name spelt as a Hub repo id, "org/name"."""
    return isinstance(name, str) and name.count("/") == 1 and not looks_like_path(name)


def looks_like_path(name: str) -> bool:
    """A name that can only be a path, not a zoo name or a Hub repo id ("org/name"): "./x", "/x",
    "~/x", "a/b/c", "x/" or one with Windows separators."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name


def load_trained(source: str | Path, option: str, run_folders: Sequence[str] = ("encoder",)) -> Any:
    """A trained model a `zoo pretrain` option names: a run folder (the first of its `run_folders`
    that holds a checkpoint, where it holds several), or anything `load` takes (a checkpoint
    folder, a zoo name such as an embedded model, a Hub repo id); its errors name the option."""
    folder = Path(source).expanduser()
    for sub in run_folders:
        if (folder / sub / CONFIG_FILE).is_file():
            return load(folder / sub)
    with prefixed(option, CheckpointError, UnknownModelError):
        return load(source)


#: transformers' `from_pretrained` keywords, and what the zoo's `load` takes instead
FOREIGN_KEYWORDS = {
    "torch_dtype": "pass dtype= (e.g. dtype='bfloat16')",
    "device_map": "pass device= (e.g. device='cuda'); a zoo model runs whole on one device",
    "trust_remote_code": "leave it out: the zoo runs no code from a repo (it reads the MERT repos natively)",
    "force_download": "remove the cached copy first (`hf cache rm model/ORG/NAME`), then load",
}


def refuse_other_keywords(others: dict[str, Any]) -> None:
    """A keyword `load` does not take, as a ConfigError naming the zoo's spelling: transformers'
    were Python's bare "unexpected keyword argument"."""
    if others:
        name = next(iter(others))
        advice = FOREIGN_KEYWORDS.get(name, "its keywords are revision, cache_dir, local_files_only, device, dtype, "
                                            "pretrained and token")
        raise ConfigError(f"load() takes no {name}=; {advice}")


def resolve_dtype(dtype: Optional[torch.dtype | str]) -> Optional[torch.dtype]:
    """A floating torch dtype, or its name ("float32", "bfloat16", "float16", "float64"), as a torch.dtype."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else None
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ConfigError(f"dtype={dtype!r}; use a floating torch dtype or its name: 'float32', 'bfloat16', "
                          "'float16', 'float64'")
    return resolved


def float32_under_another_default() -> Optional[torch.dtype]:
    """float32 where `torch.set_default_dtype` made another the default: models are built in the
    default dtype, so `load` gave float64 weights where float32 is promised (and T-JEPA refused
    them as if half precision)."""
    return torch.float32 if torch.get_default_dtype() != torch.float32 else None


def model_to(model: Any, device: Optional[str | torch.device], dtype: Optional[torch.dtype]) -> Any:
    """`model.to(device, dtype)` with a zoo error naming a device that does not exist here. A head
    model's own layers stay float32, as `for_classification` makes them on a half-precision
    encoder: its encoder alone takes `dtype`."""
    from zoo.heads import EncoderWithHead

    try:
        if device is not None and torch.device(device).type == "meta":  # embed(device="meta") lost the weights
            raise ConfigError("device='meta' holds no values: moving the model there drops its weights for good; "
                              "use 'cpu' or a GPU ('cuda')")
        if isinstance(model, EncoderWithHead):
            model.encoder.to(dtype=dtype)
            return model.to(device=device)
        return model.to(device=device, dtype=dtype)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, AssertionError) as err:
        raise ConfigError(f"cannot move the model to device={str(device)!r} ({err}); use 'cpu', or a device "
                          "this machine has (torch.cuda.is_available())") from err


def entry_folder(entry: registry.ModelEntry, revision: Optional[str], cache_dir: Optional[str | Path],
                 local_files_only: bool) -> Path:
    """Where the files of a published checkpoint are, fetching or converting them if needed."""
    if not entry.has_weights:
        dataset = entry.pretraining.get("dataset", "DATASET")
        raise CheckpointError(
            f"{entry.name!r} is a pretraining recipe with no published weights yet; make them with "
            f"`zoo pretrain {entry.family} --dataset {dataset} -o OUT` and load OUT/encoder"
        )
    if entry.embedded:
        folder = registry.data_folder("checkpoints") / entry.name
        if not (folder / CONFIG_FILE).is_file():
            raise CheckpointError(f"embedded checkpoint {entry.name!r} is missing from {folder}; reinstall ssl-zoo")
        return folder
    if entry.upstream is not None:
        return converted_folder(entry, cache_dir, local_files_only)
    return download_repo(entry.repo_id, revision or entry.revision, cache_dir, local_files_only)


def check_revision(revision: Any) -> None:
    """Refuse a revision that is a path: offline, huggingface_hub reads the commit a revision names
    from the file refs/REVISION, so `../../x` read a file outside the cache. A branch may hold '/'
    (refs/pr/1), never a '..' segment."""
    if revision is None:
        return
    if (not isinstance(revision, str) or not revision.strip() or revision.startswith("/") or "\\" in revision
            or ".." in revision.split("/")):
        raise ConfigError(f"revision={revision!r} is not a branch, tag or commit of a Hub repo; give one such as "
                          "'main', 'v1.0' or a commit hash")


#: the `token=` of the `load` or `info` call under way in this thread or task, sent with each Hub file it fetches
HUB_TOKEN: contextvars.ContextVar[Optional[str | bool]] = contextvars.ContextVar("HUB_TOKEN", default=None)


@contextlib.contextmanager
def hub_token(token: Optional[str | bool]) -> Iterator[None]:
    """Send `token` with every Hub file fetched inside: `load` and `info` reach `_fetch` through
    download_repo, entry_folder, converted_folder and download_upstream, and a context variable
    spares each of them a parameter that one forgotten call would drop (a shard, an upstream file)."""
    previous = HUB_TOKEN.set(token)
    try:
        yield
    finally:
        HUB_TOKEN.reset(previous)


def _fetch(repo_id: str, filename: str, revision: str, cache_dir, local_files_only) -> Path:
    """One file through huggingface_hub, with zoo errors that say how to get it, sent with the
    token of `hub_token`. HF_HUB_OFFLINE set after huggingface_hub was imported (which reads it
    once) still keeps this offline."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    check_revision(revision)
    try:
        return Path(huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir,
            local_files_only=local_files_only or is_offline(), token=HUB_TOKEN.get(),
        ))
    except errors.HFValidationError as err:
        raise UnknownModelError(f"{repo_id!r} is not a valid Hub repo id ({err})") from err
    except errors.LocalEntryNotFoundError as err:
        raise OfflineError(
            f"{filename} of Hub repo {repo_id!r} (revision {revision!r}) is not in the Hugging Face cache "
            f"({cache_dir or constants.HF_HUB_CACHE}) and the Hub cannot be reached "
            "(offline mode or no network). On a machine with network run "
            f"`hf download {repo_id} --revision {revision}` and copy the cache here, or pass a local folder."
        ) from err
    except errors.RevisionNotFoundError as err:
        raise UnknownModelError(
            f"Hub repo {repo_id!r} has no revision {revision!r}; check the branch, tag or commit") from err
    except errors.GatedRepoError as err:  # a RepositoryNotFoundError, but the repo is there
        raise UnknownModelError(
            f"Hub repo {repo_id!r} is gated: accept its conditions at {constants.ENDPOINT}/{repo_id} while logged in "
            f"(`hf auth login`, or token=), then load again (the Hub said: {' '.join(str(err).split())})"
        ) from err
    except errors.RepositoryNotFoundError as err:
        raise UnknownModelError(
            f"Hub repo {repo_id!r} does not exist or is private; check the id or log in with `hf auth login`"
        ) from err
    except errors.EntryNotFoundError as err:
        raise CheckpointError(f"Hub repo {repo_id!r} (revision {revision!r}) has no file {filename}") from err
    except OSError as err:  # the cache itself: HF_HOME set to a file, a cache folder that cannot be written
        raise ConfigError(f"cannot use the Hugging Face cache for {repo_id!r} ({type(err).__name__}: {err}); point "
                          f"HF_HOME or HF_HUB_CACHE (now {cache_dir or constants.HF_HUB_CACHE}) to a folder you can "
                          "write to") from err


def repo_was_found(err: ZooError) -> bool:
    """Whether the Hub answered for the repo itself (gated, or without the revision asked for): then
    the name was meant as a repo id, and a note that no local folder has that name misleads."""
    from huggingface_hub import errors
    return isinstance(err.__cause__, (errors.GatedRepoError, errors.RevisionNotFoundError))


def download_repo(repo_id: str, revision: Optional[str], cache_dir: Optional[str | Path] = None,
                  local_files_only: bool = False, weights: bool = True) -> Path:
    """Fetch config, preprocessor config, card and (unless `weights` is False) the weights of a Hub
    repo; returns the snapshot folder, named by its commit. A preprocessor config or card the repo
    lacks, or that is not cached offline, is left out (`warn_processor_not_cached` says which)."""
    config = _fetch(repo_id, CONFIG_FILE, revision, cache_dir, local_files_only)
    for optional in (PROCESSOR_FILE, CARD_FILE):
        with contextlib.suppress(CheckpointError, OfflineError):
            _fetch(repo_id, optional, revision, cache_dir, local_files_only)
    if weights:
        fetch_weights(repo_id, revision, cache_dir, local_files_only)
    return config.parent


def fetch_weights(repo_id: str, revision: Optional[str], cache_dir: Optional[str | Path],
                  local_files_only: bool) -> None:
    """The first of `WEIGHT_FILES` the repo has (a shard index with every shard it lists). Where it
    has none, the error is model.safetensors's: the zoo's own format is the one to name."""
    first_missing: Optional[ZooError] = None
    for name in WEIGHT_FILES:
        try:
            found = _fetch(repo_id, name, revision, cache_dir, local_files_only)
        except (OfflineError, CheckpointError) as err:
            first_missing = first_missing or err
            continue
        for shard in listed_shards(found) if name.endswith(INDEX_SUFFIX) else ():
            _fetch(repo_id, shard, revision, cache_dir, local_files_only)
        return
    raise first_missing from None


def warn_processor_not_cached(processor: Any, folder: Path, repo_id: str, revision: str,
                              cache_dir: Optional[str | Path]) -> None:
    """Warn that a Hub repo's preprocessor_config.json is merely not cached (transformers' AutoModel
    caches only config.json and the weights), naming the settings used instead: a model needing
    `do_normalize` would run without it. A file the Hub said the repo lacks (huggingface_hub's
    `.no_exist` marker, under the snapshot's commit) is no cause: downloading changes nothing."""
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(repo_id, PROCESSOR_FILE, cache_dir, revision=folder.name) is not None:
        return  # cached, or `_CACHED_NO_EXIST`: the repo has none
    settings = ", ".join(f"{key}={value!r}" for key, value in processor.to_dict().items() if key != "processor_type")
    logger.warning("%s of Hub repo %r (revision %r) is not in the cache: the processor runs with its defaults and "
                   "what config.json implies (%s), which may not be the model's. Run `hf download %s --revision %s` "
                   "where the Hub is reachable, or pass a local folder with the file", PROCESSOR_FILE, repo_id,
                   revision, settings, repo_id, revision)


def zoo_cache_root() -> Path:
    """The zoo's own cache (upstream files downloaded by URL, conversions, processed datasets):
    $ZOO_CACHE, else $HF_HOME/ssl-zoo. It sits beside the Hub cache, never inside a `cache_dir`,
    which holds Hub repos only: `hf cache scan` counts any other folder there a corrupt repo."""
    from huggingface_hub import constants

    return Path(os.environ.get("ZOO_CACHE") or Path(constants.HF_HOME) / "ssl-zoo")


def datasets_root() -> Path:
    """Where named datasets are copied and processed: $ZOO_DATASETS, else the zoo cache's datasets/."""
    return Path(os.environ.get("ZOO_DATASETS") or zoo_cache_root() / "datasets")


def converted_folder(entry: registry.ModelEntry, cache_dir: Optional[str | Path] = None,
                     local_files_only: bool = False) -> Path:
    """The zoo checkpoint made from an upstream file: downloaded, checked and converted once."""
    upstream = entry.upstream
    sha256 = upstream.get("sha256")
    if sha256 is None:
        source = download_upstream(entry, cache_dir, local_files_only)
        sha256 = file_sha256(source)
        logger.warning("the upstream file of %r has sha256 %s; its hub_config pins no digest yet: "
                       "pin this one (\"sha256\") once it is checked against the original", entry.name, sha256)
    folder = zoo_cache_root() / CONVERTED_FOLDER / entry.name / sha256[:16]
    if (folder / WEIGHTS_FILE).is_file():
        return folder
    locks = zoo_cache_root() / LOCKS_FOLDER  # a failed conversion leaves nothing in converted/
    locks.mkdir(parents=True, exist_ok=True)
    with waited_for(locks / f"{entry.name}-{sha256[:16]}.lock", f"waiting for another process converting "
                                                                 f"{entry.name!r} into {folder.parent}"):
        if not (folder / WEIGHTS_FILE).is_file():  # the process waited for made it: 2 of 4 converted it twice
            convert_upstream(entry, sha256, cache_dir, local_files_only, folder)
    return folder


#: the zoo cache's folder of lock files (one a conversion)
LOCKS_FOLDER = ".locks"


def convert_upstream(entry: registry.ModelEntry, sha256: str, cache_dir, local_files_only: bool,
                     folder: Path) -> None:
    """Download (or find) an upstream file, check it and save its conversion into `folder`."""
    source = download_upstream(entry, cache_dir, local_files_only)
    check_sha256(source, sha256)
    converter = registry.get_family(entry.family).converters.get(entry.upstream["format"])
    if converter is None:
        raise CheckpointError(f"family {entry.family!r} has no converter for format {entry.upstream['format']!r}")
    model = converter(source)
    check_parameter_count(entry, model, source)
    save_folder(model, folder, model_card=model_card_text(entry.name))


def check_parameter_count(entry: registry.ModelEntry, model: Any, source: Path) -> None:
    """An unpinned upstream file must at least make a model of the hub_config's size: another
    checkpoint's file (a tiny one placed where the download is looked for) loaded under the name."""
    count = sum(parameter.numel() for parameter in getattr(model, "encoder", model).parameters())
    if entry.params is not None and count != entry.params:
        raise CheckpointError(
            f"{source} converts to an encoder of {count:,} parameters, but {entry.name!r} has {entry.params:,}: it is "
            f"another checkpoint's file. Delete it and place {entry.name}'s own there, or convert the file itself "
            f"(`zoo convert {entry.family} FILE OUT_DIR`) and load OUT_DIR")


def download_upstream(entry: registry.ModelEntry, cache_dir, local_files_only: bool) -> Path:
    """The upstream file of a hub_config: a Hub repo file (HF cache) or a URL (zoo cache)."""
    upstream, name = entry.upstream, entry.name
    if "repo_id" in upstream:
        return _fetch(upstream["repo_id"], upstream["filename"], upstream.get("revision", "main"),
                      cache_dir, local_files_only)
    url = upstream["url"]
    digest = upstream.get("sha256") or "unpinned"
    target = zoo_cache_root() / "downloads" / digest / url.split("?")[0].rsplit("/", 1)[-1]
    if target.is_file():
        return target
    fix = (f"download it on a machine with network and place it at {target}, or run "
           f"`zoo convert {entry.family} FILE OUT_DIR --format {upstream['format']}` and load OUT_DIR")
    if local_files_only or is_offline():
        raise OfflineError(f"upstream file of {name!r} ({url}) is not cached at {target} and downloads are off "
                           f"(offline mode): {fix}")
    from huggingface_hub.file_download import http_get

    try:
        with atomic_path(target) as tmp, tmp.open("wb") as handle:
            http_get(url, handle)
    except Exception as err:  # httpx and huggingface_hub raise several unrelated types
        raise OfflineError(f"cannot download the upstream file of {name!r} from {url} ({type(err).__name__}: "
                           f"{err}); check the network, or {fix}") from err
    return target


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read 1 MiB at a time (upstream checkpoints run to gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    """Refuse a downloaded upstream file whose sha256 is not the one its hub_config pins, saying
    to download it again."""
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"{path} has sha256 {actual}, expected {expected}: the download is corrupt or "
            "the upstream file changed; delete it and download again"
        )


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The first of `WEIGHT_FILES` a folder holds as one state dict: model.safetensors (or a
    transformers pytorch_model.bin), or the shards its index lists, merged."""
    name = next((name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if name is None:
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE} (nor {LEGACY_WEIGHTS_FILE}, nor a sharded "
                              f"checkpoint's {WEIGHTS_FILE}{INDEX_SUFFIX})")
    safetensors = name.startswith(WEIGHTS_FILE)  # an index's shards are read as the file it stands for
    if not name.endswith(INDEX_SUFFIX):
        return read_weights_file(folder / name, safetensors)
    state: dict[str, torch.Tensor] = {}
    for shard in listed_shards(folder / name):
        if not (folder / shard).is_file():
            raise CheckpointError(f"{folder / shard} is missing, though {name} lists it: the sharded checkpoint is "
                                  f"incomplete. {damaged_weights_fix(folder)}")
        state.update(read_weights_file(folder / shard, safetensors))
    return state


def listed_shards(index: Path) -> list[str]:
    """The shard files a transformers index lists (its weight_map's values), each a file name beside
    the index: a path ("../x") would read outside the checkpoint."""
    weight_map = read_json(index, CheckpointError).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise CheckpointError(f"{index} has no weight_map of tensor names to shard files: it is damaged. "
                              f"{damaged_weights_fix(index.parent)}")
    shards = sorted(set(weight_map.values()))
    outside = [shard for shard in shards if Path(shard).name != shard or shard in {"", ".."}]
    if outside:
        raise CheckpointError(f"{index} lists shard {outside[0]!r}, which is not a file name beside it: it is damaged. "
                              f"{damaged_weights_fix(index.parent)}")
    return shards


def read_weights_file(path: Path, safetensors: bool) -> dict[str, torch.Tensor]:
    """One weights file, whole or a shard: safetensors, or a transformers pickle (`read_torch_file`)."""
    if not safetensors:
        return read_torch_file(path, "a transformers pytorch_model.bin")
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several unrelated types
        raise CheckpointError(f"cannot read {path} ({err}): the file is corrupt or incomplete. "
                              f"{damaged_weights_fix(path.parent)}") from err


def damaged_weights_fix(folder: Path) -> str:
    """How to replace damaged weights, by where they are: a conversion the zoo cached is made again
    once deleted, a Hub download (a snapshot `models--ORG--NAME/snapshots/COMMIT` of any cache)
    must be forced at its commit, into its cache (the cache keeps the damaged copy), a saved folder
    saved again."""
    from huggingface_hub import constants

    where = folder.resolve()
    if where.is_relative_to((zoo_cache_root() / CONVERTED_FOLDER).resolve()):
        return f"Delete {folder}: the next load converts the upstream file again"
    repo, cache = where.parent.parent, where.parent.parent.parent
    if where.parent.name == "snapshots" and repo.name.startswith("models--"):
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        option = "" if cache == Path(constants.HF_HUB_CACHE).resolve() else f" --cache-dir {quote(str(cache))}"
        return (f"Download it again with `hf download {repo_id} --revision {where.name} --force-download{option}` "
                "(the cache keeps the damaged copy)")
    return "Save it again, or copy it again from where it was made"


def read_torch_file(path: str | os.PathLike, what: str, allowed: Sequence[Any] = ()) -> Any:
    """`torch.load(weights_only=True)` of an upstream file, with `allowed` classes (e.g. the
    argparse Namespace that GMML and fairseq pickle), failing with one CheckpointError that
    names the file and what it should be; torch's advice to retry without weights_only (which
    would run the file's pickled code) is left out of the message."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder; pass {what}, a file")
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist; pass {what}")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch raise several unrelated types
        pickled, reason = refused_load(err)
        if pickled:
            raise CheckpointError(foreign_pickle(path, what, pickled)) from err
        raise CheckpointError(
            f"cannot read {str(path)!r} as {what}: the file is corrupt or incomplete (download it again), or it "
            f"pickles classes other than tensors and plain containers, which are never unpickled ({reason})"
        ) from err


#: how torch names a global that weights_only refuses: one not allowed, or one of a blocked module (os.system)
REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def refused_load(err: Exception) -> tuple[Optional[str], str]:
    """What a failed `torch.load(weights_only=True)` says, without torch's advice to load the file
    again with weights_only=False (which runs the code it pickles): the global it refused, where
    that was the failure, and the first line of its reason."""
    detail = str(err).split("WeightsUnpickler error:")[-1]
    pickled = REFUSED_GLOBAL.search(detail)
    lines = [line.strip() for line in detail.splitlines()
             if line.strip() and "weights_only" not in line and "Weights only load failed" not in line]
    return (pickled[1] if pickled else None), (lines[0] if lines else type(err).__name__)


#: the upstream files that pickle a class, for the message on a file given to another family's converter
PICKLED_BY = {"argparse.Namespace": "GMML training checkpoints (zoo convert gmml) and fairseq ones (zoo convert "
                                    "hubert)"}


def foreign_pickle(path: Path, what: str, name: str) -> str:
    """The message on an upstream file that pickles a class its converter never unpickles: most often
    another family's checkpoint, rarely a corrupt one."""
    known = f" {PICKLED_BY[name]} pickle it: is the file one of those?" if name in PICKLED_BY else ""
    return (f"{str(path)!r} is not {what}: it pickles {name}, which is not unpickled for such a file (unpickling "
            f"runs code).{known}")


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path | str) -> None:
    """`load_state_dict(strict=True)` whose failure lists every missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{key}: {tuple(state[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(state) & set(expected) if state[key].shape != expected[key].shape
    )
    kinds = sorted(f"{key}: {state[key].dtype} for {expected[key].dtype}"
                   for key in set(state) & set(expected) if dtype_kind(state[key]) != dtype_kind(expected[key]))
    if missing or unexpected or shapes or kinds:
        raise CheckpointError(
            f"weights in {where} do not match its config: {key_listing('missing', missing)}, "
            f"{key_listing('unexpected', unexpected)}, {key_listing('wrong shapes', shapes)}, "
            f"{key_listing('wrong kinds of number', kinds)}. The config.json and "
            "the weights come from different models; re-download the checkpoint or save it again."
        )
    broken = non_finite_weight(state)
    if broken is not None:
        raise CheckpointError(f"weights in {where} hold NaN or infinite values ({broken}); every output would be "
                              "NaN. The run that saved them diverged, or the file is damaged: save it again")
    module.load_state_dict(state, strict=True)


def dtype_kind(tensor: torch.Tensor) -> str:
    """Float weights load into float parameters of any precision; bool, integer or complex ones
    would be cast silently (bool to 1.0, a complex number to its real part)."""
    if tensor.is_complex():
        return "complex"
    if tensor.is_floating_point():
        return "float"
    return "bool" if tensor.dtype == torch.bool else "integer"


def key_listing(what: str, keys: list[str], shown: int = 10) -> str:
    """`N what [the first `shown` keys] and M more`: every problem of a checkpoint counted in one error,
    without a message of thousands of keys."""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} {what} {keys[:shown]}{more}"


def load_folder(folder: Path, entry: Optional[registry.ModelEntry] = None, pretrained: bool = True,
                head: bool = False) -> Any:
    """Build the model a checkpoint folder describes and load its weights strictly (with
    `pretrained` False: its encoder with random weights, its weights file never read, and with
    `head` its head too, as `info` counts it)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}; is it a checkpoint folder?")
    config_dict = read_json(folder / CONFIG_FILE, CheckpointError)
    state = read_weights(folder) if pretrained else None
    with prefixed(str(folder / CONFIG_FILE)):  # the family's module is imported outside `naming_file`:
        family = family_of(config_dict)        # an error of its import is no malformed entry of the file
    with naming_file(folder / CONFIG_FILE):
        if "family" in config_dict:
            check_processor_file(folder)
            config = family.encoder_class.config_class.from_dict(config_dict)
        elif pretrained:
            config, state = family.from_transformers(config_dict, state)
        else:
            config = family.encoder_class.config_class.from_transformers(config_dict)
    processor = read_processor(folder, family.encoder_class, config, entry)
    # weights about to be replaced by the checkpoint's are drawn on a fork of torch's RNG: loading
    # moved the caller's random stream (torch.rand after a load differed from one without)
    with torch.random.fork_rng(devices=[], enabled=pretrained), buildable(folder / CONFIG_FILE):
        encoder = family.encoder_class(config, processor)
        if not (pretrained or head):
            return encoder
        model = encoder
        if "head" in config_dict:
            from zoo.heads import head_from_config

            with naming_file(folder / CONFIG_FILE):
                model = head_from_config(encoder, config_dict["head"])
    if pretrained:
        check_saved_dtypes(encoder, state, folder)
        load_state(model, state if "head" in config_dict else model.weights_from_saved(state), folder)
    return model


def check_saved_dtypes(encoder: Any, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Weights saved in a precision their encoder refuses (`check_dtype`) are rounded for good:
    loaded into float32 they ran without a word, and a T-JEPA saved in half precision by a zoo that
    let `.half()` through embedded rows 6.6 off."""
    for dtype in sorted({value.dtype for value in state.values() if value.is_floating_point()}, key=str):
        try:
            encoder.check_dtype(dtype)
        except ConfigError as err:
            raise CheckpointError(f"{folder} holds its weights in {dtype}, which they cannot be used in: they were "
                                  f"rounded when saved ({err}). Save the encoder again from weights that were never "
                                  "cast, or pretrain it again") from err


@contextlib.contextmanager
def buildable(path: Path) -> Iterator[None]:
    """A model the settings in `path` describe but that cannot be made (sizes whose weights would
    take terabytes: torch's allocator fails) is the file's fault, said as such, not a traceback."""
    try:
        yield
    except (RuntimeError, MemoryError, OverflowError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path} describes a model that cannot be built here ({type(err).__name__}: "
                              f"{reason[:200]}); check its sizes, or use the checkpoint's own config.json") from err


def family_of(config_dict: dict[str, Any]) -> registry.Family:
    """The family a checkpoint's config names, by its zoo "family" or transformers "model_type"."""
    if "family" in config_dict:
        return registry.get_family(config_dict["family"])
    if "model_type" in config_dict:
        return registry.family_for_model_type(config_dict["model_type"])
    raise CheckpointError("it names neither a zoo family nor a transformers model_type")


@contextlib.contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """Errors raised while a file's contents are read name the file: the zoo's keep their class,
    a malformed entry (a missing key, a value of the wrong type) becomes a CheckpointError."""
    with prefixed(str(path)):
        try:
            yield
        except ZooError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise CheckpointError(f"a malformed entry ({type(err).__name__}: {err}); save the checkpoint "
                                  "again") from err


def entry_encoder(entry: registry.ModelEntry, revision: Optional[str] = None, cache_dir: Optional[str | Path] = None,
                  local_files_only: bool = False) -> Any:
    """A random-init encoder of a hub_config's architecture and preprocessing: what
    `load(name, pretrained=False)` gives for a checkpoint that is not embedded, with nothing
    downloaded (an upstream tagger's entry describes the encoder it fine-tuned). A Hub
    checkpoint asked for at a `revision`, or whose hub_config states no architecture, is
    built from the config files of its repo instead, without the weights."""
    if entry.repo_id is not None and (revision is not None or not entry.architecture):
        folder = download_repo(entry.repo_id, revision or entry.revision, cache_dir, local_files_only, weights=False)
        return load_folder(folder, entry, pretrained=False)
    if not entry.architecture:
        raise ConfigError(f"hub_config {entry.name!r} states no architecture, so pretrained=False cannot build it "
                          "without its weights; add its \"architecture\", or load it once and pass its folder")
    family = registry.get_family(entry.family)
    config = family.encoder_class.config_class.from_dict(entry.architecture)
    return family.encoder_class(config, read_processor(None, family.encoder_class, config, entry))


def check_processor_file(folder: Path) -> None:
    """A zoo checkpoint folder must hold the preprocessing it was saved with: without it, the
    defaults loaded silently and gave other embeddings (a graph's feature norm, BEATs' chunks)."""
    if not (folder / PROCESSOR_FILE).is_file():
        raise CheckpointError(f"{folder} has no {PROCESSOR_FILE}, which a zoo checkpoint saves its preprocessing in "
                              "(the defaults may embed otherwise); copy it from where the checkpoint came from, or "
                              "save the encoder again with save_pretrained")


def read_processor(folder: Optional[Path], encoder_class: type, config: Any, entry: Optional[registry.ModelEntry]):
    """The folder's preprocessor_config.json (if a folder is given), over the hub_config's
    settings, over what the model config implies (`default_processor_settings`), over the
    processor's defaults."""
    processor_class = encoder_class.processor_class
    if entry is not None:  # an unknown key was a TypeError from the processor's constructor, naming no file
        check_keys(processor_class, entry.preprocessing, f"hub_config {entry.name!r}: preprocessing")
    settings = {**encoder_class.default_processor_settings(config), **(entry.preprocessing if entry else {})}
    path = folder / PROCESSOR_FILE if folder is not None else None
    if path is None or not path.is_file():
        return processor_class(**settings)
    data = read_json(path, CheckpointError)
    with naming_file(path):  # a bad setting is the file's: "AudioProcessor: sampling_rate='x'" named none
        if "processor_type" in data:
            return processor_class.from_dict(data)
        names = processor_class.__dataclass_fields__
        settings.update({key: value for key, value in data.items() if key in names})  # transformers feature extractor
        return processor_class(**settings)


def save_folder(model: Any, folder: str | Path, model_card: Optional[CardSource] = None,
                extra_files: Optional[dict[str, Path]] = None) -> Path:
    """Write a checkpoint folder atomically: it appears whole or not at all. `model_card`: the
    card's text or file (`card_text`); `extra_files` maps names in the folder to files copied
    there (a loss curve the card shows)."""
    from safetensors.torch import save_file

    folder, model_card = Path(folder).expanduser(), card_text(model_card)  # not a folder named ~ here
    extra_files = extra_files or {}
    check_save_target(folder, set(extra_files))
    with atomic_folder(folder) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(model.config_dict_to_save(), indent=2) + "\n", encoding="utf-8")
        state = {key: value.detach().cpu().contiguous() for key, value in model.weights_to_save().items()}
        refuse_non_finite(state, folder)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        model.processor.save(tmp)
        (tmp / CARD_FILE).write_text(model_card or origin_card(model), encoding="utf-8")
        for name, source in extra_files.items():
            shutil.copyfile(source, tmp / name)
    return folder


def refuse_non_finite(state: dict[str, torch.Tensor], folder: Path) -> None:
    """Refuse to save weights holding NaN or infinities: `load` refuses them (every output would be
    NaN), so the folder written was one that could never be used."""
    broken = non_finite_weight(state)
    if broken is not None:
        raise CheckpointError(f"cannot save {folder}: the weights hold NaN or infinite values ({broken}), which "
                              "load refuses, as every output would be NaN; the training that made them diverged: "
                              "retrain with a lower learning rate")


def check_save_target(folder: Path, extra_names: set[str] = frozenset()) -> None:
    """Refuse to save over a file, over the working folder (which cannot be renamed), into a place
    that cannot be written, or over a folder holding anything but a checkpoint's own files (and
    the `extra_names` the save writes again) or holding them without being a checkpoint (no
    config.json: a README.md of one's own): the new folder replaces the old one whole, so those
    would be deleted. `zoo convert` checks this before it converts."""
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; a checkpoint is a folder, so pass a new or empty folder path")
    if Path.cwd().is_relative_to(folder.resolve()):
        raise CheckpointError(f"{folder} holds the working folder, which saving would replace; save from outside "
                              "it (cd ..), or into a new folder")
    check_writable_folder(through_link(folder).parent, "a checkpoint")  # a link is written at its target
    own = {CONFIG_FILE, WEIGHTS_FILE, LEGACY_WEIGHTS_FILE, PROCESSOR_FILE, CARD_FILE, *extra_names}
    entries = list(folder.iterdir()) if folder.is_dir() else []
    others = sorted(entry.name for entry in entries if entry.name not in own or not entry.is_file())
    if entries and not others and not (folder / CONFIG_FILE).is_file():  # a README.md of the user's own
        others = sorted(entry.name for entry in entries)
    if others:
        raise CheckpointError(
            f"{folder} holds {len(others)} other file(s) or folder(s) ({', '.join(others[:5])}); saving replaces "
            "the whole folder and would delete them: save into a new or empty folder, or move them away first"
        )


def push_folder(model: Any, repo_id: str, model_card: Optional[CardSource] = None, private: bool = False,
                revision: Optional[str] = None, commit_message: str = "Upload with ssl-zoo", create_pr: bool = False,
                token: Optional[str] = None) -> str:
    """Save into a temporary folder and publish it as one commit; returns the commit URL."""
    import tempfile

    from zoo.publishing import check_online, publish

    check_online(f"to {repo_id!r}")  # publish would name the temporary folder
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_folder(model, Path(tmp) / "checkpoint", model_card=model_card or origin_card(model, repo_id))
        return publish(folder, repo_id, private=private, revision=revision, commit_message=commit_message,
                       create_pr=create_pr, token=token)
