"""Random crops of recordings for audio pretraining, shared by the audio families.

A family lists its recordings (`list_audio_files`; a run keeps the files it began with,
`run_audio_files`), reads them at the model's rate as they are reached (`RecordingFiles`) and
draws equal-length crops from them (`CropBatches`), which a `zoo.training.Trainer` resumes exactly.
Per-frame targets too large to hold for a whole corpus (MERT's CQT) are written to one file as they
are computed (`frame_rows_writer`, driven by `resumable_pass`) and read a crop at a time
(`FrameRows`); a pass that a stop or a time limit cut short goes on where it stopped (`done_passes`).
"""

from __future__ import annotations

import fnmatch
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
import torch.nn.functional as F

from zoo.audio import (
    AUDIO_SUFFIXES, SPAN_FORMATS, AudioProcessor, decode_span, frame_count, resampled_length, sound_header,
)
from zoo.audio_spans import file_scale
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.io import atomic_write_text, visible_files
from zoo.training import TimeLimitReached, run_input_files

#: batches whose recordings are sorted by length together (see `CropBatches`)
POOL_BATCHES = 32
#: rows of a `FrameRows` file its fingerprint reads (evenly spaced, the first and last included)
FINGERPRINT_ROWS = 256
#: what a teachers' pass is computing (its files and frames), beside its output files until the targets
#: are made: a rerun of a stopped run goes on with the pass it finds for the same (`done_passes`)
PASS_FILE = ".teachers.json"

#: what a pass computes, a group of recordings at a time: per recording, one (T_i, width) tensor per output file
RowGroups = Iterable[Sequence[Sequence[torch.Tensor]]]


def list_audio_files(folder: str | Path, exclude: Sequence[str] = ()) -> list[Path]:
    """Audio files under `folder` (recursively, sorted), minus names matching an `exclude` pattern.

    Patterns are fnmatch patterns on the path relative to `folder`, e.g. "*_[0-4].wav"
    drops the FSDD test split (takes 0-4 of each speaker and digit).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--data {str(root)!r} is not a folder; pass a folder of audio files")
    files = [path for path in visible_files(root, AUDIO_SUFFIXES)
             if not any(fnmatch.fnmatch(str(path.relative_to(root)), pattern) for pattern in exclude)]
    if not files:
        left_out = f" once {list(exclude)} are left out" if exclude else ""
        raise InputError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {str(root)!r}{left_out}; pass a folder "
                         "of recordings")
    return files


def run_audio_files(out: Path, folders: Sequence[str | Path], exclude: Sequence[str] = (),
                    earlier: Optional[Callable[[], Optional[list[Path]]]] = None) -> list[Path]:
    """The recordings of the pretraining run in `out`: the folders' audio files when it begins, the
    files it began with when it resumes, though the folders or the endings this machine decodes
    have changed since (`zoo.training.run_input_files`, which says what `earlier` is)."""
    listings = [(Path(folder), list_audio_files(folder, exclude)) for folder in folders]
    return run_input_files(Path(out), listings, earlier)


def load_waves(files: Sequence[Path], processor: AudioProcessor) -> list[torch.Tensor]:
    """Every recording as a mono waveform at the model's rate, held in memory (230 MB an hour at
    16 kHz): for a benchmark's few files; a pretraining corpus is read as `RecordingFiles`."""
    return [processor.prepare(path) for path in files]


#: libsndfile formats (`soundfile.info(...).format`) whose header states how many frames it then
#: decodes, however the file was cut (a truncated WAV's count is what it holds): PCM containers, FLAC's
#: STREAMINFO, Ogg's last granule position (tests/test_lazy_recordings.py checks each against its
#: decoding). MP3 is left out: without a Xing/LAME header, mpg123 can only estimate its length.
COUNTED_FORMATS = ("WAV", "WAVEX", "FLAC", "AIFF", "AU", "CAF", "W64", "RF64", "OGG")


def recording_layout(path: Path, processor: AudioProcessor) -> tuple[int, bool]:
    """(samples of `processor.prepare(path)`, whether a span of the recording can be decoded alone).

    The samples (resampled to the model's rate, padded to `min_samples`) come from the file's
    header where its format counts frames exactly (`COUNTED_FORMATS`), else from decoding it once;
    a header that cannot be read is decoded too, so that the decoder's error names the file. A
    span can be decoded alone from a file of `SPAN_FORMATS` whose recording needs no padding."""
    info = sound_header(path)
    if info is None or info.format not in COUNTED_FORMATS:
        return processor.prepare(path).numel(), False
    length = resampled_length(info.frames, info.samplerate, processor.sampling_rate)
    return max(length, processor.min_samples), info.format in SPAN_FORMATS and length >= processor.min_samples


