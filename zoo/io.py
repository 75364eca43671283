"""Files: atomic writes (nothing the zoo writes is ever left half-written), checks that an
output can be written before the work that makes it, and the listing of a folder's input files."""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from zoo.errors import ConfigError, InputError, WriteError, ZooError, warn


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_permissions(path: Path, base: int) -> None:
    """mkstemp/mkdtemp (and safetensors) create private 0600/0700 entries; give them the usual mode."""
    path.chmod(base & ~_umask())


def visible_files(folder: str | Path, suffixes: Optional[Sequence[str]] = None) -> list[Path]:
    """The files under `folder` (recursively, sorted) whose suffix is one of `suffixes` (any case;
    None: all), leaving out hidden files and folders: macOS's `._name.jpg`, `.ipynb_checkpoints/`
    and the zoo's own `.name.tmp` files are not inputs. Linked folders are followed, as a class
    folder linked from another disk is the usual way to lay out a dataset without copying it
    (`rglob` left them out without a word), except a link back to a folder above it."""
    wanted = None if suffixes is None else {suffix.lower() for suffix in suffixes}
    found, broken = [], []
    for current, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        folders[:] = [name for name in folders if not name.startswith(".")
                      and not is_within(real, os.path.realpath(os.path.join(current, name)))]
        for path in (Path(current, name) for name in files if not name.startswith(".")):
            if wanted is not None and path.suffix.lower() not in wanted:
                continue
            (found if path.is_file() else broken).append(path)
    note_unreadable(folder, broken)
    return sorted(found)


