"""Encoder configs: small dataclasses that round-trip through `config.json`.

Each family subclasses `EncoderConfig`, lists its architecture fields with defaults and
checks cross-field rules in `__post_init__`. The JSON file also records the family and the
zoo version that wrote it, so a folder alone says how to rebuild its model.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypeVar

from zoo._version import __version__
from zoo.errors import ConfigError, ZooError
from zoo.io import atomic_write_text

C = TypeVar("C", bound="EncoderConfig")

#: keys `config.json` carries besides the dataclass fields (the last two for transformers: HuBERT's)
META_KEYS = ("family", "zoo_version", "head", "model_type", "architectures")


@dataclasses.dataclass
class EncoderConfig:
    """Base class of every family's config.

    Subclasses must define `family` and the properties `embed_dim` and `num_layers`.
    """

    family: ClassVar[str] = ""
    #: the fields (whole numbers or tuples of them) that are widths, kernels, strides or group
    #: counts, which a layer divides by or builds from, so 0 fails inside torch; each family names its own
    positive_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every family's fields are type-checked before its own `__post_init__` rules run, so a
        `--set hidden_size=x` or a hand-edited config.json fails naming the field, not deep in a
        layer's constructor."""
        super().__init_subclass__(**kwargs)
        own_rules = cls.__dict__.get("__post_init__")

        def __post_init__(self: EncoderConfig) -> None:
            check_field_types(self)
            check_field_ranges(self)
            if own_rules is not None:
                own_rules(self)

        cls.__post_init__ = __post_init__

    @property
    def embed_dim(self) -> int:
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Fields as plain JSON values, plus `family` and `zoo_version`."""
        return {"family": self.family, "zoo_version": __version__, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a `config.json` dict; unknown keys are an error, not ignored."""
        data = {k: v for k, v in data.items() if k not in META_KEYS}
        check_keys(cls, data, f"{cls.__name__} config",
                   "Was this config written for another family or a newer zoo version?")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                value = data[f.name]
                values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / "config.json"
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def check_field_types(config: Any) -> None:
    """Refuse a field whose value is not of its annotated type (ints where floats are asked for
    are floats; lists are tuples), naming the field, the value and the type."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if not value_matches(value, hints[field.name]):
            kind = str(hints[field.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise ConfigError(f"{type(config).__name__}: {field.name}={reprlib.repr(value)} is not of its type, {kind}")


def check_field_ranges(config: Any) -> None:
    """Refuse a negative whole number (every int field is a size, a count or an index), a count of
    heads or a `positive_fields` entry of 0 (BEATs' conv_pos_groups=0 was a ZeroDivisionError), a
    number that is not finite, an epsilon that is not positive and a dropout-like rate (a field
    named with "drop") outside [0, 1), naming the field: each passes the type check, and
    `num_heads=-1` even passes `hidden_size % num_heads == 0`, then fails as a tensor of negative
    shape when the model first runs; a NaN `layer_norm_eps` made every output NaN."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        where = f"{type(config).__name__}: {field.name}={reprlib.repr(value)}"
        if any(isinstance(item, int) and not isinstance(item, bool) and item < 0 for item in values):
            raise ConfigError(f"{where}; sizes and counts are never negative")
        if (field.name.endswith("heads") or field.name in config.positive_fields) and 0 in values:
            raise ConfigError(f"{where}; a model has at least one attention head, and widths, kernels, strides and "
                              "groups of at least 1")
        if any(isinstance(item, float) and not math.isfinite(item) for item in values):
            raise ConfigError(f"{where}; settings are finite numbers")
        if "eps" in field.name and isinstance(value, (int, float)) and value <= 0:
            raise ConfigError(f"{where}; an epsilon is a small positive number, e.g. 1e-5")
        if "drop" in field.name and isinstance(value, float) and not 0 <= value < 1:
            raise ConfigError(f"{where}; a dropout rate lies in [0, 1)")


def value_matches(value: Any, hint: Any) -> bool:
    """Whether a JSON-like value fits a simple type hint; hints it does not know are not checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arm) for arm in args)
    if origin is typing.Literal:
        return value in args
    if origin is dict:
        return isinstance(value, dict)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        element_hints = args[:1] if len(args) == 2 and args[1] is Ellipsis else args
        if element_hints and len(element_hints) == 1:
            return all(value_matches(item, element_hints[0]) for item in value)
        return not element_hints or len(element_hints) == len(value) and all(
            value_matches(item, item_hint) for item, item_hint in zip(value, element_hints))
    simple = {type(None): lambda: value is None, bool: lambda: isinstance(value, bool),
              int: lambda: isinstance(value, int) and not isinstance(value, bool),
              float: lambda: isinstance(value, (int, float)) and not isinstance(value, bool),
              str: lambda: isinstance(value, str)}
    return simple[hint]() if hint in simple else True


def check_override_types(defaults: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    """Refuse `--set` values of another kind than the recipe values they replace (a number for a
    number, text for text, a list for a list...), naming the key; recipes are plain dicts, so
    their types are those of their values."""
    for key, value in overrides.items():
        default = defaults.get(key)
        if default is not None and not same_kind(value, default):
            kind = "a whole number" if isinstance(default, int) and not isinstance(default, bool) else \
                "a value of that kind"
            raise ConfigError(f"{where} {key}={value!r}: the recipe's {key} is {default!r}; give {kind}")


def same_kind(value: Any, default: Any) -> bool:
    """Whether `--set` may put `value` in place of a recipe's `default`. A whole number (a batch size,
    epochs, a width) takes whole numbers only: batch_size=2.5 reached the batching as a TypeError. A
    float takes either, as 1 for 1.0."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_keys(cls: type, data: dict[str, Any], where: str, hint: str = "") -> None:
    """Refuse keys that are not fields of the dataclass `cls`, naming them and the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; valid keys are {sorted(names)}. {hint}".rstrip())


#: the largest settings file read (config.json, preprocessor_config.json, hub_configs), in bytes
JSON_BYTES = 16 * 2**20


def read_json(path: str | Path, error: type[ZooError] = ConfigError) -> dict[str, Any]:
    """Read a JSON object, turning a missing file, a parse error or another JSON value (a list) into an
    `error` that names it: a `ConfigError` for settings, a `CheckpointError` for a checkpoint's files."""
    if not Path(path).is_file():
        raise error(f"{path} does not exist; check the path")
    size = Path(path).stat().st_size
    if size > JSON_BYTES:  # a 3 GB file took 6 GB to read, then a MemoryError
        raise error(f"{path} is {size:,} bytes; a settings file is a few kB (at most {JSON_BYTES:,}): is it the "
                    "right file? Re-download or re-save it")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON ({err}); re-download or re-save it") from err
    except OSError as err:
        raise error(f"cannot read {path} ({err.strerror or err}); check the file") from err
    if not isinstance(data, dict):
        raise error(f"{path} holds a JSON {type(data).__name__}, not an object of settings; re-download or "
                    "re-save it")
    return data


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as a dict; values are read as JSON where they parse (numbers,
    booleans, lists), else kept as text."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values