class RecordingFiles(Sequence[torch.Tensor]):
    """The run's recordings as a sequence of mono waveforms at the model's rate, each decoded
    (`processor.prepare`) when it is indexed and not kept: a corpus held whole at the model's
    rate takes 230 MB an hour at 16 kHz (LibriSpeech's 960 h: 220 GB), where a batch needs a few
    recordings (fairseq reads each batch's files too). `lengths` holds each one's sample count
    (`recording_layout`), all `CropBatches` needs to lay out its batches; a recording whose
    decoding has another length (the file changed since) is refused, since its crops and
    targets would no longer match.

    A crop (`span`) of a WAV or FLAC file decodes only its own samples (`decode_span`): a 5 s crop
    of a 4-minute 44.1 kHz song takes 16 ms, its whole decoding 680 ms, which a batch of songs
    paid for each recording. With `do_normalize` a span is scaled by its recording's mean and
    deviation, taken in one streamed pass over the file the first time it is cropped (`file_scale`,
    as `embed` scales a long file's windows), where it was decoded whole into memory for them.
    """

    def __init__(self, files: Sequence[Path], processor: AudioProcessor) -> None:
        self.files, self.processor = [Path(file) for file in files], processor
        layouts = [recording_layout(file, processor) for file in self.files]
        self.lengths = np.array([length for length, _ in layouts], dtype=np.int64)
        self.spanned = np.array([spanned for _, spanned in layouts], dtype=bool)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Recording `index` decoded (an int: a slice would decode several at once)."""
        index = operator.index(index)
        wave = self.processor.prepare(self.files[index])
        if wave.numel() != self.lengths[index]:
            raise self.changed(index, wave.numel())
        return wave

    def span(self, index: int, first: int, count: int) -> torch.Tensor:
        """Samples [first, first + count) of recording `index` (fewer at its end), as its whole
        decoding has them: read alone where the file allows (`decode_span`), whatever was decoded before."""
        if not self.spanned[index]:
            return self[index][first : first + count]
        processor = self.processor
        samples, length = decode_span(self.files[index], processor.sampling_rate, first, count)
        if length != self.lengths[index]:
            raise self.changed(index, length)
        scale = file_scale(self.files[index], processor.sampling_rate, processor.normalize_eps) \
            if processor.do_normalize else None
        return processor.finished(samples, scale)

    def changed(self, index: int, length: int) -> InputError:
        return InputError(f"audio file {str(self.files[index])!r} decodes to {length} samples at "
                          f"{self.processor.sampling_rate} Hz, but had {self.lengths[index]} when this run listed it; "
                          "it changed since: restore it, or start the run over in a new output folder")


def sample_counts(recordings: RecordingFiles | Sequence[torch.Tensor]) -> np.ndarray:
    """Each recording's samples: `RecordingFiles` knows them without decoding a file."""
    if isinstance(recordings, RecordingFiles):
        return recordings.lengths
    return np.array([wave.numel() for wave in recordings], dtype=np.int64)


def recording_frames(recordings: RecordingFiles | Sequence[torch.Tensor], field: int, hop: int) -> list[int]:
    """Each recording's encoder frames (`frame_count` of its `sample_counts`)."""
    return [frame_count(int(samples), field, hop) for samples in sample_counts(recordings)]


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
    are saved: labels.pt keeps those, and a rerun with other teacher settings is refused. A run
    stopped before that leaves them for its rerun (`done_passes`); a run refused while making the
    labels takes them away with what else it wrote (`zoo.training.undone_if_refused`)."""
    rows.path.unlink()
    rows.path.with_name(PASS_FILE).unlink(missing_ok=True)


def recorded(path: Path) -> Any:
    """The JSON value `path` holds; None where there is none to read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def past(deadline: Optional[float]) -> bool:
    """Whether `time.monotonic()` has reached `deadline` (never, for None)."""
    return deadline is not None and time.monotonic() >= deadline


def frame_counts(sequences: Sequence[torch.Tensor]) -> np.ndarray:
    """Each sequence's frames (T_i), from `frames` where the sequences know them without being read
    (`FrameRows`: its file's layout; MERT's `StageResiduals`: those of the features it is computed from)."""
    if isinstance(getattr(sequences, "frames", None), np.ndarray):
        return sequences.frames
    return np.array([len(frames) for frames in sequences], dtype=np.int64)


def wave_span(waves: Sequence[torch.Tensor], index: int, first: int, count: int) -> torch.Tensor:
    """Samples [first, first + count) of recording `index`: from `RecordingFiles`, only those are decoded."""
    if isinstance(waves, RecordingFiles):
        return waves.span(index, first, count)
    return waves[index][first : first + count]


def frame_slice(sequences: Sequence[torch.Tensor], index: int, first: int, count: int) -> torch.Tensor:
    """Frames [first, first + count) of sequence `index`: from `FrameRows`, only those rows are read."""
    if isinstance(sequences, FrameRows):
        return sequences.rows(index, first, count)
    return sequences[index][first : first + count]


