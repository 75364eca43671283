"""Audio in: files or arrays at any sampling rate -> mono float32 at the model's rate.

torchaudio (resampling) and soundfile (decoding) are imported on first use, so that
`import zoo` stays light.
"""

from __future__ import annotations

import dataclasses
import io
import math
import numbers
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from zoo.errors import ConfigError, InputError, counting_from, warn
from zoo.pooling import refuse_fixed_options
from zoo.processing import Processor, check_file_input, first_non_finite, is_file_object, require_items

if TYPE_CHECKING:
    from zoo.audio_spans import LongRecording, RecordingSpan

#: file endings of the containers libsndfile reads (MP3 from 1.1.0, bundled with soundfile >= 0.12)
FORMAT_SUFFIXES = {"WAV": (".wav",), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",),
                   "AIFF": (".aif", ".aiff", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",), "W64": (".w64",),
                   "RF64": (".rf64",)}


def decodable_suffixes() -> tuple[str, ...]:
    """The audio file endings this machine's libsndfile decodes: a folder's MP3s are read where a
    path to one would be, and left out where its decoder is missing."""
    import soundfile

    formats = soundfile.available_formats()
    return tuple(suffix for name, suffixes in FORMAT_SUFFIXES.items() if name in formats for suffix in suffixes)


#: audio file endings read from folders
AUDIO_SUFFIXES = decodable_suffixes()
#: most channels an array may have; a larger "channel" axis is surely the time axis
MAX_CHANNELS = 8
#: the float sample value no recording reaches (48 dB over full scale), but 16-bit PCM counts do
MAX_FLOAT_PEAK = 256.0
#: integer PCM sample types and the full scale that divides them into [-1, 1)
PCM_SCALES = {"int8": 128.0, "int16": 32768.0, "int32": 2147483648.0}
PCM_ADVICE = ("pass float samples in [-1, 1], or integer PCM samples of type int8, int16, int32 or uint8, whose "
              "scale is known")


def read_audio_file(path: str | Path, target_rate: int) -> torch.Tensor:
    """Decode an audio file (AUDIO_SUFFIXES) into a mono float32 waveform at `target_rate`."""
    check_file_input(path, "audio")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder, not an audio file; pass the files in it, or the folder "
                         "to embed (or zoo embed), which reads the audio files under it")
    if not path.is_file():
        raise InputError(f"audio file {str(path)!r} does not exist; check the path")
    return decode_audio(str(path), f"audio file {str(path)!r}", target_rate, what=f"audio input {str(path)!r}")


def read_audio_row(row: dict[str, Any], target_rate: int) -> torch.Tensor:
    """An undecoded `datasets` Audio row ({"bytes", "path"}): its bytes, else its file. This is
    how the zoo reads audio datasets without the decoder `datasets` >= 4 needs (torchcodec)."""
    if row.get("bytes") is not None:
        return decode_audio(io.BytesIO(row["bytes"]), f"the audio bytes of {row.get('path') or 'a dataset row'!r}",
                            target_rate, what=f"audio input {row['path']!r}" if row.get("path") else "audio input")
    if row.get("path"):
        return read_audio_file(row["path"], target_rate)
    raise InputError(f"an audio row with keys {sorted(row)} has neither bytes nor a path; pass a file path, an "
                     "array with sampling_rate=, or a dict with 'array' and 'sampling_rate'")


def decode_audio(source: str | BinaryIO, where: str, target_rate: int, what: Optional[str] = None) -> torch.Tensor:
    """soundfile's decoding of a file or buffer as a mono float32 waveform at `target_rate`.

    It is decoded, mixed to mono and resampled a block at a time, so that a long recording is
    only ever held whole at the model's rate: an hour of 44.1 kHz stereo is 1.27 GB as decoded,
    230 MB at 16 kHz. The decoder's errors become one `InputError` naming `where`, and the
    samples are checked as `check_waveform` checks an array's, naming `what` (default: `where`).
    """
    with open_sound(source, where) as handle:
        rate = check_rate(handle.samplerate)
        blocks = checked_blocks(mono_blocks(handle, where), what or where)
        wave = joined(resample_blocks(blocks, rate, target_rate), resampled_length(handle.frames, rate, target_rate))
        warn_if_truncated(handle.extra_info, where)
    return wave


