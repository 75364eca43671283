"""The pretrained table and the family registry.

`hub_configs/*.json` (one file per published checkpoint, stem = zoo name) are read once
into `ModelEntry`s. Families live in `modalities/<modality>/<family>/`; the folder name is
the family name, so the zoo finds a family without importing it and imports it only when
a checkpoint of that family is built. On import a family calls `register_family`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import importlib
import re
import reprlib
import typing
import urllib.parse
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from zoo.config import check_keys, read_json, value_matches
from zoo.errors import ConfigError, UnknownModelError

#: what a family's libraries warn of at import, naming nothing the user can change: PyG scripts
#: modules with `torch.jit.script`, which torch >= 2.10 calls deprecated on every graph load
IMPORT_NOISE = "`torch.jit.script` is deprecated"

MODALITIES = ("speech", "audio", "vision", "graph", "tabular")
#: folder of each modality under `modalities/`
MODALITY_FOLDERS = {"speech": "speech", "audio": "audio", "vision": "vision", "graph": "graphs", "tabular": "tabular"}


@contextmanager
def quiet_imports() -> Iterator[None]:
    """Import a family's code (or run a whole `zoo` command) without its libraries'
    `IMPORT_NOISE`: `zoo.load("graphmae-cora")` printed PyG's FutureWarning in every Python session."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=IMPORT_NOISE, category=FutureWarning)
        yield


def modality_part(modality: str, part: str, function: str) -> Optional[Callable[..., Any]]:
    """`function` of `modalities/<modality's folder>/<part>.py` (e.g. the named datasets' loaders),
    or None where the modality has no such part: the commands that take `--dataset` ask each
    modality for what it knows by name."""
    name = f"modalities.{MODALITY_FOLDERS[modality]}.{part}"
    try:
        with quiet_imports():
            module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:  # the part exists but lacks a package it imports
            raise
        return None
    return getattr(module, function, None)


