"""Error classes of the zoo: every message names the bad value and says how to fix it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

#: the folders of the zoo's own code (zoo/ and modalities/, installed side by side)
OWN_CODE = tuple(str(Path(__file__).parent.parent / name) + os.sep for name in ("zoo", "modalities"))
#: the files of decorators that wrap the zoo's functions (`torch.no_grad` on `embed`)
WRAPPERS = (os.path.join("torch", "utils", "_contextlib.py"),)


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""

    #: which item of a list the error is about, and the error without its `input N: ` prefix
    input_index: Optional[int] = None
    reason: str = ""


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


class WriteError(ZooError, OSError):
    """A file or folder that could not be written (a full disk, a file-size limit, a lost mount);
    what was there before is unchanged, as every write goes to a temporary name first."""


@contextmanager
def prefixed(prefix: str, *kinds: type[ZooError]) -> Iterator[None]:
    """Prefix a zoo error raised inside (of `kinds`, default any) with `{prefix}: `, keeping its
    class, so that its message says where it arose: an item of a long list, a file, an option."""
    try:
        yield
    except kinds or ZooError as err:
        raise type(err)(f"{prefix}: {err}") from err


@contextmanager
def naming_input(index: int) -> Iterator[None]:
    """Prefix a zoo error raised inside with `input {index}: `, so that the one bad item of a
    long list or batch can be found; the error keeps the index for `counting_from`."""
    try:
        yield
    except ZooError as err:
        raise _numbered(err, index, str(err)) from err


@contextmanager
def counting_from(offset: int) -> Iterator[None]:
    """Number a bad input within the whole list when the call inside got a slice of it starting at
    `offset` (a job's shard): its `input {i}` becomes `input {offset + i}`."""
    try:
        yield
    except ZooError as err:
        if err.input_index is None:
            raise
        raise _numbered(err, offset + err.input_index, err.reason) from err.__cause__


def _numbered(err: ZooError, index: int, reason: str) -> ZooError:
    numbered = type(err)(f"input {index}: {reason}")
    numbered.input_index, numbered.reason = index, reason
    return numbered


#: what schedulers send before they kill a job: SIGTERM (Slurm, Kubernetes), SIGUSR1 (Slurm's --signal=USR1@60)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


@contextmanager
def on_stop_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Within the block, SIGTERM and SIGUSR1 (`STOP_SIGNALS`) call `handler(signum, frame)`; the
    handlers before are put back after it. Python takes signals in the main thread only: in
    another, the block runs with the defaults."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)


class Stopped(BaseException):
    """A run stopped by a scheduler's signal (SIGTERM, or Slurm's `--signal=USR1`): training once the
    step it was in is done and checkpointed, rendering once its workers are stopped; a
    BaseException, as KeyboardInterrupt is, so that no `except Exception` takes it for a failure.
    The `zoo` command exits 128 + its number, as the shell reports a process that signal ended."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(prog: str, command: Callable[[], Any], resumes: str = "") -> int:
    """Run `command` as a command line ends: 0, else one line on stderr and the shell's status for
    a zoo error (2: the message names the fix, so no traceback), Ctrl-C (130) or a scheduler's stop
    signal (128 + its number, `Stopped`), the last two followed by `resumes`, what a rerun keeps.
    The `zoo` command and the renderer share it, so that both report and exit alike."""
    try:
        command()
    except ZooError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{resumes}", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"{prog}: stopped by {stop}{resumes}", file=sys.stderr)
        return 128 + stop.signum
    return 0


class ZooWarning(UserWarning):
    """What the zoo warns about: input it reads in a way that may not be meant (16-bit images,
    unseen categories, float audio past [-1, 1]). Its own class, so that
    `warnings.filterwarnings("ignore", category=zoo.ZooWarning)` silences the zoo alone and the
    `zoo` command can print it as a message rather than a source line."""


def warn(message: str, category: type[Warning] = ZooWarning) -> None:
    """Warn at the first caller outside the zoo (and the decorators around its functions), as
    pandas' `find_stack_level` does: the line shown is the user's call (`embed`, a processor,
    `zoo.load`) whichever path inside the zoo led to the warning, where a fixed `stacklevel`
    points into the zoo from some paths, and counts differently on Python 3.12, which runs
    comprehensions in their function's frame."""
    frame, level = sys._getframe(1), 2
    while frame is not None and (frame.f_code.co_filename.startswith(OWN_CODE)
                                 or frame.f_code.co_filename.endswith(WRAPPERS)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
