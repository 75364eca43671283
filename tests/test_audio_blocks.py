"""Long recordings are held at the model's rate only: a file is decoded, mixed and resampled a
block at a time (`zoo.audio.resample_blocks`), and `embed` prepares a group of windows at a time,
not 64 whole recordings (`Encoder.prepared_groups`)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional

import zoo.audio
import zoo.encoder
from zoo.audio import AudioProcessor, joined, resample_blocks
from zoo.errors import InputError

#: rate pairs: down and up, small and large periods (1 MHz -> 16 kHz has the widest kernel)
RATE_PAIRS = [(44100, 16000), (8000, 16000), (16000, 24000), (22050, 24000), (48000, 16000), (1_000_000, 16000),
              (1000, 24000), (44100, 24000), (96000, 44100)]
#: measured: at most 1.8e-7 (the conv's float rounding on inputs of other lengths)
BLOCK_TOLERANCE = 5e-7


@pytest.mark.parametrize("rate,target", RATE_PAIRS, ids=[f"{rate}-{target}" for rate, target in RATE_PAIRS])
@pytest.mark.parametrize("block", [777, 65536])
def test_resampling_by_blocks_joins_into_torchaudios_whole_result(rate, target, block):
    """Without the neighbours' samples as context, each block's edges were resampled against
    zeros (max abs diff up to 0.38 on this signal)."""
    wave = 0.3 * torch.randn(123_457, generator=torch.Generator().manual_seed(0))
    whole = torchaudio.functional.resample(wave, rate, target)
    parts = torch.cat(list(resample_blocks(wave.split(block), rate, target)))
    assert parts.shape == whole.shape
    assert (parts - whole).abs().max() <= BLOCK_TOLERANCE


def test_a_file_is_decoded_and_resampled_a_block_at_a_time(tmp_path, monkeypatch):
    """A 44.1 kHz stereo file was decoded whole and resampled whole (an hour: 1.27 GB decoded,
    about 1.5 GB of resampling temporaries); now no read or resampling call takes more than a
    block and its context, and the waveform is torchaudio's of the whole mix."""
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, (20_000, 2)).astype(np.float32)
    soundfile.write(tmp_path / "stereo.wav", samples, 44100, subtype="FLOAT")
    reads, resampled = [], []
    read, resample = soundfile.SoundFile.read, torchaudio.functional.resample

    def counted_read(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return read(self, frames, *args, **kwargs)

    def counted_resample(wave, *args, **kwargs):
        resampled.append(wave.numel())
        return resample(wave, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, "read", counted_read)
    monkeypatch.setattr(torchaudio.functional, "resample", counted_resample)
    monkeypatch.setattr(zoo.audio, "BLOCK_FRAMES", 1000)
    wave = AudioProcessor(sampling_rate=16000).prepare(str(tmp_path / "stereo.wav"))
    expected = resample(torch.from_numpy(samples.mean(axis=1, dtype=np.float32)), 44100, 16000)
    assert reads and set(reads) == {1000}
    assert len(resampled) > 10 and max(resampled) < 3000  # a block, a period (441) and context each side
    assert wave.shape == expected.shape and (wave - expected).abs().max() <= BLOCK_TOLERANCE


@pytest.mark.parametrize("length", [0, 3, 9, 12])
def test_blocks_are_joined_whatever_length_the_header_announced(length):
    """`joined` writes the blocks into one tensor of the length a file's header announces, so
    the recording is not held twice; a header that over- or undercounts loses no sample."""
    assert torch.equal(joined(iter([torch.arange(5.0), torch.arange(5.0, 9.0)]), length), torch.arange(9.0))


def test_bad_samples_are_counted_over_every_block(tmp_path, monkeypatch):
    samples = np.zeros(5000, np.float32)
    samples[[10, 2500, 4999]] = np.nan
    soundfile.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    monkeypatch.setattr(zoo.audio, "BLOCK_FRAMES", 1000)
    with pytest.raises(InputError, match=r"audio input '.*nan.wav' has 3 NaN or infinite samples"):
        AudioProcessor(sampling_rate=24000).prepare(str(tmp_path / "nan.wav"))


def test_embed_prepares_a_group_of_windows_not_of_recordings(monkeypatch):
    """`embed` prepared 64 recordings at once whatever their length: a folder of hour-long files
    held 64 hours of waveform (6 files of 10 minutes took 316 MB more than one). A group now
    ends at PREPARE_GROUP windows, and the rows are those of one large group (max abs diff
    measured 0.0)."""
    from tests.modalities.audio.test_embed_frames_decodes_once import micro_hubert

    encoder = micro_hubert()
    encoder.processor.chunk_seconds = 0.1  # 1,600-sample windows: a 1 s recording is 10 of them
    rng = np.random.default_rng(0)
    recordings = [(0.3 * rng.standard_normal(16000)).astype(np.float32) for _ in range(5)]
    monkeypatch.setattr(zoo.encoder, "PREPARE_GROUP", 1000)
    one_group = encoder.embed(recordings, sampling_rate=16000, progress=False)
    monkeypatch.setattr(zoo.encoder, "PREPARE_GROUP", 16)
    groups = [len(group) for _, group in encoder.prepared_groups(recordings, sampling_rate=16000)]
    assert groups == [2, 2, 1]
    assert (encoder.embed(recordings, sampling_rate=16000, progress=False) - one_group).abs().max() <= 1e-6


SPAN_CASES = [(44100, 16000), (8000, 16000), (22050, 24000), (48000, 16000), (16000, 16000), (24000, 24000)]


@pytest.mark.parametrize("rate,target", SPAN_CASES, ids=[f"{rate}-{target}" for rate, target in SPAN_CASES])
@pytest.mark.parametrize("subtype,suffix", [("PCM_16", "wav"), ("FLOAT", "wav"), ("PCM_24", "flac")])
def test_a_span_is_decoded_as_the_whole_file_decodes_it(tmp_path, rate, target, subtype, suffix):
    """`decode_span` reads a crop's frames and the kernel's reach, not the recording: its samples are
    the whole decoding's (equal at the model's rate, within BLOCK_TOLERANCE when resampled), at the
    start, in the middle and at the end of the file."""
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, (3 * rate + 17, 2)).astype(np.float32)
    path = tmp_path / f"a.{suffix}"
    soundfile.write(path, samples, rate, subtype=subtype)
    whole = zoo.audio.decode_audio(str(path), "a", target)
    for first, count in [(0, 5000), (1, 333), (target + 7, 20_000), (whole.numel() - 4000, 4000), (12_345, 1)]:
        span, length = zoo.audio.decode_span(path, target, first, count)
        expected = whole[first : first + count]
        assert length == whole.numel()
        assert span.shape == expected.shape
        if rate == target:
            assert torch.equal(span, expected)
        else:
            assert (span - expected).abs().max() <= BLOCK_TOLERANCE


