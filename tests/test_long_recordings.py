"""`embed` reads a WAV or FLAC file longer than one window a window at a time (`LongRecording`):
the same rows as the whole decoding's, without ever decoding the recording whole."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
import torch

import zoo.audio
from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
from zoo.audio import FAIRSEQ_NORMALIZE_EPS, AudioProcessor, decode_audio
from zoo.audio_spans import LongRecording, long_recording, streamed_scale
from zoo.errors import InputError

HUBERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
#: a resampled span against the whole decoding (tests/test_audio_blocks.py), and a streamed scale
#: (float64 moments) against `scale_of`'s float32 ones, carried through the micro encoder: measured
#: up to 2.4e-7 on the mean rows and 3.5e-6 on the tokens (of magnitude up to about 2)
RESAMPLED_TOLERANCE = 1e-5


def encoder(normalize: bool = False) -> HubertEncoder:
    """A micro HuBERT with 1 s windows, so that 4.3 s is a long recording of 5 windows."""
    torch.manual_seed(0)
    processor = AudioProcessor(do_normalize=normalize, normalize_eps=FAIRSEQ_NORMALIZE_EPS, chunk_seconds=1.0)
    return HubertEncoder(HubertEncoderConfig(**HUBERT), processor).eval()


def write(path, rate: int, seconds: float = 4.3, channels: int = 1, amplitude: float = 0.3, **options):
    rng = np.random.default_rng(0)
    samples = amplitude * rng.standard_normal((int(seconds * rate), channels)) + 0.05
    soundfile.write(path, samples.astype(np.float32), rate, **options)
    return str(path)


CASES = [("same.wav", 16000, 1, False), ("same.flac", 16000, 2, True), ("resampled.flac", 44100, 2, False),
         ("resampled.wav", 22050, 1, True)]


@pytest.mark.parametrize("name, rate, channels, normalize", CASES)
def test_a_long_file_embeds_as_its_whole_decoding_without_being_decoded_whole(tmp_path, monkeypatch, name, rate,
                                                                                 channels, normalize):
    """Every layer's mean rows, the tokens and the frame times of `embed_frames` equal those of the
    whole decoding (torch.equal at the model's rate without normalising; else within
    RESAMPLED_TOLERANCE); the file is never prepared whole, and no span is longer than a window."""
    model, path = encoder(normalize), write(tmp_path / name, rate, channels=channels)
    whole = model.processor.prepare(path)
    expected = model.embed([whole], layer="all", sampling_rate=16000, progress=False)
    expected_frames = model.embed_frames([whole], layer=1, sampling_rate=16000, progress=False)
    spans = []
    decode_span = zoo.audio_spans.decode_span

    def span(path, rate, first, count):
        spans.append(count)
        return decode_span(path, rate, first, count)

    def refuse(*args, **kwargs):
        raise AssertionError("the long file was decoded whole")

    monkeypatch.setattr(zoo.audio_spans, "decode_span", span)
    monkeypatch.setattr(zoo.audio, "decode_audio", refuse)
    got = model.embed([path], layer="all", progress=False)
    got_frames = model.embed_frames([path], layer=1, progress=False)
    assert len(spans) == 10 and max(spans) <= model.processor.window_samples
    (times, tokens), (want_times, want_tokens) = got_frames[0], expected_frames[0]
    assert torch.equal(times, want_times)
    if rate == 16000 and not normalize:
        assert torch.equal(got, expected) and torch.equal(tokens, want_tokens)
    else:
        assert float((got - expected).abs().max()) <= RESAMPLED_TOLERANCE
        assert float((tokens - want_tokens).abs().max()) <= RESAMPLED_TOLERANCE


def test_the_streamed_scale_is_the_whole_recordings(tmp_path):
    """`do_normalize`'s mean and deviation from one pass over the blocks of a 44.1 kHz file (three
    blocks of 2^18 frames), against `scale_of` of its whole decoding: within 1e-6 relative."""
    path = write(tmp_path / "a.flac", 44100, seconds=14.0, channels=2, amplitude=0.01)
    processor = AudioProcessor(do_normalize=True, normalize_eps=FAIRSEQ_NORMALIZE_EPS)
    mean, deviation = processor.scale_of(decode_audio(path, "a", 16000))
    got_mean, got_deviation = streamed_scale(tmp_path / "a.flac", 16000, FAIRSEQ_NORMALIZE_EPS)
    assert abs(float(got_mean - mean)) <= 1e-6 * abs(float(mean))
    assert abs(float(got_deviation - deviation)) <= 1e-6 * float(deviation)


def test_only_long_seekable_files_are_left_on_disk(tmp_path):
    """Ogg (whose seeking restarts at a page), a recording of one window and an array are
    prepared whole as before; a WAV of two windows is a LongRecording of its length at the model's rate."""
    processor = AudioProcessor(chunk_seconds=1.0)
    long = processor.prepare_lazily(write(tmp_path / "a.wav", 8000, seconds=1.5))
    assert isinstance(long, LongRecording) and long.numel() == 24000 and long.scale is None
    assert [piece.numel() for piece in processor.split(long)] == [12000, 12000]
    short = write(tmp_path / "b.wav", 8000, seconds=1.0)
    ogg = write(tmp_path / "c.ogg", 8000, seconds=1.5, format="OGG", subtype="VORBIS")
    for item in (short, ogg, np.zeros(40000, dtype=np.float32)):
        assert isinstance(processor.prepare_lazily(item, sampling_rate=16000), torch.Tensor)


