"""Per-frame teacher targets of a corpus on disk, for audio pretraining (MERT's CQT, HuBERT's
features): written one recording at a time as a pass computes them (`frame_rows_writer`, driven by
`resumable_pass`, which a stop or a time limit may cut short and a rerun goes on from: `done_passes`),
and read a recording or a crop at a time (`FrameRows`), never held whole.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from zoo.errors import CheckpointError, InputError
from zoo.io import atomic_write_text
from zoo.training import TimeLimitReached


#: rows of a `FrameRows` file its fingerprint reads (evenly spaced, the first and last included)
FINGERPRINT_ROWS = 256
#: what a teachers' pass is computing (its files and frames), beside its output files until the targets
#: are made: a rerun of a stopped run goes on with the pass it finds for the same (`done_passes`)
PASS_FILE = ".teachers.json"

#: what a pass computes, a group of recordings at a time: per recording, one (T_i, width) tensor per output file
RowGroups = Iterable[Sequence[Sequence[torch.Tensor]]]


class FrameRows(Sequence[torch.Tensor]):
    """Per-recording (T_i, Q) frame targets stored one recording after another as the rows of one
    .npy file, read from the file when asked for, never held: MERT's CQT targets take 181 MB an
    hour of audio, 18 GB for a 100-hour corpus. Indexing reads a recording's rows; `rows` reads a
    crop's. Rows are read with plain file reads, not through a memory map, whose pages would stay
    in the process's resident memory as a run's crops touch the whole file.

    Args:
        path: the .npy file (`frame_rows_writer`).
        frames: T_i of each recording, in the file's order.
        fingerprint: what `fingerprint()` gave when the file was written (its labels record it), to
            refuse another file of the same shape; None checks only the shape.

    Raises:
        CheckpointError: the file is missing, not a .npy of these rows, shorter than its header
            says (half written or cut), or holds other rows than `fingerprint` recorded.
    """

    def __init__(self, path: str | Path, frames: Sequence[int], fingerprint: Optional[str] = None) -> None:
        self.path = Path(path)
        self.frames = np.asarray(frames, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.frames)[:-1]]).astype(np.int64)
        shape, self.dtype, self.data_offset = read_npy_header(self.path)
        total = int(self.frames.sum())
        if len(shape) != 2 or shape[0] != total:
            raise CheckpointError(f"{self.path} holds rows of shape {shape}, its labels record {total} frames of "
                                  f"{len(self.frames)} recordings; {DELETE_ADVICE}")
        self.width = int(shape[1])
        size, expected = self.path.stat().st_size, self.data_offset + shape[0] * self.width * self.dtype.itemsize
        if size != expected:
            raise CheckpointError(f"{self.path} holds {size} bytes where its {shape} rows take {expected}: it was cut "
                                  f"or half written; {DELETE_ADVICE}")
        if fingerprint is not None and fingerprint != self.fingerprint():
            raise CheckpointError(f"{self.path} holds other rows than its labels recorded (another run's file?); "
                                  f"{DELETE_ADVICE}")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Recording `index`'s (T_i, Q) rows, read whole (an int: a slice would read several)."""
        index = operator.index(index)
        return self.rows(index, 0, int(self.frames[index]))

    def rows(self, index: int, first: int, count: int) -> torch.Tensor:
        """Rows [first, first + count) of recording `index`, (count, Q): all a crop reads."""
        if not 0 <= first <= first + count <= self.frames[index]:
            raise IndexError(f"rows [{first}, {first + count}) of recording {index}, which has {self.frames[index]}")
        offset = self.data_offset + (int(self.starts[index]) + first) * self.width * self.dtype.itemsize
        values = np.fromfile(self.path, dtype=self.dtype, count=count * self.width, offset=offset)
        return torch.from_numpy(values.reshape(count, self.width))

    def fingerprint(self) -> str:
        """SHA-256 of the shape and of `FINGERPRINT_ROWS` rows spread over the file: enough to tell
        another corpus's or run's file, read in a moment however large the file."""
        total = int(self.frames.sum())
        digest = hashlib.sha256(repr((total, self.width, self.dtype.str)).encode())
        for row in np.unique(np.linspace(0, total - 1, min(FINGERPRINT_ROWS, total)).round().astype(np.int64)):
            offset = self.data_offset + int(row) * self.width * self.dtype.itemsize
            digest.update(np.fromfile(self.path, dtype=self.dtype, count=self.width, offset=offset).tobytes())
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        """What a labels file keeps to open these rows again (`from_record`): the file's name (beside it), the
        frames of each recording and the fingerprint."""
        return {"file": self.path.name, "frames": torch.from_numpy(self.frames), "fingerprint": self.fingerprint()}

    @classmethod
    def from_record(cls, folder: Path, record: dict[str, Any]) -> "FrameRows":
        """The rows `record` describes, in `folder` (which may have moved since), checked against it."""
        path = Path(folder) / record["file"]
        if not path.is_file():
            raise CheckpointError(f"{path} is missing, though its labels record it; {DELETE_ADVICE}")
        return cls(path, record["frames"].tolist(), record["fingerprint"])