def resampled_length(frames: int, rate: int, target_rate: int) -> int:
    """The samples torchaudio makes of `frames` at `rate` resampled to `target_rate`, ceil(frames *
    target_rate / rate); 0 for a count no file holds (a stream's unknown length)."""
    return -(-frames * target_rate // rate) if 0 <= frames < MAX_FRAMES else 0


def joined(blocks: Iterable[torch.Tensor], length: int) -> torch.Tensor:
    """Consecutive blocks as one waveform, written into a tensor of the `length` expected, taken
    once: a list of blocks joined at the end held the recording twice, and its freed blocks
    stayed in the heap. Samples past `length` (a header that undercounts) are joined after it."""
    wave, filled, beyond = torch.empty(length), 0, []
    for block in blocks:
        taken = min(block.numel(), length - filled)
        wave[filled : filled + taken] = block[:taken]
        filled += taken
        if taken < block.numel():
            beyond.append(block[taken:])
    return torch.cat([wave, *beyond]) if beyond else wave[:filled]


def open_sound(source: str | BinaryIO, where: str) -> Any:
    """soundfile's handle on a file or buffer, its decoder's errors one `InputError` naming `where`."""
    import soundfile

    if isinstance(source, (str, os.PathLike)):
        if os.path.isfile(source) and not os.access(source, os.R_OK):  # libsndfile says "System error."
            raise InputError(f"cannot read {where}: permission denied; make it readable (chmod +r) or leave it out")
        source = os.fsencode(source)  # libsndfile takes bytes: a name that is not UTF-8 failed to encode
    try:
        return soundfile.SoundFile(source)
    except Exception as err:  # soundfile raises several unrelated types for unreadable files
        raise undecodable(where, err) from err


def sound_header(path: str | Path) -> Any:
    """soundfile's header of the file `path` (format, frames, rate), or None where it cannot be read
    or counts no frames (a stream of unknown length): the caller then decodes the file whole, whose
    errors name it."""
    import soundfile

    try:
        info = soundfile.info(os.fsencode(path))
    except Exception:  # soundfile raises several unrelated types for unreadable files
        return None
    return info if 0 < info.frames < MAX_FRAMES else None


def undecodable(where: str, err: Exception) -> InputError:
    """The error for audio soundfile cannot decode (its header or its data), naming the input and
    how to convert it or pass its samples."""
    return InputError(f"cannot decode {where} ({err}); convert it to one of {', '.join(AUDIO_SUFFIXES)} (e.g. ffmpeg "
                      "-i IN OUT.flac), or in Python pass the samples as an array with sampling_rate=")


#: frames a file is decoded, mixed and resampled by (about 2 MB of stereo float32)
BLOCK_FRAMES = 1 << 18
#: more frames than a file holds (a year at 1 MHz): libsndfile's count for a stream of unknown length
MAX_FRAMES = 1 << 45


def mono_blocks(handle: Any, where: str) -> Iterator[torch.Tensor]:
    """An open file's samples averaged over its channels, `BLOCK_FRAMES` at a time: an hour of
    44.1 kHz stereo never holds its channels whole (1.27 GB) beside their mix."""
    while len(block := read_mono(handle, BLOCK_FRAMES, where)):
        yield block


def read_mono(handle: Any, count: int, where: str, first: Optional[int] = None) -> torch.Tensor:
    """The next `count` frames of an open file (from frame `first` if given; fewer at its end),
    averaged over its channels."""
    try:
        if first is not None:
            handle.seek(first)
        block = handle.read(count, dtype="float32", always_2d=True)
    except Exception as err:  # a file whose header reads but whose data does not
        raise undecodable(where, err) from err
    return torch.from_numpy(block[:, 0] if handle.channels == 1 else block.mean(axis=1, dtype=np.float32))


def checked_blocks(blocks: Iterable[torch.Tensor], what: str) -> Iterator[torch.Tensor]:
    """A recording's blocks as they come, refused after the last as `check_waveform` refuses a
    whole recording: empty, or holding NaN or infinite samples (all of them counted); warned of
    where its samples reach MAX_FLOAT_PEAK, as an array's are (`check_float_scale`)."""
    total = bad = 0
    peak = 0.0
    for block in blocks:
        total, bad = total + block.numel(), bad + int((~torch.isfinite(block)).sum())
        if not bad:
            peak = max(peak, float(block.abs().max())) if block.numel() else peak
            yield block
    refuse_bad_samples(total, bad, what)
    if peak >= MAX_FLOAT_PEAK:  # a float file of int16 counts: float16 models overflowed on it
        warn(f"{what} holds float samples beyond ±{MAX_FLOAT_PEAK:g}, but float audio lies in [-1, 1]: the file "
             "seems to store integer PCM counts as floats; divide its samples by 32768 (16-bit) or save it as "
             "16-bit PCM")


#: input periods of the lower of two rates that torchaudio's sinc kernel reaches either side of a
#: sample (its lowpass_filter_width 6 over its rolloff 0.99), rounded up
RESAMPLE_REACH = 8


def resample_blocks(blocks: Iterable[torch.Tensor], rate: int, target_rate: int) -> Iterator[torch.Tensor]:
    """torchaudio's resampling of a recording that comes as consecutive blocks, a block at a time.

    torchaudio resamples a waveform whole, with temporaries several times its size (an hour at
    44.1 kHz: about 1.5 GB). Here each stretch is resampled with its neighbours' samples as
    context on either side, at least the kernel's reach, and cut at a whole number of the rates'
    period (rate / gcd samples in give target_rate / gcd out), so its own output samples are the
    ones torchaudio computes for the whole recording; they join into its result within float
    rounding (tests/test_audio_blocks.py states the difference).
    """
    if rate == target_rate:
        yield from blocks
        return
    import torchaudio.functional

    common = math.gcd(rate, target_rate)
    period, out_period = rate // common, target_rate // common
    context = period * math.ceil(RESAMPLE_REACH / min(period, out_period))

    def part(samples: torch.Tensor, skip: int, count: Optional[int]) -> torch.Tensor:
        """The output of `samples[skip : skip + count]` (to the end if None), resampled in context."""
        out = torchaudio.functional.resample(samples, rate, target_rate)
        start = skip // period * out_period
        return out[start:] if count is None else out[start : start + count // period * out_period]

    done, waiting = torch.zeros(0), torch.zeros(0)  # done: the last `context` samples resampled
    for block in blocks:
        waiting = torch.cat([waiting, block])
        ready = (waiting.numel() - context) // period * period
        if ready > 0:
            yield part(torch.cat([done, waiting[: ready + context]]), done.numel(), ready)
            done, waiting = torch.cat([done, waiting[:ready]])[-context:], waiting[ready:]
    yield part(torch.cat([done, waiting]), done.numel(), None)


#: libsndfile formats whose seeking is exact (PCM containers, FLAC), so that a span is read as the
#: whole decoding has it: Ogg Vorbis and MP3 decoders restart from a page or frame and are left out
SPAN_FORMATS = ("WAV", "WAVEX", "FLAC", "AIFF", "AU", "CAF", "W64", "RF64")


def decode_span(path: str | Path, target_rate: int, first: int, count: int) -> tuple[torch.Tensor, int]:
    """Samples [first, first + count) of `decode_audio(path, ..., target_rate)`, and the length of
    that whole decoding, decoding only the frames they come from and the resampling kernel's
    reach either side (as `resample_blocks` cuts its blocks, at a whole number of the rates'
    period), so a pretraining crop of 5 s does not decode its whole recording: equal to the whole
    decoding's samples at the same rate, and within float rounding of them when resampled
    (tests/test_audio_blocks.py). For files of `SPAN_FORMATS` only; the samples are checked as
    `decode_audio` checks a file's."""
    where = f"audio file {str(path)!r}"
    with open_sound(str(path), where) as handle:
        rate = check_rate(handle.samplerate)
        if handle.format not in SPAN_FORMATS:
            raise ConfigError(f"{where} is {handle.format}, whose seeking is not exact; decode it whole")
        length = resampled_length(handle.frames, rate, target_rate)
        if rate == target_rate:
            return checked_span(read_mono(handle, count, where, first), where), length
        common = math.gcd(rate, target_rate)
        period, out_period = rate // common, target_rate // common
        context = period * math.ceil(RESAMPLE_REACH / min(period, out_period))
        start = first // out_period * period  # the source frame of the output period holding `first`
        lowest = max(start - context, 0)
        end = -(-(first + count) // out_period) * period + context
        samples = checked_span(read_mono(handle, end - lowest, where, lowest), where)
    import torchaudio.functional

    offset = (start - lowest) // period * out_period + first % out_period
    return torchaudio.functional.resample(samples, rate, target_rate)[offset : offset + count], length


def checked_span(samples: torch.Tensor, where: str) -> torch.Tensor:
    """A span's samples, refused as `checked_blocks` refuses a recording's (NaN or infinite samples)."""
    refuse_bad_samples(samples.numel(), int((~torch.isfinite(samples)).sum()), where)
    return samples


#: libsndfile's log line for a WAV data chunk longer than the bytes that follow it
TRUNCATED_DATA = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)
#: data sizes that mean "unknown" (a WAV streamed to a pipe), not a length
UNKNOWN_DATA_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF)


def warn_if_truncated(log: str, where: str) -> None:
    """A WAV file cut short (a copy or download that stopped) decodes without an error, as
    libsndfile reads what is there: warn, since its embedding is of part of the recording."""
    found = TRUNCATED_DATA.search(log)
    if found is None:
        return
    announced, held = map(int, found.groups())
    if announced in UNKNOWN_DATA_SIZES or announced <= held:
        return
    warn(f"truncated audio in {where}: its header announces {announced} bytes of audio but it holds {held} "
         f"({held / announced:.0%}); the part it holds is used. Copy or download it again if that was not "
         "meant.")


def to_channels_first(samples: Any) -> torch.Tensor:
    """An array of 1 or 2 dims as a float32 (channels, samples) tensor.

    Two-dimensional input may be (channels, samples) or (samples, channels); the shorter
    axis is taken as channels, and it may hold at most `MAX_CHANNELS`. A list of floats is an
    array too: `datasets` gives a float sequence column (or an "array" stored as one) that way.
    """
    if isinstance(samples, (list, tuple)):
        samples = float_list_array(samples)
    if not isinstance(samples, (np.ndarray, torch.Tensor)):
        raise InputError(
            f"audio input of type {type(samples).__name__} is not supported; pass a file path, "
            "a numpy array, a torch tensor or a dict with 'array' and 'sampling_rate'"
        )
    tensor = float_samples(samples)
    if tensor.dim() == 1:
        return tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise InputError(f"audio array has shape {tuple(tensor.shape)}; expected (samples,) or (channels, samples)")
    if tensor.shape[0] > tensor.shape[1]:
        tensor = tensor.T
    if tensor.shape[0] > MAX_CHANNELS:
        raise InputError(
            f"audio array has shape {tuple(samples.shape)}: neither axis looks like channels "
            f"(at most {MAX_CHANNELS}); pass (samples,) or (channels, samples)"
        )
    if tensor.shape[0] > 2:  # transformers' feature extractors read such an array as a batch
        warn(f"audio array of shape {tuple(samples.shape)} is read as one recording of {tensor.shape[0]} "
             f"channels, averaged to mono; to embed {tensor.shape[0]} clips, pass them as a list")
    return tensor


def float_samples(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Samples as float32 on the CPU: floats as given, integer PCM scaled into [-1, 1) (int8,
    int16 and int32 by their range, uint8 as 8-bit WAV stores it, around 128), numpy and torch
    alike. Any other type (int64, bool, complex, text) is refused: its scale is unknown, and
    taken raw it would give samples thousands of times too loud."""
    if isinstance(samples, np.ndarray) and samples.dtype.kind not in "iuf":
        raise InputError(f"audio samples of type {samples.dtype}; {PCM_ADVICE}")
    tensor = torch.from_numpy(np.ascontiguousarray(samples)) if isinstance(samples, np.ndarray) else samples
    tensor = tensor.detach().cpu()
    kind = str(tensor.dtype).removeprefix("torch.")
    if tensor.is_floating_point():
        return check_float_scale(tensor.to(torch.float32))
    if kind == "uint8":
        return (tensor.to(torch.float32) - 128.0) / 128.0
    if kind not in PCM_SCALES:
        raise InputError(f"audio samples of type {kind}; {PCM_ADVICE}")
    return tensor.to(torch.float32) / PCM_SCALES[kind]


def check_float_scale(samples: torch.Tensor) -> torch.Tensor:
    """Float samples as given, with a warning where they reach MAX_FLOAT_PEAK: such values are
    mostly integer PCM counts cast to float without dividing by their scale
    (`int16_array.astype(np.float32)`), which gives BEATs' filterbanks another recording (cosine
    0.34 to the right embedding); a normalised sparse recording (a click in silence) can reach it
    too, so it is not refused."""
    peak = float(samples.abs().max()) if samples.numel() else 0.0
    if peak >= MAX_FLOAT_PEAK:  # a warning: a normalised recording of a click in silence reaches it too
        warn(f"audio samples reach {peak:g}, but float audio lies in [-1, 1]: if these are integer PCM "
             "values cast to float, divide them by 32768 (16-bit) or pass the integer array itself, whose "
             "scale is known")
    return samples


def float_list_array(samples: list | tuple) -> np.ndarray:
    """A (nested) list of float samples as a float32 array; anything else is refused, since
    integers could be PCM counts of any width and their scale is unknown."""
    try:
        array = np.asarray(samples)
    except ValueError as err:  # ragged channels
        raise InputError(f"audio given as a list that is not an array of samples ({err})") from err
    if array.dtype.kind != "f":
        raise InputError(f"audio given as a list of {array.dtype} values; {PCM_ADVICE} (as an array: a list's "
                         "integers could be of any width)")
    return array.astype(np.float32)


def check_waveform(wave: torch.Tensor, what: str = "audio input") -> None:
    """Refuse an empty or non-finite recording; `what` names it (a file by its path, so that one
    bad file among thousands in a job can be found)."""
    refuse_bad_samples(wave.numel(), int((~torch.isfinite(wave)).sum()), what)


def refuse_bad_samples(total: int, bad: int, what: str) -> None:
    """Refuse an empty recording, or one with NaN or infinite samples, from their counts: a whole
    waveform, streamed blocks and read spans are counted by their callers and refused alike."""
    if total == 0:
        raise InputError(f"{what} is empty (0 samples); drop it or pass a longer recording")
    if bad:
        raise InputError(f"{what} has {bad} NaN or infinite samples; clean it (e.g. np.nan_to_num) first")


#: the rates of real recordings, in Hz: a rate below is a typo or in kHz (1.5 Hz would be resampled
#: to about 170 million samples a second of input), one above no audio interface records
RECORDING_RATES = (1000, 1_000_000)


def check_rate(rate: Any) -> int:
    """A recording's rate as an int: a whole number of Hz (a fraction would be dropped by
    resampling) in RECORDING_RATES; a 0-d tensor or array (a dataset's formatted column) holds one."""
    low, high = RECORDING_RATES
    if isinstance(rate, (torch.Tensor, np.ndarray)) and rate.ndim == 0:
        rate = rate.item()
    if (isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not float(rate).is_integer()
            or not low <= rate <= high):
        raise InputError(f"sampling_rate={rate!r}; pass the recording's rate in Hz, a whole number from {low} to "
                         f"{high} (e.g. 44100, not 44.1)")
    return int(rate)


def load_waveform(item: Any, sampling_rate: Optional[int], target_rate: int) -> torch.Tensor:
    """One raw audio input as a mono float32 waveform at `target_rate`.

    Args:
        item: a path, an array/tensor, a dict with "array" and "sampling_rate" (as the
            `datasets` Audio feature gives), an undecoded Audio row ({"bytes", "path"}), or an
            encoded file's bytes or the file open (as image inputs take them).
        sampling_rate: rate of array inputs; files and dicts carry their own.
        target_rate: the model's rate; other rates are resampled with torchaudio.
    """
    if isinstance(item, (str, Path)):
        return read_audio_file(item, target_rate)
    if isinstance(item, (bytes, bytearray)):
        return decode_audio(io.BytesIO(item), f"audio bytes ({len(item)} bytes)", target_rate)
    if is_file_object(item):
        return decode_audio(item, f"the audio file open as {getattr(item, 'name', type(item).__name__)!r}", target_rate)
    if isinstance(item, dict) and "array" in item:
        wave, rate = to_channels_first(item["array"]), item.get("sampling_rate")
        rate = sampling_rate if rate is None else rate
    elif isinstance(item, dict) and ("bytes" in item or "path" in item):
        return read_audio_row(item, target_rate)
    else:
        wave, rate = to_channels_first(item), sampling_rate
    if rate is None:
        raise InputError(
            "an audio array was given without its sampling rate; pass sampling_rate=... "
            f"(the model expects {target_rate} Hz and resamples anything else)"
        )
    rate = check_rate(rate)
    check_waveform(wave)
    mono = wave.mean(dim=0)
    if rate == target_rate:
        return mono
    return joined(resample_blocks(mono.split(BLOCK_FRAMES), rate, target_rate),
                  resampled_length(mono.numel(), rate, target_rate))


def window_bounds(length: int, window: int) -> list[tuple[int, int]]:
    """(first, count) of the equal pieces, each at most `window` samples, that a recording of
    `length` samples is cut into by a processor that does not know its encoder's frames: the last
    may be shorter."""
    if length <= window:
        return [(0, length)]
    size = math.ceil(length / math.ceil(length / window))
    return [(first, min(size, length - first)) for first in range(0, length, size)]


def frame_count(num_samples: int, field: int, hop: int) -> int:
    """Frames of an unpadded conv stack with this receptive field and hop (at least 1)."""
    return 1 + max(num_samples - field, 0) // hop


def framed_windows(length: int, window: int, field: int, hop: int) -> list[tuple[int, int]]:
    """(first, count) of the windows, each at most `window` samples, that give a recording of
    `length` samples every one of its `frame_count` frames once: each starts on a frame boundary,
    where the frames of the one before end, and ends with its last frame (samples after the
    recording's last frame make none). The frames are shared out as evenly as whole frames allow.

    Equal pieces (`window_bounds`) left out the frames straddling their edges: a 35 s recording in
    30 s windows gave 1,748 of its 1,749 frames, so frame embeddings had gaps and their count
    was not the recording's.
    """
    if length <= window:
        return [(0, length)]
    total = frame_count(length, field, hop)
    pieces = math.ceil(total / frame_count(window, field, hop))
    bounds, first = [], 0
    for index in range(pieces):
        frames = total // pieces + (index < total % pieces)
        bounds.append((first * hop, (frames - 1) * hop + field))
        first += frames
    return bounds


def scaled(wave: torch.Tensor, scale: Optional[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """`wave` less the mean, over the deviation, of `scale` (`AudioProcessor.scale_of`; None: as it
    is): one new copy, not two, as a long recording is normalised whole."""
    if scale is None:
        return wave
    mean, deviation = scale
    return (wave - mean).div_(deviation)


def cut(prepared: torch.Tensor | LongRecording, first: int, count: int) -> torch.Tensor | RecordingSpan:
    """Samples [first, first + count) of a prepared recording: a view of a waveform, or the span of
    a `LongRecording` (or of a span of one) that `collate` decodes."""
    if isinstance(prepared, torch.Tensor):
        return prepared[first : first + count]
    return prepared.span(first, count)


#: the variance floor of waveform normalisation in transformers' feature extractor, and in fairseq's
#: `F.layer_norm(wav, wav.shape)` (LayerNorm's default eps)
TRANSFORMERS_NORMALIZE_EPS = 1e-7
FAIRSEQ_NORMALIZE_EPS = 1e-5


@dataclasses.dataclass
class AudioProcessor(Processor):
    """Waveforms for speech and audio encoders.

    Args:
        sampling_rate: the model's rate in Hz; inputs at other rates are resampled.
        do_normalize: zero-mean unit-variance per recording (as `Wav2Vec2FeatureExtractor`),
            applied to the whole recording before it is chunked.
        normalize_eps: added to the variance: transformers' 1e-7 (Hub checkpoints), or
            fairseq's 1e-5 (its `F.layer_norm(wav, wav.shape)`, for checkpoints converted from
            it), which sets a quiet recording's scale (a quiet FSDD clip: std 0.996 or 0.740).
        chunk_seconds: longest piece the encoder sees at once; longer recordings are cut
            into windows (on the encoder's frame boundaries: `align_to_frames`) so that an hour
            of audio embeds in bounded memory.
        min_samples: recordings shorter than this (the front end's receptive field) are
            zero-padded up to it so that they give one frame.
    """

    processor_type = "audio"
    option_names = ("sampling_rate",)
    file_suffixes = AUDIO_SUFFIXES
    dataset_feature = "Audio"

    sampling_rate: int = 16000
    do_normalize: bool = False
    normalize_eps: float = TRANSFORMERS_NORMALIZE_EPS
    chunk_seconds: float = 30.0
    min_samples: int = 400

    def __post_init__(self) -> None:
        """Settings read from a hand-edited preprocessor_config.json are checked here, naming the
        key, rather than as a resampler's error on the first recording."""
        high = RECORDING_RATES[1]
        if (isinstance(self.sampling_rate, bool) or not isinstance(self.sampling_rate, int)
                or not 1 <= self.sampling_rate <= high):  # 1e8 Hz resampled a 0.45 s clip into 2.7 GB
            raise ConfigError(f"AudioProcessor: sampling_rate={self.sampling_rate!r}; the model's rate is a whole "
                              f"positive number of Hz, at most {high} (e.g. 16000)")
        if not 0 < self.normalize_eps < 1:  # 0 made silence or a constant offset NaN, blamed on the recording
            raise ConfigError(f"AudioProcessor: normalize_eps={self.normalize_eps!r}; a small positive variance floor "
                              f"such as {TRANSFORMERS_NORMALIZE_EPS:g} (transformers) or {FAIRSEQ_NORMALIZE_EPS:g} "
                              "(fairseq)")
        if not self.chunk_seconds > 0 or isinstance(self.min_samples, bool) or self.min_samples < 0:
            raise ConfigError(f"AudioProcessor: chunk_seconds={self.chunk_seconds!r} must be positive and "
                              f"min_samples={self.min_samples!r} at least 0")
        self.check_window()
        self.frames: Optional[tuple[int, int]] = None  # (field, hop) of the encoder's frames: `align_to_frames`

    def check_window(self) -> None:
        """`split` cuts a recording longer than a window into pieces of over half a window (equal, or
        sharing out the encoder's frames): a window under twice `min_samples` would give pieces the
        encoder cannot frame, refused by `forward` mid-`embed` with advice to call `embed`."""
        window = self.window_samples
        if window < 2 * self.min_samples:
            raise ConfigError(f"AudioProcessor: chunk_seconds={self.chunk_seconds!r} gives {window}-sample windows, "
                              f"and a longer recording is cut into pieces of over half a window, which must hold "
                              f"min_samples={self.min_samples}; use chunk_seconds of at least "
                              f"{2 * self.min_samples / self.sampling_rate:g}")

    def prepare(self, item: Any, sampling_rate: Optional[int] = None, **options: Any) -> torch.Tensor:
        self.check_options(options)
        if isinstance(item, PreparedWave):
            return item.samples
        wave = load_waveform(item, sampling_rate, self.sampling_rate)
        return self.finished(wave, self.scale_of(wave))

    def prepare_lazily(self, item: Any, sampling_rate: Optional[int] = None,
                       **options: Any) -> torch.Tensor | LongRecording:
        """`prepare`, but a WAV or FLAC file longer than a window is left on disk as a `LongRecording`,
        whose windows `collate` decodes a batch at a time, so that `embed` and a training batch hold
        their windows, not a recording of hours at the model's rate. Its windows are those of the
        whole decoding, equal at the file's own rate and within float rounding when resampled or
        normalised (`zoo.audio_spans`)."""
        from zoo.audio_spans import long_recording

        eps = self.normalize_eps if self.do_normalize else None
        recording = None if options else long_recording(item, self.sampling_rate, self.window_samples, eps)
        return recording if recording is not None else self.prepare(item, sampling_rate, **options)

    def scale_of(self, wave: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(mean, standard deviation with the variance floor) that `do_normalize` scales a whole
        recording by; None without it. A long file's windows and pretraining crops take the same
        of their recording in one streamed pass over its file (`zoo.audio_spans.file_scale`)."""
        if not self.do_normalize:
            return None
        return wave.mean(), torch.sqrt(wave.var(unbiased=False) + self.normalize_eps)

    def finished(self, wave: torch.Tensor, scale: Optional[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """A recording (or a span of it) at the model's rate, normalised by `scale` (`scaled`) and
        padded to `min_samples`."""
        wave = scaled(wave, scale)
        if wave.numel() < self.min_samples:
            wave = torch.nn.functional.pad(wave, (0, self.min_samples - wave.numel()))
        return wave

    @property
    def window_samples(self) -> int:
        """The samples of the longest piece the encoder sees at once (`chunk_seconds`)."""
        return int(self.chunk_seconds * self.sampling_rate)

    def align_to_frames(self, field: int, hop: int) -> None:
        """Cut long recordings on the frame boundaries of an encoder whose frame t covers samples
        [t * hop, t * hop + field) (`framed_windows`), so that each of a recording's frames comes out
        once. The encoder sets this from its architecture when it is built: it is not a saved setting."""
        if field > self.window_samples:
            raise ConfigError(f"AudioProcessor: chunk_seconds={self.chunk_seconds!r} gives {self.window_samples}-"
                              f"sample windows, shorter than one {field}-sample frame of the encoder; use "
                              f"chunk_seconds of at least {field / self.sampling_rate:g}")
        self.frames = (field, hop)

    def windows(self, length: int) -> list[tuple[int, int]]:
        """(first, count) of the windows `split` cuts a recording of `length` samples into: on its
        encoder's frame boundaries (`framed_windows`) once it has said them (`align_to_frames`), else
        equal pieces (`window_bounds`)."""
        if self.frames is None:
            return window_bounds(length, self.window_samples)
        return framed_windows(length, self.window_samples, *self.frames)

    def split(self, item: torch.Tensor | LongRecording | RecordingSpan) -> list[torch.Tensor | RecordingSpan]:
        """A recording's windows (`windows`): views of a waveform, spans of a `LongRecording` (or of
        a span of one)."""
        return [cut(item, first, count) for first, count in self.windows(item.numel())]

    def size(self, piece: torch.Tensor | RecordingSpan) -> int:
        return piece.numel()

    def training_batch(self, inputs: Sequence[Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        """A training batch of a random window (`random_window`) of each recording; a long WAV or
        FLAC file decodes only its window (`prepare_lazily`)."""
        return self.collate([self.random_window(wave) for wave in self.prepare_each(inputs, lazily=True, **kwargs)])

    def random_window(self, wave: torch.Tensor | LongRecording) -> torch.Tensor | RecordingSpan:
        """A random `chunk_seconds` of a longer prepared recording, else all of it, drawn from
        torch's generator (which a run's checkpoint keeps, so a resumed run draws the same).
        `embed` sees a long recording as windows of at most this length, and a training batch of
        whole recordings took memory that grew with them: four 120 s clips took 2.8 GB for a
        step of hubert-tiny-fsdd, four 30 s ones 1.3 GB."""
        if wave.numel() <= self.window_samples:
            return wave
        start = int(torch.randint(wave.numel() - self.window_samples + 1, ()))
        return cut(wave, start, self.window_samples)

    def collate(self, pieces: Sequence[torch.Tensor | RecordingSpan]) -> dict[str, torch.Tensor]:
        """Zero-pad to the longest piece; `attention_mask` marks real samples. A span of a
        `LongRecording` is decoded here, so that only a batch of its windows is held."""
        pieces = [piece if isinstance(piece, torch.Tensor) else piece.samples() for piece in pieces]
        longest = max(piece.numel() for piece in pieces)
        input_values = torch.zeros(len(pieces), longest)
        attention_mask = torch.zeros(len(pieces), longest, dtype=torch.long)
        for row, piece in enumerate(pieces):
            input_values[row, : piece.numel()] = piece
            attention_mask[row, : piece.numel()] = 1
        return {"input_values": input_values, "attention_mask": attention_mask}


@dataclasses.dataclass(frozen=True)
class PreparedWave:
    """A waveform an `AudioProcessor` has prepared already, which its `prepare` passes through
    untouched (not normalised twice): a caller that needs the prepared samples as well as the
    embeddings (`embed_timed_frames`) decodes and resamples each recording once."""

    samples: torch.Tensor | LongRecording


def embed_timed_frames(encoder: Any, inputs: Any, layer: Any, sampling_rate: Optional[int],
                       frame_lengths: Callable[[torch.Tensor], torch.Tensor], hop: int, field: int,
                       progress: bool = True, **embed_kwargs: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per item `(times, tokens)`: the encoder's `embed(pool="none")` and the seconds of each
    frame (`frame_times`), each recording decoded once.

    Items are prepared in `embed`'s groups (`embedded_groups`), so that no more than a group's
    waveforms are held at once.
    """
    refuse_fixed_options("embed_frames", "every frame", embed_kwargs)
    items = encoder.as_item_list(inputs)
    require_items(items)
    stamped: list[tuple[torch.Tensor, torch.Tensor]] = []
    for waves, tokens in embedded_groups(encoder, items, sampling_rate, progress, layer=layer, pool="none",
                                         **embed_kwargs):
        stamped.extend((frame_times(encoder.processor, wave, frame_lengths, hop, field), item_tokens)
                       for wave, item_tokens in zip(waves, tokens))
    return stamped


def embedded_groups(encoder: Any, items: Sequence[Any], sampling_rate: Optional[int], progress: bool,
                    **embed_kwargs: Any) -> Iterator[tuple[list[torch.Tensor], Any]]:
    """`(waves, rows)`: `items` prepared a group of `embed`'s at a time (`Encoder.prepared_groups`)
    and the encoder's `embed` of that group, given as `PreparedWave`s: a caller that needs the
    prepared waveforms as well as the rows (frame times), or whose items a list would decode all
    at once (`RecordingFiles`), reads each recording once and holds a group of them."""
    with encoder.progress_bar(len(items), progress) as bar:
        for start, waves in encoder.prepared_groups(items, sampling_rate=sampling_rate):
            with counting_from(start):
                rows = encoder.embed([PreparedWave(wave) for wave in waves], progress=bar, **embed_kwargs)
            yield waves, rows


def frame_times(processor: AudioProcessor, wave: torch.Tensor, frame_lengths: Callable[[torch.Tensor], torch.Tensor],
                hop: int, field: int) -> torch.Tensor:
    """Seconds (float64) at the centre of each frame an encoder makes of the prepared waveform
    `wave` (`frame_lengths`: sample counts -> frame counts). The encoder sees `wave` cut into
    the processor's windows, and frame t of a window starting at sample s covers
    [s + t * hop, s + t * hop + field): each window's frames keep their own times, which are the
    whole recording's where the windows are cut on its frames (`AudioProcessor.align_to_frames`)."""
    times = []
    for first, count in processor.windows(wave.numel()):
        steps = torch.arange(int(frame_lengths(torch.tensor([count]))[0]), dtype=torch.float64)
        times.append((first + hop * steps + field / 2) / processor.sampling_rate)
    return torch.cat(times)


def batch_lengths(input_values: Any, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """(B,) real samples of each waveform of a `forward` batch: (B, S) with a right-padded (B, S)
    mask, or none. Other shapes failed with an IndexError or a conv error, a mask shorter than the
    batch silently dropped the samples after it, and a left-padded one (transformers'
    `padding_side="left"`) had each item encoded from its leading zeros, losing as many at its end."""
    if not torch.is_tensor(input_values) or input_values.dim() != 2 or not len(input_values):
        given = f"{type(input_values).__name__} of shape {tuple(getattr(input_values, 'shape', ()))}"
        raise InputError(f"input_values is a {given}; pass a (batch > 0, samples) torch tensor, as "
                         "encoder.preprocess(...) gives (waveform[None] for one waveform)")
    if not input_values.is_floating_point():  # int16 PCM read as amplitudes 32,768 times too loud
        raise InputError(f"input_values has dtype {input_values.dtype}; forward takes float waveforms, as "
                         "encoder.preprocess(...) makes them (it scales integer PCM)")
    bad = first_non_finite(input_values)
    if bad is not None:
        raise InputError(f"input_values holds NaN or infinite samples (waveform {bad[0]}, sample {bad[1]}: "
                         f"{input_values[bad[0], bad[1]].item()}); clean the waveforms (e.g. np.nan_to_num) first")
    if attention_mask is None:
        return torch.full((len(input_values),), input_values.shape[1], device=input_values.device)
    if attention_mask.shape != input_values.shape:
        raise InputError(f"attention_mask of shape {tuple(attention_mask.shape)} for input_values of shape "
                         f"{tuple(input_values.shape)}; give one mask entry per sample (1 = real, 0 = padding)")
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):  # a 2 counted each sample twice
        raise InputError(f"attention_mask holds values other than 0 and 1 ({attention_mask.unique()[:5].tolist()}); "
                         "give 1 for a real sample and 0 for padding")
    lengths = attention_mask.sum(-1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions < lengths[:, None]):
        raise InputError("attention_mask has padding (0) before real samples (1); pad each waveform on the "
                         "right, as encoder.preprocess(...) does (padding_side='right' in transformers)")
    return lengths


def check_min_samples(lengths: torch.Tensor, minimum: int, model: str, sampling_rate: int) -> None:
    """Refuse waveforms under one frame's receptive field, which the front end cannot frame (the
    convolutions raised a bare "Kernel size can't be greater than actual input size"); `embed`
    pads such clips itself."""
    short = lengths < minimum
    if bool(short.any()):
        raise InputError(f"{model} needs at least {minimum} samples ({minimum / sampling_rate:.3f} s at "
                         f"{sampling_rate} Hz) per waveform, got {int(lengths[short][0])}; pad it, or use embed(), "
                         "which does")