def note_unreadable(folder: str | Path, entries: Sequence[Path]) -> None:
    """Warn of the entries of a folder listing that are not files: a link to a moved or deleted
    file was left out without a word, where the same path passed by name is an error."""
    if entries:
        shown = ", ".join(repr(path.name) for path in sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        warn(f"left out {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {str(folder)!r} that "
             f"{'is' if len(entries) == 1 else 'are'} no readable file (a link to a moved or deleted file?): "
             f"{shown}; fix or remove {'it' if len(entries) == 1 else 'them'}")


def input_files(folder: str | Path, suffixes: Sequence[str] = ()) -> list[Path]:
    """The files of `folder` a job reads (`visible_files`, those ending in one of `suffixes` when
    there are some), warning of the others by ending: a job said only "5 inputs" where the folder
    held others the encoder does not read (a .txt, a .csv of labels)."""
    listed = visible_files(folder)  # one walk: the files taken and those left out
    wanted = {suffix.lower() for suffix in suffixes}
    left_out = Counter(path.suffix.lower() or "no ending" for path in listed
                       if wanted and path.suffix.lower() not in wanted)
    if left_out:
        shown = ", ".join(f"{count} {ending}" for ending, count in sorted(left_out.items()))
        warn(f"left out {left_out.total()} file(s) in {str(folder)!r} that the encoder does not read ({shown})")
    return [path for path in listed if not wanted or path.suffix.lower() in wanted]


def folder_files(folder: str | Path, suffixes: Sequence[str], kind: str) -> list[Path]:
    """`input_files` of a folder passed to `embed` as an input, as `zoo embed` takes one; a folder
    without any is an InputError naming it, not a quiet empty list."""
    files = input_files(folder, suffixes)
    if not files:
        raise InputError(f"folder {str(folder)!r} holds no {kind} files ({', '.join(suffixes)})")
    return files


def is_folder_input(item: Any) -> bool:
    """Whether an input item names an existing folder: a path, not a URL, and not an empty string,
    which Path reads as the current folder and the processor refuses by name."""
    return isinstance(item, (str, Path)) and str(item).strip() != "" and "://" not in str(item) and Path(
        item).is_dir()


def is_within(path: str, folder: str) -> bool:
    """Whether the real path `path` is `folder` or lies in it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def name_bytes(name: str) -> bytes:
    """A name's bytes for a digest: a file name that is not UTF-8 (a Latin-1 'café' from an old zip
    or a Samba share) comes from os.listdir with surrogates, which str.encode() refused."""
    return name.encode("utf-8", "surrogateescape")


def printable_name(name: str) -> str:
    """A name as text that any file format can hold: a byte of a non-UTF-8 file name is shown as
    \\xe9 (pyarrow refused the surrogate that stands for it)."""
    return name_bytes(name).decode("utf-8", "backslashreplace")


@contextmanager
def held(lock_file: Path, busy: str) -> Iterator[None]:
    """Hold `lock_file` (filelock's) for the block, or refuse at once with a ConfigError saying
    `busy`: a second job on one output waits for nothing, as it would redo or undo the first's work."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(busy) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def waited_for(lock_file: Path, waiting: str) -> Iterator[None]:
    """Hold `lock_file` (filelock's) for the block, waiting for the process that holds it after
    saying `waiting` (on stderr): a second process sat silent while the first prepared a dataset,
    converted a checkpoint or filled a cache. Where no lock can be made (a read-only place, which
    no one writes), the block runs without one: a read-only dataset cache was refused."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_file))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(waiting, file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        yield
        return
    try:
        yield
    finally:
        lock.release()


def remove_folder(folder: Path) -> None:
    """Delete `folder` as one step: it is first moved into a hidden folder of its own beside it, so
    that no one finds it half deleted (a job's shards folder whose job.json went before some
    shards, as rmtree deletes in directory order, was refused by every rerun though the output was
    whole). Such folders that a removal killed midway left are deleted too; two removals at once
    may delete each other's, which both take in their stride: one whose hidden folder another
    deleted before the move (names sharing their first 64 characters share a prefix) makes a new
    one, where it failed with FileNotFoundError (37 of 200 tries of 16 such removals at once)."""
    prefix = f"{temporary_prefix(folder)}removed."
    while True:
        gone = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
        try:
            os.replace(folder, gone / folder.name)
            break
        except FileNotFoundError:
            if not folder.exists():
                raise
    for removed in folder.parent.glob(glob.escape(prefix) + "*"):
        shutil.rmtree(removed, ignore_errors=True)


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists: where a folder not made yet would be made,
    and so what must be a writable folder for it."""
    return next(candidate for candidate in (path, *path.parents) if candidate.exists())


def blocking_path(folder: Path) -> Optional[Path]:
    """What stops `folder` from being made or written, found without making anything: the nearest
    of its paths that exists, where that is a file or a folder not writable here (a read-only file
    system too); None where nothing does."""
    existing = nearest_existing(folder)
    return None if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK) else existing


def check_writable_folder(folder: str | Path, what: str) -> None:
    """Make `folder` (and its parents) and check a file can be written there, before any work
    whose result would go there: a path under a file, a read-only place or a folder given for a
    file fails now, with the path, not after an hour of embedding."""
    folder = Path(folder)
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise ConfigError(f"cannot write {what} in {str(folder)!r}: {str(existing)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write {what} in {str(folder)!r} ({type(err).__name__}: {err.strerror or err}); "
                          "choose a folder you can write to") from err


def check_writable_file(path: str | Path, what: str) -> None:
    """`check_writable_folder` for a file's folder; the path itself must not be a folder."""
    path = Path(path)
    if path.is_dir():
        example = str(path / ("out" + path.suffix))
        raise ConfigError(f"{what} {str(path)!r} is a folder; name a file in it, e.g. {example!r}")
    check_writable_folder(through_link(path).parent, what)  # a link is written at its target


def through_link(path: str | Path) -> Path:
    """`path`, or the target of the symbolic link it is: a write replaces the target and keeps the
    link, as `open` would, where replacing the link made it a file or folder and left the target old."""
    return Path(path).resolve() if Path(path).is_symlink() else Path(path)