#: how to get past a `FrameRows` file that does not match its labels
DELETE_ADVICE = ("delete it and the labels.pt beside it (and checkpoint.pt) to compute them again, or use another "
                 "output folder")


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) of a C-ordered .npy file; CheckpointError if it is none."""
    try:
        with path.open("rb") as file:
            version = np.lib.format.read_magic(file)
            if version != (1, 0):
                raise ValueError(f"version {version}")
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            offset = file.tell()
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not a .npy file of frame rows ({err}); {DELETE_ADVICE}") from err
    if fortran_order:
        raise CheckpointError(f"{path} stores its rows in Fortran order; {DELETE_ADVICE}")
    return shape, dtype, offset


@contextmanager
def frame_rows_writer(path: str | Path, frames: Sequence[int], width: int, dtype: torch.dtype,
                      first: int = 0) -> Iterator[Callable[[torch.Tensor], None]]:
    """Write `FrameRows`' file a recording at a time: the block gets `append`, called with each
    recording's (frames[i], width) rows in order, from recording `first` on. The rows go to
    `partial_rows(path)`, which takes the name `path` only once every recording's are in, so no
    reader sees it half written; memory holds one recording's rows.

    A block that is stopped (Ctrl-C, a kill) leaves the partial file, and a rerun goes on after
    it: `recordings_in_partial` says how many recordings it holds whole, to pass as `first` (the
    rows of those are kept, a recording cut halfway is cut off). A block that fails on a file it
    began (`first` 0) leaves nothing.
    """
    expected = [int(count) for count in frames]
    header = {"descr": np.lib.format.dtype_to_descr(numpy_dtype(dtype)), "fortran_order": False,
              "shape": (sum(expected), width)}
    path, written = Path(path), first
    try:
        with partial_rows_file(path, header, sum(expected[:first]) * width) as file:

            def append(rows: torch.Tensor) -> None:
                nonlocal written
                wanted = (expected[written], width) if written < len(expected) else None
                if tuple(rows.shape) != wanted or rows.dtype != dtype:
                    raise InputError(f"recording {written} gave rows {tuple(rows.shape)} {rows.dtype}; {path} "
                                     f"expects {'no more' if wanted is None else f'{wanted} {dtype}'}")
                file.write(rows.contiguous().numpy().tobytes())
                written += 1

            yield append
            if written != len(expected):
                raise InputError(f"rows of {written} recordings were written to {path}, expected {len(expected)}")
    except Exception:
        if first == 0:
            partial_rows(path).unlink(missing_ok=True)
        raise
    os.replace(partial_rows(path), path)


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy type a `FrameRows` file stores torch's `dtype` as."""
    return torch.empty((), dtype=dtype).numpy().dtype


def partial_rows(path: Path) -> Path:
    """Where `frame_rows_writer(path, ...)` writes until every recording's rows are in."""
    return path.with_name(f".{path.name}.partial")


@contextmanager
def partial_rows_file(path: Path, header: dict[str, Any], kept: int) -> Iterator[BinaryIO]:
    """`partial_rows(path)` open for appending after its first `kept` values, cut there (the rows of a
    recording the stopped run was writing); a new file with `header` where `kept` is 0."""
    partial = partial_rows(path)
    if kept == 0:
        partial.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as file:
            np.lib.format.write_array_header_1_0(file, header)
            yield file
        return
    _, dtype, offset = read_npy_header(partial)
    with partial.open("r+b") as file:
        file.truncate(offset + kept * dtype.itemsize)
        file.seek(0, os.SEEK_END)
        yield file


