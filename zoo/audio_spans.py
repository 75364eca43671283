"""Long recording files read a window at a time.

A recording prepared for `embed` was held whole at the model's rate while its windows ran
(an hour: 230 MB at 16 kHz, 345 MB at 24 kHz; ten hours, ten times that), and a training
batch decoded each recording whole to cut one window of it. A WAV or FLAC file longer than one
window is instead kept as its path and length (`LongRecording`): its windows are the spans
`AudioProcessor.split` (or `random_window`) would cut from the whole decoding, and each is
decoded alone (`decode_span`) when its batch is made, so a batch holds its windows whatever the
recordings' length. `do_normalize` scales them by the whole recording's mean and deviation,
taken in one streamed pass over the file (`file_scale`), as pretraining crops are scaled.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from zoo.audio import (
    SPAN_FORMATS, check_rate, checked_blocks, decode_span, mono_blocks, open_sound, resample_blocks, resampled_length,
    scaled, sound_header, warn_if_truncated,
)
from zoo.errors import InputError

Scale = Optional[tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class LongRecording:
    """A recording file of `length` samples at the model's `rate` (after resampling), whose spans
    `embed` decodes one window at a time; `scale` is the `do_normalize` mean and deviation of the
    whole recording (None without it)."""

    path: Path
    rate: int
    length: int
    scale: Scale

    def numel(self) -> int:
        return self.length

    def span(self, first: int, count: int) -> RecordingSpan:
        return RecordingSpan(self, first, min(count, self.length - first))


@dataclasses.dataclass(frozen=True)
class RecordingSpan:
    """Samples [first, first + count) of a `LongRecording`, decoded by `samples`."""

    recording: LongRecording
    first: int
    count: int

    def numel(self) -> int:
        return self.count

    def span(self, first: int, count: int) -> RecordingSpan:
        """Samples [first, first + count) of this span: a window of a window (`AudioProcessor.split`
        of a span no longer than a window gives the span itself)."""
        return self.recording.span(self.first + first, min(count, self.count - first))

    def samples(self) -> torch.Tensor:
        """The span as the whole recording's decoding, normalised as it is, has it; a file whose
        length changed since it was listed is refused, as its windows were laid out for the old one."""
        recording = self.recording
        wave, length = decode_span(recording.path, recording.rate, self.first, self.count)
        if length != recording.length or wave.numel() != self.count:
            raise InputError(f"audio file {str(recording.path)!r} decodes to {length} samples at {recording.rate} "
                             f"Hz, but had {recording.length} when it was opened; it changed while it was read: "
                             "read it again once it is written")
        return scaled(wave, recording.scale)


def long_recording(item: Any, rate: int, window: int, normalize_eps: Optional[float]) -> Optional[LongRecording]:
    """`item` as a `LongRecording` if it is the path of a file of `SPAN_FORMATS` (or an undecoded
    `datasets` Audio row holding only such a path) of more than `window` samples at `rate`, else
    None (decoded whole, as before: Ogg and MP3 cannot be sought exactly, and a recording of one
    window gains nothing). `normalize_eps`: the variance floor of `do_normalize` (None without
    it), whose scale takes one pass over the file (`file_scale`)."""
    is_row = isinstance(item, dict) and item.get("bytes") is None and "array" not in item
    path = item.get("path") if is_row else item
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return None
    info = sound_header(path)
    if info is None or info.format not in SPAN_FORMATS:
        return None
    length = resampled_length(info.frames, check_rate(info.samplerate), rate)
    if length <= window:
        return None
    warn_if_truncated(info.extra_info, f"audio file {str(path)!r}")
    scale = None if normalize_eps is None else file_scale(Path(path), rate, normalize_eps)
    return LongRecording(Path(path), rate, length, scale)


def file_scale(path: Path, rate: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The `do_normalize` mean and deviation of the recording file `path` at `rate` (`streamed_scale`),
    taken once per version of the file (`kept_scale`). The version is its inode, size, and
    modification and change times: `cp -p` keeps the size and mtime of a new recording, but
    writing it changes the ctime, and a file moved in its place has another inode."""
    stat = path.stat()
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return kept_scale(path.resolve(), rate, eps, version)


#: recordings whose `do_normalize` scale is kept (two float32 tensors each)
SCALES_KEPT = 65536


@functools.lru_cache(maxsize=SCALES_KEPT)
def kept_scale(path: Path, rate: int, eps: float, version: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """`streamed_scale` of a file as it is now (`version`, from its os.stat, names it):
    fine-tuning draws a window of the same recording every epoch, and each draw decoded the
    whole recording again for its scale."""
    return streamed_scale(path, rate, eps)


def streamed_scale(path: Path, rate: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and deviation (with the variance floor `eps`) of the recording in `path` at `rate`,
    as `AudioProcessor.scale_of` takes them of its whole decoding, from one pass over its blocks:
    the moments of each block in float64, merged (Chan et al.), so that the recording is never held."""
    count, mean, squares = 0, 0.0, 0.0
    for block in decoded_blocks(path, rate):
        values = block.double()
        size, block_mean = values.numel(), float(values.mean())
        block_squares = float(((values - block_mean) ** 2).sum())
        total = count + size
        delta = block_mean - mean
        mean += delta * size / total
        squares += block_squares + delta * delta * count * size / total
        count = total
    variance = squares / count
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(math.sqrt(variance + eps), dtype=torch.float32)


def decoded_blocks(path: Path, rate: int) -> Iterator[torch.Tensor]:
    """The blocks `decode_audio` joins, checked as it checks them, one at a time."""
    where = f"audio file {str(path)!r}"
    with open_sound(str(path), where) as handle:
        yield from resample_blocks(checked_blocks(mono_blocks(handle, where), f"audio input {str(path)!r}"),
                                   check_rate(handle.samplerate), rate)