#: the longest file or folder name of Linux and macOS file systems, in bytes
NAME_MAX = 255
#: the part of a name its temporary copy keeps: `.{name}.XXXXXXXX.tmp` of a 242-byte name was too long
TEMPORARY_STEM = 64


#: the temporaries the writes here leave when killed: `.NAME.XXXXXXXX.tmp`, `.NAME.XXXXXXXX/`, `.NAME.old.XXXXXXXX/`
TEMPORARY_NAME = re.compile(r"\..+\.(old\.)?[a-z0-9_]{8}(\.tmp)?")


def temporary_prefix(path: Path) -> str:
    """The hidden prefix of `path`'s temporary copy beside it, short enough for any valid name."""
    return f".{path.name[:TEMPORARY_STEM]}."


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary files and folders that writes into `folder` left when they were killed
    before renaming them (SIGKILL skips the clean-up); for a caller that alone writes there."""
    for entry in folder.iterdir():
        if TEMPORARY_NAME.fullmatch(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds (a
    symbolic link: over its target, `through_link`)."""
    path = through_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _normal_permissions(tmp_path, 0o666)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name `path` in a failed write: a full disk or a file-size limit surfaced as a raw OSError, as
    safetensors' SafetensorError or as torch.save's "unexpected pos" RuntimeError, none naming the
    file. Zoo errors of the block (a refused input) go up as they are. Only around blocks that write
    and do nothing else: a download's network error is not a write's."""
    try:
        yield
    except ZooError:
        raise
    except Exception as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {err}"
        raise WriteError(f"could not write {str(path)!r} ({reason}); what was there before is unchanged. A full "
                         "disk or a file-size limit (ulimit -f) stops writes: free space, or write elsewhere") from err


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so that a reader never sees
    it half-written; encoded as UTF-8 whatever the locale, as every file the zoo reads back is."""
    atomic_write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """`torch.save` of `obj` to `path`, atomically, through an open file: torch names the archive's
    records after a path it is given, so a run saved twice held the random temporary name and its
    files differed byte for byte (labels.pt, checkpoint.pt) though their contents were equal."""
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    atomic_write_with(path, write)


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` and move the result to `path` once it has returned."""
    with writing(Path(path)), atomic_path(path) as tmp:
        writer(tmp)


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; it replaces `folder` only when the block succeeds (a symbolic link
    `current -> v1`: v1, keeping the link, `through_link`)."""
    folder = through_link(folder)
    with writing(folder):  # a read-only place fails here: a raw OSError
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(folder), dir=folder.parent))
    try:
        with writing(folder):
            yield tmp
        for entry in [tmp, *tmp.rglob("*")]:
            _normal_permissions(entry, 0o777 if entry.is_dir() else 0o666)
        if folder.is_dir() and exchange(tmp, folder):
            return  # tmp holds the old folder, removed below
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{temporary_prefix(folder)}old.", dir=folder.parent))
            os.replace(folder, old / "x")
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            replace_new_folder(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def replace_new_folder(tmp: Path, folder: Path) -> None:
    """Rename `tmp` to `folder`, which did not exist a moment ago; where another process has made it
    since (two saves of one new folder at once), swap them instead: the rename failed with
    "Directory not empty" (2 in 400 such pairs)."""
    try:
        os.replace(tmp, folder)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not exchange(tmp, folder):
            raise


#: Linux's renameat2 arguments: paths relative to the working folder, swap the two
AT_FDCWD, RENAME_EXCHANGE = -100, 2


def exchange(first: Path, second: Path) -> bool:
    """Swap two folders in one step (Linux's renameat2 with RENAME_EXCHANGE), so that a process
    loading `second` while it is saved again finds the old or the new folder: replacing it by two
    renames left an instant with none, where 247 of 945 loads beside a re-saving loop failed.
    False where the system or its file system cannot; the caller then renames twice."""
    if not sys.platform.startswith("linux"):
        return False
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:  # a C library older than glibc 2.28
        return False
    rename.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return rename(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0