def test_a_file_changed_while_it_is_read_is_refused(tmp_path):
    path = write(tmp_path / "a.wav", 16000, seconds=2.5)
    processor = AudioProcessor(chunk_seconds=1.0)
    windows = processor.split(processor.prepare_lazily(path))
    write(tmp_path / "a.wav", 16000, seconds=2.0)
    with pytest.raises(InputError, match=r"a.wav' decodes to 32000 samples at 16000 Hz, but had 40000 when it "
                                         r"was opened; it changed while it was read"):
        processor.collate(windows)


def test_bad_samples_in_a_long_file_name_it(tmp_path):
    """NaN in a long file is refused naming the file, by the span that holds it (or, with
    do_normalize, by the pass that takes the scale)."""
    samples = np.full(40000, 0.1, dtype=np.float32)
    samples[30000] = np.nan
    soundfile.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    for normalize in (False, True):
        model = encoder(normalize)
        with pytest.raises(InputError, match=r"nan.wav.* NaN or infinite"):
            model.embed([str(tmp_path / "nan.wav")], progress=False)


def test_a_truncated_long_file_is_still_warned_about(tmp_path):
    path = tmp_path / "cut.wav"
    write(path, 16000, seconds=3.0, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-20000])
    with pytest.warns(UserWarning, match="truncated audio in audio file .*cut.wav"):
        assert isinstance(long_recording(path, 16000, 16000, None), LongRecording)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_a_training_batch_decodes_only_the_window_of_a_long_file(tmp_path, monkeypatch, rate):
    """`zoo finetune`'s batches take a random window of each long recording (`random_window`): the
    window of the whole decoding the same seed draws (torch.equal at the model's rate, within
    float rounding when resampled), decoded alone, where the whole recording was decoded for it."""
    processor = AudioProcessor(chunk_seconds=1.0)
    files = [write(tmp_path / f"{index}.wav", rate, seconds=seconds) for index, seconds in enumerate((4.3, 0.5))]
    whole = [processor.prepare(path) for path in files]
    torch.manual_seed(3)
    expected = processor.collate([processor.random_window(wave) for wave in whole])
    decodes = counting(zoo.audio.decode_audio)
    monkeypatch.setattr(zoo.audio, "decode_audio", decodes)
    torch.manual_seed(3)
    got = processor.training_batch(files)
    assert decodes.calls == [files[1]]  # the short file only
    assert torch.equal(got["attention_mask"], expected["attention_mask"])
    difference = float((got["input_values"] - expected["input_values"]).abs().max())
    assert difference == 0.0 if rate == 16000 else difference <= 5e-7