def test_a_span_of_a_lossy_file_is_refused(tmp_path):
    """Ogg Vorbis and MP3 decoders restart at a page or frame: their crops are decoded whole."""
    soundfile.write(tmp_path / "a.ogg", np.zeros(16000, np.float32), 16000, format="OGG", subtype="VORBIS")
    with pytest.raises(zoo.errors.ConfigError, match="OGG, whose seeking is not exact"):
        zoo.audio.decode_span(tmp_path / "a.ogg", 16000, 0, 100)


@pytest.mark.parametrize("name,subtype,suffix", [("WAVEX", "PCM_24", "wav"), ("AIFF", "PCM_16", "aiff"),
                                                 ("AU", "PCM_16", "au"), ("CAF", "PCM_16", "caf"),
                                                 ("W64", "PCM_16", "w64"), ("RF64", "PCM_16", "rf64")])
def test_every_span_format_seeks_exactly(tmp_path, name, subtype, suffix):
    """The other containers of SPAN_FORMATS: a span resampled from 44.1 kHz stereo is the whole decoding's."""
    samples = np.random.default_rng(2).uniform(-0.5, 0.5, (50_000, 2)).astype(np.float32)
    path = tmp_path / f"a.{suffix}"
    soundfile.write(path, samples, 44100, format=name, subtype=subtype)
    assert soundfile.info(str(path)).format == name and name in zoo.audio.SPAN_FORMATS
    whole = zoo.audio.decode_audio(str(path), "a", 16000)
    span, length = zoo.audio.decode_span(path, 16000, 7001, 5000)
    assert length == whole.numel() and (span - whole[7001:12001]).abs().max() <= BLOCK_TOLERANCE
