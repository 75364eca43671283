"""Random crops of recordings for audio pretraining, shared by the audio families.

A family lists its recordings (`list_audio_files`; a run keeps the files it began with,
`run_audio_files`), reads them at the model's rate as they are reached (`RecordingFiles`) and
draws equal-length crops from them (`CropBatches`), which a `zoo.training.Trainer` resumes exactly.
Per-frame targets too large to hold for a whole corpus are read a crop at a time from their file
(`zoo.frame_rows.FrameRows`).
"""

from __future__ import annotations

import fnmatch
import operator
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zoo.audio import (
    AUDIO_SUFFIXES, SPAN_FORMATS, AudioProcessor, decode_span, frame_count, resampled_length, sound_header,
)
from zoo.audio_spans import file_scale
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.frame_rows import FrameRows
from zoo.io import visible_files
from zoo.run_folders import run_input_files

#: batches whose recordings are sorted by length together (see `CropBatches`)
POOL_BATCHES = 32


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
    have changed since (`zoo.run_folders.run_input_files`, which says what `earlier` is)."""
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