def recordings_in_partial(path: Path, frames: Sequence[int], width: int, dtype: torch.dtype) -> int:
    """How many recordings' rows `partial_rows(path)` holds whole: 0 where there is none, or it was
    begun for other rows (its header's shape or dtype)."""
    partial = partial_rows(path)
    if not partial.is_file():
        return 0
    try:
        shape, stored, offset = read_npy_header(partial)
    except CheckpointError:
        return 0
    if shape != (int(sum(frames)), width) or stored != numpy_dtype(dtype):
        return 0
    rows = (partial.stat().st_size - offset) // (width * stored.itemsize)
    return int(np.searchsorted(np.cumsum(frames), rows, side="right"))


def done_passes(record: dict[str, Any], record_file: Path, outputs: Sequence[tuple[Path, int, torch.dtype]],
                frames: Sequence[int]) -> int:
    """How many recordings the teachers' pass of an earlier, stopped run of these `record` (files,
    frame settings and features, kept in `record_file`) left done in every one of its `outputs`, each
    (path, width, dtype) of a `frame_rows_writer`: all of them where it had finished them (a run
    stopped in k-means), else the fewest its partial files hold whole; 0 for another run's files. A
    new pass records itself."""
    if recorded(record_file) != record:
        atomic_write_text(record_file, json.dumps(record))
        return 0
    if all(path.is_file() for path, _, _ in outputs):
        return len(frames)
    return min(recordings_in_partial(path, frames, width, dtype) for path, width, dtype in outputs)


def resumable_pass(record: dict[str, Any], outputs: Sequence[tuple[Path, int, torch.dtype]], frames: Sequence[int],
                   groups: Callable[[int], RowGroups], what: str, then: str, log: Callable[[str], None],
                   deadline: Optional[float] = None) -> None:
    """Write every recording's rows to each of `outputs` ((path, width, dtype), one
    `frame_rows_writer` each), as `groups(first)` computes them from recording `first` on, a group
    of recordings at a time. `first` is where an earlier, stopped pass of the same `record` (the
    files, frame settings and features, kept in `PASS_FILE` beside the outputs) left off
    (`done_passes`); a pass that finished is not run again, so it costs no time.

    Past the `deadline` (`time.monotonic()`) the pass stops after the group under way, or, where
    it has just ended, before what comes `then` (k-means, which begins a call of its own):
    `TimeLimitReached`, for a rerun to go on. Each call does one group at least, so reruns
    go forward. A group is what the computation batches together: a recording's rows that depend on
    its batch come out the same from a rerun only if the rerun begins at a group's first recording.
    """
    total = len(frames)
    first = done_passes(record, outputs[0][0].with_name(PASS_FILE), outputs, frames)
    if first == total:
        return
    if first:
        log(f"going on from recording {first + 1} of {total}, where a stopped run left the {what}")
    done = first
    with ExitStack() as files:
        keep = [files.enter_context(frame_rows_writer(path, frames, width, dtype, first))
                for path, width, dtype in outputs]
        for group in groups(first):
            for rows in group:
                for append, output_rows in zip(keep, rows, strict=True):
                    append(output_rows)
            done += len(group)
            if done < total and past(deadline):
                raise TimeLimitReached(f"{done} of {total} recordings' {what} done")
    if past(deadline):
        raise TimeLimitReached(f"all {total} recordings' {what} done; {then} comes next")


def delete_pass_file(rows: FrameRows) -> None:
    """Delete a pass's file of `rows` and the pass's record (`PASS_FILE`) once the labels made of them
    are saved (not before: a kill in between made the rerun do the whole pass again): labels.pt
    keeps those, and a rerun with other teacher settings is refused. A run
    stopped before that leaves them for its rerun (`done_passes`); a run refused while making the
    labels takes them away with what else it wrote (`zoo.run_folders.undone_if_refused`)."""
    rows.path.unlink()
    rows.path.with_name(PASS_FILE).unlink(missing_ok=True)


def recorded(path: Path) -> Any:
    """The JSON value `path` holds; None where there is none to read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def past(deadline: Optional[float]) -> bool:
    """Whether `time.monotonic()` has reached `deadline` (never, for None)."""
    return deadline is not None and time.monotonic() >= deadline