def check_upstream(name: str, upstream: Any) -> None:
    """Refuse an `upstream` entry whose fields would lead a download astray: its sha256 names the
    cache folder the file is downloaded into, so a path there wrote the file outside the cache,
    before the digest was checked; a plain-http URL or one without a file name is refused too."""
    where = f"hub_config {name!r}: upstream"
    if not isinstance(upstream, dict):
        raise ConfigError(f"{where} is a {type(upstream).__name__}; give an object with url (or repo_id and "
                          "filename), format and sha256")
    digest, url = upstream.get("sha256"), upstream.get("url")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ConfigError(f"{where} sha256 {reprlib.repr(digest)} is not 64 lower-case hex digits; give the file's "
                          "digest (sha256sum FILE), or null where none is known")
    if url is not None:
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme != "https" or Path(parts.path).name in ("", ".", ".."):
            raise ConfigError(f"{where} url {reprlib.repr(url)} must be an https:// address ending in a file name")
    filename = upstream.get("filename")
    if filename is not None and (not isinstance(filename, str) or filename.startswith("/")
                                 or ".." in filename.replace("\\", "/").split("/")):
        raise ConfigError(f"{where} filename {reprlib.repr(filename)} must be a path inside its repo")
    if not isinstance(upstream.get("format"), str):
        raise ConfigError(f"{where} format {reprlib.repr(upstream.get('format'))} is not a converter name")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One published checkpoint (a `hub_configs/<name>.json` file).

    Args:
        name: zoo name, e.g. "hubert-base-ls960".
        family / modality: which encoder family builds it.
        description: one line for `zoo list`.
        format: "zoo" (config.json in zoo format), "transformers" (a transformers
            checkpoint the family reads directly) or an upstream converter name.
        repo_id / revision: where the checkpoint lives on the Hugging Face Hub.
        upstream: a file to download and convert instead of a ready repo:
            {"url"| "repo_id"+"filename" [+"revision"], "format", "sha256"}; sha256 is
            null where upstream publishes none and no download was checked yet.
        embedded: the checkpoint ships inside the package (zoo/checkpoints/<name>/).
        architecture: the fully resolved encoder config.
        preprocessing: the processor settings (sampling rate, normalisation...).
        params: the encoder's number of parameters (a tagger's head, read from its file, is left
            out); license, citation, source, metrics: for cards and `zoo info`.
        pretraining: the recipe that made (or makes) the checkpoint: dataset and
            optimisation settings that `zoo pretrain FAMILY --dataset D` reads. An entry
            with a recipe but no location is a recipe only: no weights are published yet.
    """

    name: str
    family: str
    modality: str
    description: str
    format: str = "zoo"
    repo_id: Optional[str] = None
    revision: str = "main"
    upstream: Optional[dict[str, Any]] = None
    embedded: bool = False
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    params: Optional[int] = None
    license: str = "unknown"
    citation: str = ""
    source: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    pretraining: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.upstream is not None:
            check_upstream(self.name, self.upstream)
        check_json_types(self)
        if self.modality not in MODALITIES:
            raise ConfigError(f"hub_config {self.name!r}: modality {self.modality!r} is not one of {MODALITIES}")
        modules = family_modules()
        if self.family not in modules:
            raise ConfigError(f"hub_config {self.name!r}: family {self.family!r} is not one of {sorted(modules)} "
                              "(a family is a folder modalities/MODALITY/FAMILY/)")
        if not (self.has_weights or self.pretraining):
            raise ConfigError(
                f"hub_config {self.name!r} names no location: set embedded, repo_id or upstream "
                "(or a pretraining recipe)"
            )

    @property
    def has_weights(self) -> bool:
        return bool(self.embedded or self.repo_id or self.upstream)

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelEntry":
        """The entry a hub_config file holds; a missing or mistyped key is a ConfigError naming the
        file (a file without "description" was a TypeError naming neither, and broke every name)."""
        data = read_json(path)
        check_keys(cls, data, f"hub_config {path}")
        if data.get("name") != Path(path).stem:
            raise ConfigError(f"hub_config {path}: name {data.get('name')!r} must equal the file stem")
        missing = [field.name for field in dataclasses.fields(cls)
                   if field.name not in data and field.default is dataclasses.MISSING
                   and field.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"hub_config {path} lacks the keys {missing}; see ModelEntry's docstring for each")
        return cls(**data)


def check_json_types(entry: ModelEntry) -> None:
    """Refuse a hub_config value of the wrong JSON type (a string of params, a list of metrics, an
    "embedded": "yes"), which was taken and failed later, in `zoo list` or at load, naming no file.
    The types are ModelEntry's annotations, checked as a config's fields are (`value_matches`)."""
    hints = typing.get_type_hints(ModelEntry)
    for field in dataclasses.fields(entry):
        value, hint = getattr(entry, field.name), hints[field.name]
        if not value_matches(value, hint):
            raise ConfigError(f"hub_config {entry.name!r}: {field.name} is {reprlib.repr(value)}, not "
                              f"{json_kinds(hint)}")


JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", type(None): "null"}


def json_kinds(hint: Any) -> str:
    """An annotation as the JSON values it takes: Optional[int] is "an integer or null"."""
    arms = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    return " or ".join(JSON_NAMES[typing.get_origin(arm) or arm] for arm in arms)


@dataclasses.dataclass
class Family:
    """What a family registers: its encoder class, named sizes and upstream converters.

    `converters` maps an upstream format name to a function `(path) -> Encoder`.
    `from_transformers`, when set, turns a transformers checkpoint (config dict, state
    dict) into (zoo config, zoo state dict); the encoder's config class then also has
    `from_transformers(config dict)`, for the architecture alone.
    """

    encoder_class: type
    variants: dict[str, dict[str, Any]]
    converters: dict[str, Callable[..., Any]]
    from_transformers: Optional[Callable[..., Any]] = None
    transformers_model_types: tuple[str, ...] = ()


_FAMILIES: dict[str, Family] = {}
_ADDED_ENTRIES: dict[str, ModelEntry] = {}


def register_family(
    encoder_class: type,
    variants: dict[str, dict[str, Any]],
    converters: Optional[dict[str, Callable[..., Any]]] = None,
    from_transformers: Optional[Callable[..., Any]] = None,
    transformers_model_types: tuple[str, ...] = (),
) -> None:
    """Called by a family's package on import."""
    _FAMILIES[encoder_class.family] = Family(
        encoder_class, variants, converters or {}, from_transformers, transformers_model_types
    )


def data_folder(name: str) -> Path:
    """A folder of zoo data: "hub_configs", "model_cards" or "checkpoints".

    In a wheel, hub_configs/ and model_cards/ are installed inside the zoo package; in a
    source tree they sit beside zoo/ at the repository's top level.
    """
    inside = Path(__file__).resolve().parent / name
    return inside if inside.is_dir() else Path(__file__).resolve().parents[1] / name


def family_modules() -> dict[str, str]:
    """family name -> module path, from the folders under `modalities/` (nothing imported)."""
    return dict(_family_modules())


@functools.lru_cache(maxsize=1)
def _family_modules() -> dict[str, str]:
    """The folders are listed once a process: every hub_config's family is checked against them."""
    root = Path(str(resources.files("modalities")))
    modules = {}
    for modality_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for family_dir in sorted(p for p in modality_dir.iterdir() if (p / "__init__.py").is_file()):
            modules[family_dir.name] = f"modalities.{modality_dir.name}.{family_dir.name}"
    return modules