class CropBatches:
    """Endless batches of equal-length random crops with their frame labels; resumable.

    Each epoch shuffles the recordings, sorts them by length within pools of
    `batch_size * POOL_BATCHES`, cuts the pools into batches and shuffles the batches.
    Every recording of a batch is cut to a random run of T frames starting on a frame
    boundary, T = the frames of the batch's shortest recording (at most `max_frames`), and
    its labels are sliced alike. So a batch needs no padding and the conv front end runs
    on it at once (fairseq crops to the shortest recording the same way, its
    `pad_audio=False` default); the tails cut off are short because a batch holds
    recordings of similar length. `waves` may be `RecordingFiles`, which decodes only the
    recordings of the batch drawn. Batch i depends only on (seed, i), and `state_dict()`
    holds the number of batches drawn, so a resumed run sees the same batches as an
    uninterrupted one.

    `labels` may be None when the objective labels its batches itself (BEATs' tokenizers).
    `extra` holds further per-frame targets, (T, ...) per recording, cropped alike and
    batched under their own names (MERT's CQT frames); `FrameRows` targets are read a crop
    at a time.

    Yields:
        {"input_values": (B, S), "attention_mask": (B, S)[, "labels": (B, T, ...)][, name: (B, T, ...)]}.
    """

    def __init__(self, waves: Sequence[torch.Tensor], labels: Optional[Sequence[torch.Tensor]], batch_size: int,
                 max_frames: int, field: int, hop: int, seed: int = 0,
                 extra: Optional[dict[str, Sequence[torch.Tensor]]] = None) -> None:
        targets = {**({"labels": labels} if labels is not None else {}), **(extra or {})}
        if not waves or any(len(waves) != len(frames) for frames in targets.values()):
            counts = {name: len(frames) for name, frames in targets.items()}
            raise InputError(f"got {len(waves)} recordings and target sequences {counts}; pass one per recording")
        if batch_size < 1 or max_frames < 1:
            raise ConfigError(f"batch_size={batch_size} and max_frames={max_frames} must be positive")
        self.frames = np.array(recording_frames(waves, field, hop))
        for name, sequences in targets.items():
            for index, (count, frames) in enumerate(zip(self.frames, frame_counts(sequences))):
                if count != frames:
                    raise InputError(f"recording {index} has {count} frames but {frames} {name}; make them "
                                     "with the same encoder framing")
        self.waves = waves if isinstance(waves, RecordingFiles) else list(waves)
        self.targets = {name: frames if isinstance(frames, FrameRows) else list(frames)
                        for name, frames in targets.items()}
        self.batch_size, self.max_frames = batch_size, max_frames
        self.field, self.hop = field, hop
        self.seed = seed
        self.batches_drawn = 0
        self._epoch: tuple[int, list[np.ndarray]] = (-1, [])
        self.batches_per_epoch = len(self.epoch_batches(0))

    def state_dict(self) -> dict[str, int]:
        return {"batches_drawn": self.batches_drawn, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise CheckpointError(f"the checkpoint's batches used seed {state['seed']}, this run seed {self.seed}")
        self.batches_drawn = state["batches_drawn"]

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The recordings of each batch of `epoch`, in the order they are drawn."""
        if self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.waves))
            pool = self.batch_size * POOL_BATCHES
            batches = []
            for start in range(0, len(order), pool):
                members = order[start : start + pool]
                members = members[np.argsort(self.frames[members], kind="stable")]
                batches.extend(members[i : i + self.batch_size] for i in range(0, len(members) - self.batch_size + 1,
                                                                                 self.batch_size))
            batches = batches or [order]
            self._epoch = (epoch, [batches[i] for i in rng.permutation(len(batches))])
        return self._epoch[1]

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """Batch number `index` (0-based) of the endless stream."""
        items = self.epoch_batches(index // self.batches_per_epoch)[index % self.batches_per_epoch]
        frames = min(int(self.frames[items].min()), self.max_frames)
        samples = (frames - 1) * self.hop + self.field
        rng = np.random.default_rng([self.seed, index, 1])
        waves, targets = [], {name: [] for name in self.targets}
        for item in items:
            first = int(rng.integers(0, self.frames[item] - frames + 1))
            wave = wave_span(self.waves, item, first * self.hop, samples)
            waves.append(F.pad(wave, (0, samples - wave.numel())))  # pads only recordings shorter than `field`
            for name, sequences in self.targets.items():
                targets[name].append(frame_slice(sequences, item, first, frames))
        input_values = torch.stack(waves)
        batch = {"input_values": input_values, "attention_mask": torch.ones_like(input_values, dtype=torch.long)}
        return {**batch, **{name: torch.stack(crops) for name, crops in targets.items()}}

    def __iter__(self):
        while True:
            index = self.batches_drawn
            self.batches_drawn += 1
            yield self.batch(index)
