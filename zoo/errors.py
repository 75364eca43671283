"""Error classes of the zoo: every message names the bad value and says how to fix it."""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Iterator


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""


class UnknownModelError(ZooError, KeyError):
    """A model name, repo id or folder that resolves to nothing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ZooError):
    """A checkpoint that is corrupt, incomplete or does not match its config."""


class ConfigError(ZooError, ValueError):
    """A configuration value out of range or inconsistent with another."""


class InputError(ZooError, ValueError):
    """An input the processor cannot turn into tensors (empty, NaN, wrong shape, unreadable)."""


class OfflineError(ZooError):
    """Files that are neither cached nor downloadable (offline mode or no network)."""


@contextmanager
def prefixed(prefix: str, *kinds: type[ZooError]) -> Iterator[None]:
    """Prefix a zoo error raised inside (of `kinds`, default any) with `{prefix}: `, keeping its
    class, so that its message says where it arose: an item of a long list, a file, an option."""
    try:
        yield
    except kinds or ZooError as err:
        raise type(err)(f"{prefix}: {err}") from err


def naming_input(index: int) -> AbstractContextManager[None]:
    """Prefix a zoo error raised inside with `input {index}: `, so that the one bad item of a
    long list or batch can be found."""
    return prefixed(f"input {index}")