def options_module(family: str) -> str:
    """The module of a family's torch-free facts: `<family>_pretrain_options.py` beside its folder
    (`zoo pretrain FAMILY`'s options, the names of its sizes). A module inside the folder runs the
    family's __init__, which imports its model, torch and all."""
    package, _, folder = family_modules()[family].rpartition(".")
    return f"{package}.{folder}_pretrain_options"


def variant_names(family: str) -> tuple[str, ...]:
    """A family's named sizes, read without importing it (its options module's VARIANT_NAMES, which
    the tests keep equal to its model's VARIANTS): listing them imported every family, so a
    mistyped name took 15 s to be refused, for the hint of an architecture it might have named."""
    return tuple(getattr(options_of(family), "VARIANT_NAMES", ()))


def convert_formats(family: str) -> tuple[str, ...]:
    """The upstream formats `zoo convert FAMILY` reads, its default first, as `zoo convert -h` lists
    them without importing any family (its options module's CONVERT_FORMATS; a note in brackets
    follows some names)."""
    return tuple(getattr(options_of(family), "CONVERT_FORMATS", ()))


def options_of(family: str) -> Any:
    """A family's options module (`options_module`), or None where it has none: a family without
    pretraining, sizes or converters need not write one. Its absence broke every `zoo` command,
    `zoo --version` too, with a ModuleNotFoundError, since the CLI lists every family's formats."""
    name = options_module(family)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:  # a package the module imports is missing: say so
            raise
        return None


def get_family(family: str) -> Family:
    """Import a family on first use and return what it registered. A family named by anything but
    text (a list in a hand-edited config.json) is unknown too: it was "unhashable type: 'list'"."""
    if isinstance(family, str) and family in _FAMILIES:
        return _FAMILIES[family]
    modules = family_modules()
    if not isinstance(family, str) or family not in modules:
        raise UnknownModelError(f"unknown family {family!r}; known families: {sorted(modules)}")
    with quiet_imports():
        importlib.import_module(modules[family])
    return _FAMILIES[family]


def family_for_model_type(model_type: str) -> Family:
    """The family that reads transformers checkpoints of `model_type` (e.g. "hubert")."""
    for name in family_modules():
        family = get_family(name)
        if model_type in family.transformers_model_types:
            return family
    known = sorted(type_ for name in family_modules() for type_ in get_family(name).transformers_model_types)
    raise UnknownModelError(
        f"no zoo family reads transformers checkpoints of model_type {model_type!r} (they read {', '.join(known)}); "
        "an upstream training checkpoint of a zoo family converts with `zoo convert FAMILY FILE OUT_DIR`"
    )


@functools.lru_cache(maxsize=1)
def _builtin_entries() -> dict[str, ModelEntry]:
    folder = data_folder("hub_configs")
    return {path.stem: ModelEntry.from_file(path) for path in sorted(folder.glob("*.json"))}


def entries() -> dict[str, ModelEntry]:
    """Every known checkpoint: the package's hub_configs plus those added at run time."""
    return {**_builtin_entries(), **_ADDED_ENTRIES}


def add_model_config(path: str | Path) -> ModelEntry:
    """Register a hub_config JSON file of your own (as open_clip's `add_model_config`)."""
    entry = ModelEntry.from_file(path)
    _ADDED_ENTRIES[entry.name] = entry
    return entry


def find(name: str) -> Optional[ModelEntry]:
    """The entry of an exact zoo name (one added at run time over the package's), or None:
    callers then take the name for a folder or a Hub repo id."""
    return entries().get(name)


def named_entry(name: str | Path) -> Optional[ModelEntry]:
    """The entry `name` stands for where it is read as a zoo name: None where a folder of that
    spelling exists (a results folder called `hubert-base-ls960`, "~/mert-tiny"), since load,
    info, publish and the CLI all read the folder in its place. One rule for all of them, so
    that `zoo info` describes what `zoo.load` loads."""
    entry = find(str(name))  # first: a name no entry has may be no path at all (a part too long for one)
    return None if entry is None or Path(name).expanduser().is_dir() else entry


def get_entry(name: str) -> ModelEntry:
    """The entry of a zoo name; an unknown one raises, suggesting close names or the architecture it names."""
    entry = find(name)
    if entry is None:
        raise UnknownModelError(f"unknown model {name!r}{unknown_name_hint(name)}")
    return entry


def unknown_name_hint(name: str) -> str:
    """What a name that is no checkpoint may have meant: an architecture (a size without
    weights), or zoo names close to it in any case."""
    close = difflib.get_close_matches(name.lower(), list(entries()), n=3)
    checkpoints = f"; did you mean {' or '.join(map(repr, close))}?" if close else "; run `zoo list` to see them"
    if name in list_architectures():
        family = architecture_family(name)
        pretrain = (f"pretrain it with `zoo pretrain {family} --variant {name[len(family) + 1:]} -o OUT`, or "
                    if hasattr(options_of(family), "add_arguments") else "")  # a family may have no recipe
        return (f": it is an architecture without weights ({pretrain}build it with fresh weights with "
                f"zoo.load({name!r}, pretrained=False)){checkpoints}")
    return checkpoints