def counting(decode):
    def decoding(source, where, *args, **kwargs):
        decoding.calls.append(str(source))
        return decode(source, where, *args, **kwargs)

    decoding.calls = []
    return decoding


def test_a_long_files_scale_is_taken_once_per_version_of_the_file(tmp_path, monkeypatch):
    """With `do_normalize`, every training batch drawing a window of a long file took its scale in a
    pass over the whole file; it is kept per file version (`file_scale`), and a file
    written anew gets its own."""
    processor = AudioProcessor(do_normalize=True, chunk_seconds=1.0)
    path = write(tmp_path / "a.wav", 16000, seconds=3.0)
    passes = []
    scale = zoo.audio_spans.streamed_scale

    def counted(*args):
        passes.append(args[0])
        return scale(*args)

    monkeypatch.setattr(zoo.audio_spans, "streamed_scale", counted)
    for _ in range(3):
        processor.training_batch([path])
    assert len(passes) == 1
    write(tmp_path / "a.wav", 16000, seconds=2.5, amplitude=0.1)
    mean, deviation = processor.prepare_lazily(path).scale
    assert len(passes) == 2
    expected = processor.scale_of(decode_audio(path, "a", 16000))
    assert torch.allclose(mean, expected[0], rtol=1e-6) and torch.allclose(deviation, expected[1], rtol=1e-6)


def test_a_file_replaced_with_its_old_size_and_modification_time_gets_its_own_scale(tmp_path):
    """`cp -p` of a new recording of the same length keeps the file's size and mtime, which named its
    version: the old scale was kept (2.6e-3 off). Its change time tells them apart: the new file's
    scale equals its whole decoding's (rtol 1e-6)."""
    processor = AudioProcessor(do_normalize=True, chunk_seconds=1.0)
    path = write(tmp_path / "a.wav", 16000, seconds=3.0)
    processor.prepare_lazily(path)
    before = os.stat(path)
    write(tmp_path / "a.wav", 16000, seconds=3.0, amplitude=0.1)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    mean, deviation = processor.prepare_lazily(path).scale
    expected = processor.scale_of(decode_audio(path, "a", 16000))
    assert torch.allclose(mean, expected[0], rtol=1e-6) and torch.allclose(deviation, expected[1], rtol=1e-6)


def test_a_pretraining_crop_of_a_normalised_recording_is_scaled_without_decoding_it_whole(tmp_path, monkeypatch):
    """`RecordingFiles.span` took a do_normalize recording's scale from its whole decoding, held in
    memory (a 60-minute 16 kHz WAV: +238 MiB for its first crop); it now takes `file_scale`'s
    streamed pass: the crop of the whole normalised recording within 5e-7, no whole decoding."""
    from zoo.audio_crops import RecordingFiles

    path = write(tmp_path / "a.flac", 44100, seconds=6.0, channels=2)
    processor = AudioProcessor(do_normalize=True)
    expected = processor.prepare(path)[20000:36000]
    files = RecordingFiles([tmp_path / "a.flac"], processor)
    monkeypatch.setattr(zoo.audio, "decode_audio", counting(zoo.audio.decode_audio))
    crop = files.span(0, 20000, 16000)
    assert zoo.audio.decode_audio.calls == []
    assert float((crop - expected).abs().max()) <= 5e-7


def test_a_datasets_audio_column_of_long_local_files_is_read_a_window_at_a_time(tmp_path, monkeypatch):
    """A Dataset's Audio column of local files gives undecoded rows holding only their path: such a
    long file is read a window at a time too, to the same rows as its path gives (torch.equal)."""
    import datasets

    model, path = encoder(), write(tmp_path / "a.wav", 16000)
    dataset = datasets.Dataset.from_dict({"audio": [path]}).cast_column("audio", datasets.Audio())
    expected = model.embed([path], progress=False)
    monkeypatch.setattr(zoo.audio, "decode_audio", counting(zoo.audio.decode_audio))
    assert torch.equal(model.embed(dataset, progress=False), expected)
    assert zoo.audio.decode_audio.calls == []