def recipe(family: str, dataset: str) -> ModelEntry:
    """The entry whose pretraining recipe is `family` on `dataset` (case-insensitive)."""
    matches = [entry for entry in entries().values()
               if entry.family == family and str(entry.pretraining.get("dataset", "")).lower() == dataset.lower()]
    if not matches:
        known = sorted(e.pretraining["dataset"] for e in entries().values() if e.family == family and e.pretraining)
        raise UnknownModelError(f"no {family} recipe for dataset {dataset!r}; hub_configs have recipes for {known}")
    return matches[0]


def probe_settings(family: str, dataset: str) -> dict[str, Any]:
    """The downstream probe's settings in `family`'s recipe for `dataset`, else {}: GraphMAE's
    configs keep a probe lr, weight decay and epochs per dataset. `zoo probe --dataset` and the
    Python `probe_dataset` both default to them; the CLI took them from the checkpoint's own
    recipe, so that a Cora checkpoint was probed on CiteSeer with Cora's weight decay, and Python
    took none."""
    try:
        return dict(recipe(family, dataset).pretraining.get("probe", {}))
    except UnknownModelError:
        return {}


def list_models(pattern: Optional[str | Sequence[str]] = None, modality: Optional[str] = None,
                pretrained: bool = False) -> list[str]:
    """Zoo names, optionally filtered by a pattern (`name_matches`), or any of a list of them as
    timm's `list_models(["vit_*", "deit_*"])`, and a modality; with `pretrained`, as timm's, only
    those with published weights (not pretraining recipes)."""
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} is not one of {MODALITIES}")
    patterns = (list(pattern) or [None]) if isinstance(pattern, (list, tuple)) else [pattern]
    if not all(isinstance(each, str) for each in patterns if each is not None):  # a list was "has no .lower"
        raise ConfigError(f"pattern={pattern!r}; give a name pattern such as 'hubert-*', or a list of them")
    return sorted(
        name
        for name, entry in entries().items()
        if any(name_matches(name, each) for each in patterns) and (modality is None or entry.modality == modality)
        and (entry.has_weights or not pretrained)
    )


def name_matches(name: str, pattern: Optional[str]) -> bool:
    """Whether `name` fits an fnmatch `pattern` ("hubert-*"), or holds a `pattern` without wildcards
    ("beats"): a bare family name found nothing, where a user asking for it means its checkpoints.
    Case is ignored, on every system: zoo names are lower case, their Hub repos' not ("MERT")."""
    if pattern is None:
        return True
    pattern = pattern.lower()
    return fnmatch.fnmatchcase(name, pattern if any(char in pattern for char in "*?[") else f"*{pattern}*")


def list_architectures(family: Optional[str] = None, modality: Optional[str] = None) -> list[str]:
    """Named sizes without weights, "<family>-<variant>" (e.g. "gmml-vit-tiny-patch16"),
    of one family, of one modality's families, or of all; no family is imported (`variant_names`)."""
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} is not one of {MODALITIES}")
    families = [family] if family is not None else [
        name for name, module in family_modules().items()
        if modality is None or module.startswith(f"modalities.{MODALITY_FOLDERS[modality]}.")]
    return sorted(f"{name}-{variant}" for name in families for variant in variant_names(name))


def architecture_config(name: str, **overrides: Any) -> Any:
    """The config of a named size ("gmml-vit-tiny-patch16"), with `overrides` on top: an
    architecture to build and pretrain, where `get_entry` gives published checkpoints."""
    family_name = architecture_family(name)
    if family_name is None:
        raise UnknownModelError(f"{name!r} names no family; architecture names are '<family>-<size>', "
                                f"families: {sorted(family_modules())}")
    family, variant = get_family(family_name), name[len(family_name) + 1:]
    if variant not in family.variants:
        raise UnknownModelError(f"family {family_name!r} has no size {variant!r}; its sizes are "
                                f"{list_architectures(family_name)}")
    return family.encoder_class.config_class(**{**family.variants[variant], **overrides})


def architecture_family(name: str) -> Optional[str]:
    """The family an architecture name "<family>-<size>" starts with, the longest that fits, or None."""
    return next((family for family in sorted(family_modules(), key=len, reverse=True)
                 if name.startswith(f"{family}-")), None)


def info(name: str) -> dict[str, Any]:
    """Everything the hub_config says about a checkpoint, as a dict."""
    return dataclasses.asdict(get_entry(name))
