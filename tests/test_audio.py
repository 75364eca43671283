"""The audio processor: any rate in, mono at the model rate, bad inputs as zoo errors."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import zoo.audio
from zoo.audio import AudioProcessor, frame_count, framed_windows
from zoo.errors import ConfigError, InputError


def test_resamples_and_mixes_to_mono():
    processor = AudioProcessor(sampling_rate=16000)
    stereo = np.stack([np.ones(8000), -np.ones(8000) * 0.5]).astype(np.float32)
    wave = processor.prepare(stereo, sampling_rate=8000)
    assert wave.shape == (16000,)
    assert abs(float(wave[4000:12000].mean()) - 0.25) < 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stereo is read without a word
        processor.prepare(stereo.T, sampling_rate=8000)
    clips = np.zeros((4, 1600), np.float32)  # a batch to transformers' feature extractors: 1 row here, silently
    with pytest.warns(UserWarning, match=r"shape \(4, 1600\) is read as one recording of 4 channels, averaged to "
                                         "mono; to embed 4 clips, pass them as a list"):
        processor.prepare(clips, sampling_rate=16000)


def test_warnings_name_the_callers_line_whichever_way_it_came(micro_hubert):
    """Was: each warning's fixed stacklevel pointed at a line inside the zoo when called through
    `embed` rather than the processor (here `zoo/encoder.py`), so the user was not shown their
    own line. Now it is the first caller outside the zoo (as pandas' find_stack_level)."""
    loud = np.full(1600, 300.0, np.float32)
    calls = [lambda: AudioProcessor().prepare(loud, sampling_rate=16000),
             lambda: micro_hubert.processor(loud, sampling_rate=16000),
             lambda: micro_hubert.embed([loud], sampling_rate=16000, progress=False)]
    for call in calls:
        with pytest.warns(UserWarning, match="audio samples reach 300") as caught:
            call()
        assert [warning.filename for warning in caught] == [__file__]


def test_samples_first_and_int16_arrays():
    processor = AudioProcessor(sampling_rate=16000)
    samples_first = np.zeros((1000, 2), dtype=np.int16)
    samples_first[:, 0] = 16384
    wave = processor.prepare(samples_first, sampling_rate=16000)
    assert wave.shape == (1000,) and torch.allclose(wave, torch.full((1000,), 0.25))


def test_integer_pcm_is_scaled_the_same_from_numpy_and_torch():
    """A torch int16 tensor, and int8 / int32 / 8-bit unsigned samples, went in raw (values up to
    32767 where [-1, 1] was meant): every integer PCM type is scaled by its full range."""
    processor = AudioProcessor(sampling_rate=16000)
    half = {np.int8: 64, np.int16: 16384, np.int32: 2**30, np.uint8: 192}
    for kind, value in half.items():
        samples = np.full(800, value, dtype=kind)
        for given in (samples, torch.from_numpy(samples)):
            assert torch.allclose(processor.prepare(given, sampling_rate=16000), torch.full((800,), 0.5)), kind


@pytest.mark.parametrize("bad, kind", [
    (np.ones(800, dtype=np.int64), "int64"), (torch.ones(800, dtype=torch.int64), "int64"),
    (np.ones(800, dtype=bool), "bool"), (np.ones(800, dtype=np.complex64), "complex64"),
    (np.array(["a", "b"]), "<U1"), (np.ones(800, dtype=np.uint16), "uint16"),
])
def test_samples_of_unknown_scale_are_refused(bad, kind):
    with pytest.raises(InputError, match=f"audio samples of type {kind}; pass float samples in"):
        AudioProcessor().prepare(bad, sampling_rate=16000)


def test_reads_files_at_their_own_rate(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.sin(np.arange(22050) / 10).astype(np.float32), 44100)
    wave = AudioProcessor(sampling_rate=16000).prepare(str(path))
    assert wave.shape == (8000,)


def test_dict_input_as_datasets_gives_it():
    wave = AudioProcessor().prepare({"array": np.zeros(3200, dtype=np.float32), "sampling_rate": 16000})
    assert wave.shape == (3200,)
    unknown = {"array": np.zeros(1600, dtype=np.float32), "sampling_rate": None}  # was "given without its rate"
    assert AudioProcessor().prepare(unknown, sampling_rate=8000).shape == (3200,)


def test_float_lists_are_arrays_as_datasets_gives_them():
    """A `datasets` float-sequence column (and an "array" stored as one) comes as Python lists:
    the rows were refused as "type list is not supported"."""
    samples = np.random.default_rng(0).uniform(-1, 1, (2, 4000)).astype(np.float32)
    processor = AudioProcessor(sampling_rate=16000)
    expected = processor.prepare(samples, sampling_rate=8000)
    assert torch.equal(processor.prepare(samples.tolist(), sampling_rate=8000), expected)
    assert torch.equal(processor.prepare({"array": samples.tolist(), "sampling_rate": 8000}), expected)
    assert torch.equal(processor.prepare(tuple(samples[0].tolist()), sampling_rate=16000), torch.from_numpy(samples[0]))


def test_a_files_bytes_or_the_file_open_are_inputs_as_for_images(tmp_path, micro_hubert):
    """Audio refused `bytes` and open files ("audio input of type bytes is not supported") that
    image inputs take; each now gives the file's row, alone or in a list."""
    import io

    path = tmp_path / "clip.flac"
    soundfile.write(path, np.sin(np.arange(8000) / 7).astype(np.float32), 8000)
    expected = micro_hubert.embed([str(path)], progress=False)
    data = path.read_bytes()
    for make in (lambda: data, lambda: bytearray(data), lambda: io.BytesIO(data), lambda: path.open("rb")):
        assert torch.equal(micro_hubert.embed(make(), progress=False), expected)
        assert torch.equal(micro_hubert.embed([make()], progress=False), expected)
    with pytest.raises(InputError, match=r"input 0: cannot decode audio bytes \(9 bytes\)"):
        micro_hubert.embed(b"RIFF junk", progress=False)


def test_a_folder_is_its_audio_files_as_for_images_and_zoo_embed(tmp_path, micro_hubert):
    """Python's audio `embed` refused a folder ("pass the files in it") that image `embed` and
    `zoo embed` take: a folder now gives the rows of the audio files under it, sorted, alone or
    in a list, warning of the files it leaves out."""
    folder = tmp_path / "clips"
    (folder / "b").mkdir(parents=True)
    files = [str(folder / "a.wav"), str(folder / "b" / "c.flac")]
    for index, file in enumerate(files):
        soundfile.write(file, np.sin(np.arange(4000) * (index + 1) / 9).astype(np.float32), 16000)
    (folder / "labels.txt").write_text("a 0")
    expected = micro_hubert.embed(files, progress=False)
    with pytest.warns(UserWarning, match=r"left out 1 file\(s\) in .* that the encoder does not read \(1 .txt\)"):
        assert torch.equal(micro_hubert.embed(folder, progress=False), expected)
    with pytest.warns(UserWarning, match="left out 1 file"):
        mixed = micro_hubert.embed([files[1], str(folder)], progress=False)
    assert torch.equal(mixed, torch.cat([expected[1:], expected]))
    with pytest.warns(UserWarning, match="left out 1 file"):  # a generator's folder was refused as a file
        assert torch.equal(micro_hubert.embed((item for item in [folder]), progress=False), expected)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"folder '.*empty' holds no audio files \(.wav, .flac"):
        micro_hubert.embed(tmp_path / "empty", progress=False)


def test_undecoded_rows_and_datasets_read_as_their_files(tmp_path, micro_hubert):
    """`datasets` >= 4 decodes Audio columns only through torchcodec, which does not load here:
    the zoo reads a Dataset's Audio column undecoded, and {"bytes", "path"} rows (Audio(decode=False),
    parquet and Hub datasets) with soundfile. Each gives exactly the rows of the files."""
    import datasets

    files = []
    for index, rate in enumerate((16000, 8000, 44100)):
        files.append(str(tmp_path / f"clip{index}.flac"))
        soundfile.write(files[-1], np.sin(np.arange(rate // 2) * (index + 1) / 9).astype(np.float32), rate)
    expected = micro_hubert.embed(files, progress=False)
    dataset = datasets.Dataset.from_dict({"audio": files, "label": [0, 1, 2]}).cast_column("audio", datasets.Audio())
    assert torch.equal(micro_hubert.embed(dataset, progress=False), expected)
    assert torch.equal(micro_hubert.embed(dataset["audio"], progress=False), expected)  # datasets' torchcodec error
    undecoded = dataset.cast_column("audio", datasets.Audio(decode=False))["audio"]
    assert torch.equal(micro_hubert.embed(undecoded, progress=False), expected)
    blobs = [{"bytes": Path(file).read_bytes(), "path": None} for file in files]
    assert torch.equal(micro_hubert.embed(blobs, progress=False), expected)
    with pytest.raises(InputError, match="input 0: cannot decode the audio bytes of 'x.wav'"):
        micro_hubert.embed([{"bytes": b"RIFF junk", "path": "x.wav"}], progress=False)
    with pytest.raises(InputError, match="has neither bytes nor a path"):
        micro_hubert.embed([{"bytes": None, "path": None}], progress=False)
    with pytest.raises(InputError, match="the dataset has no Audio column; its features are"):
        micro_hubert.embed(datasets.Dataset.from_dict({"label": [0]}), progress=False)


def test_normalize_and_short_input_padding():
    processor = AudioProcessor(do_normalize=True, min_samples=400)
    wave = processor.prepare(np.linspace(-3, 5, 100, dtype=np.float32), sampling_rate=16000)
    assert wave.shape == (400,)
    assert abs(float(wave[:100].mean())) < 1e-5 and abs(float(wave[:100].std(unbiased=False)) - 1) < 1e-3


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros(0, dtype=np.float32), "empty"),
    (np.array([0.0, np.nan, 1.0], dtype=np.float32), "NaN"),
    (np.zeros((2, 3, 4), dtype=np.float32), "shape"),
    (np.zeros((20, 30), dtype=np.float32), "channels"),
    (np.zeros((16000, 9), dtype=np.float32), r"shape \(16000, 9\): neither axis"),  # named it (9, 16000)
    ([1, 2, 3], "list of int64 values; pass float samples"),
    ([[0.1, 0.2], [0.3]], "not an array of samples"),
    ({1, 2}, "not supported"),
])
def test_bad_arrays_raise_input_errors(bad, fragment):
    with pytest.raises(InputError, match=fragment):
        AudioProcessor().prepare(bad, sampling_rate=16000)


def test_array_without_rate_and_bad_files(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="sampling_rate"):
        AudioProcessor().prepare(np.zeros(100, dtype=np.float32))
    for rate in (0, -16000, "16k", 1.5, 44.1, 22050.5, float("inf"), float("nan"), 2_000_000):  # 1.5 took 275 s
        with pytest.raises(InputError, match=f"sampling_rate={rate!r}; pass the recording's rate in Hz"):
            AudioProcessor().prepare(np.zeros(100, dtype=np.float32), sampling_rate=rate)
    same = [AudioProcessor().prepare(np.ones(100, dtype=np.float32), sampling_rate=rate)
            for rate in (16000, 16000.0, np.int64(16000), torch.tensor(16000), np.array(16000))]  # tensors were refused
    assert all(torch.equal(same[0], wave) for wave in same)
    with pytest.raises(InputError, match="does not exist"):
        AudioProcessor().prepare(tmp_path / "missing.wav")
    for url in ("https://example.com/a.wav", "http://example.com/a.flac"):  # were "'https:/example.com/a.wav' does
        with pytest.raises(InputError, match=f"audio input '{url}' is a URL; the zoo reads local files"):  # not exist"
            AudioProcessor().prepare(url)
    with pytest.raises(InputError, match="is a parquet dataset, not one audio file; pass its rows: datasets.Dataset"):
        AudioProcessor().prepare(str(tmp_path / "train-00000.parquet"))  # was "Format not recognised"
    with pytest.raises(InputError, match="is a folder, not an audio file; pass the files in it, or the folder"):
        AudioProcessor().prepare(tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="cannot decode"):
        AudioProcessor().prepare(junk)
    unreadable = tmp_path / "locked.wav"  # libsndfile said "System error.", and the zoo to convert the file
    soundfile.write(unreadable, np.zeros(1600, np.float32), 16000)
    real_access = os.access
    monkeypatch.setattr(zoo.audio.os, "access",
                        lambda path, mode: os.fspath(path) != os.fspath(unreadable) and real_access(path, mode))
    with pytest.raises(InputError, match="cannot read audio file .*locked.wav.: permission denied; make it readable"):
        AudioProcessor().prepare(unreadable)


def test_integer_pcm_values_cast_to_float_are_warned_about():
    """`int16.astype(np.float32)` without dividing by 32768 embedded silently: BEATs' embedding of it
    had cosine 0.34 to the right one. A warning, not a refusal: a normalised click in silence
    reaches such values too (HuBERT's second iteration feeds prepared waves back)."""
    pcm = (np.sin(np.linspace(0, 900, 16000)) * 11207).astype(np.int16)
    with pytest.warns(UserWarning, match="audio samples reach 1120[67], but float audio lies in \\[-1, 1\\].*divide "
                      "them by 32768"):
        AudioProcessor().prepare(pcm.astype(np.float32), sampling_rate=16000)
    with pytest.warns(UserWarning, match="audio samples reach 256"):
        AudioProcessor().prepare({"array": torch.full((400,), -256.0), "sampling_rate": 16000})
    scaled = AudioProcessor().prepare(pcm, sampling_rate=16000)
    assert torch.equal(AudioProcessor().prepare(pcm / 32768.0, sampling_rate=16000), scaled)
    loud = np.full(400, 255.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(AudioProcessor().prepare(loud, sampling_rate=16000), torch.from_numpy(loud))


def test_a_float_file_of_integer_counts_is_warned_about_as_an_array_is(tmp_path):
    """The same counts in a FLOAT WAV file passed without a word: a float16 HuBERT made NaN of them."""
    pcm = (np.sin(np.linspace(0, 900, 16000)) * 11207).astype(np.float32)
    soundfile.write(tmp_path / "counts.wav", pcm, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"audio input '.*counts.wav' holds float samples beyond ±256, but float "
                                         r"audio lies in \[-1, 1\]: .*divide its samples by 32768"):
        AudioProcessor().prepare(tmp_path / "counts.wav")
    soundfile.write(tmp_path / "scaled.wav", pcm / 32768, 16000, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AudioProcessor().prepare(tmp_path / "scaled.wav")


def test_a_truncated_wav_file_is_read_with_a_warning(tmp_path):
    """Was read without a word: libsndfile decodes what a WAV cut short holds."""
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, np.full(16000, 0.25, np.float32), 16000, subtype="PCM_16")
    data = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 8000])
    streamed = bytearray(data)
    streamed[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # a WAV written to a pipe: its size unknown
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    with pytest.warns(UserWarning, match=r"truncated audio in audio file '.*cut.wav': its header announces 32000 "
                                         r"bytes of audio but it holds 8000 \(25%\)"):
        cut = AudioProcessor().prepare(tmp_path / "cut.wav")
    assert cut.shape == (4000,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("whole.wav", "streamed.wav"):
            assert AudioProcessor().prepare(tmp_path / name).shape == (16000,)


def test_long_recordings_split_into_equal_windows():
    processor = AudioProcessor(sampling_rate=100, chunk_seconds=10)
    pieces = processor.split(torch.arange(2500.0))
    assert [p.numel() for p in pieces] == [834, 834, 832]
    assert torch.equal(torch.cat(pieces), torch.arange(2500.0))
    assert len(processor.split(torch.zeros(1000))) == 1


@pytest.mark.parametrize("length", [400, 16000, 16001, 16079, 16080, 31560, 80000, 480_000, 1_234_567])
def test_framed_windows_give_every_frame_once(length):
    """Windows start on frame boundaries where the frames before them end, hold at most a window's
    samples and share the frames out within one of each other: their frames are the recording's."""
    field, hop, window = 400, 320, 16000
    bounds = framed_windows(length, window, field, hop)
    frames = [frame_count(count, field, hop) for _, count in bounds]
    assert sum(frames) == frame_count(length, field, hop) and max(frames) - min(frames) <= 1
    assert all(count <= window and first + count <= length for first, count in bounds)
    starts = [first for first, _ in bounds]
    assert starts == [hop * sum(frames[:index]) for index in range(len(bounds))]
    assert len(bounds) == 1 or all((count - field) % hop == 0 for _, count in bounds)  # each ends with a frame


def test_an_encoders_processor_cuts_on_its_frames():
    """A processor told its encoder's frames (`align_to_frames`) cuts on them; one that was not cuts
    equal pieces, and a window shorter than a frame is refused by name."""
    processor = AudioProcessor(sampling_rate=100, chunk_seconds=10)
    processor.align_to_frames(40, 32)
    assert processor.windows(2500) == framed_windows(2500, 1000, 40, 32) == [(0, 840), (832, 840), (1664, 808)]
    with pytest.raises(ConfigError, match=r"chunk_seconds=0.1 gives 10-sample windows, shorter than one 40-sample "
                                          r"frame of the encoder; use chunk_seconds of at least 0.4"):
        AudioProcessor(sampling_rate=100, chunk_seconds=0.1, min_samples=4).align_to_frames(40, 32)


def test_collate_pads_and_masks():
    batch = AudioProcessor()([np.ones(500, dtype=np.float32), np.ones(700, dtype=np.float32)], sampling_rate=16000)
    assert batch["input_values"].shape == (2, 700)
    assert batch["attention_mask"].sum(1).tolist() == [500, 700]
    assert float(batch["input_values"][0, 500:].abs().sum()) == 0.0


def test_processor_round_trips_through_json(tmp_path):
    processor = AudioProcessor(sampling_rate=24000, do_normalize=True, chunk_seconds=5.0)
    processor.save(tmp_path)
    assert AudioProcessor.from_file(tmp_path / "preprocessor_config.json") == processor


def test_unknown_processor_keys_are_named():
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"preprocessor_config.json of AudioProcessor has unknown keys \['rate'\]"):
        AudioProcessor.from_dict({"processor_type": "audio", "rate": 16000})


@pytest.mark.parametrize("settings, said", [
    ({"sampling_rate": -5}, "sampling_rate=-5; the model's rate is a whole positive number of Hz, at most 1000000"),
    ({"sampling_rate": 10**8}, "sampling_rate=100000000; the model's rate"),  # resampled 0.45 s into 2.7 GB
    ({"sampling_rate": 16000.5}, "sampling_rate=16000.5"),
    ({"chunk_seconds": 0.0}, "chunk_seconds=0.0 must be positive"),
    ({"normalize_eps": 0.0}, "normalize_eps=0.0; a small positive variance floor"),  # silence became NaN
    # was accepted, then a 1.5-window clip's 2400-sample pieces were refused by BEATs' forward mid-embed
    ({"chunk_seconds": 0.2, "min_samples": 2800}, "gives 3200-sample windows.*use chunk_seconds of at least 0.35"),
])
def test_bad_processor_settings_are_named_when_read(settings, said):
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match=said):
        AudioProcessor.from_dict({"processor_type": "audio", **settings})


def test_a_multichannel_file_is_mixed_to_mono_a_block_at_a_time(tmp_path, monkeypatch):
    """An hour of 44.1 kHz stereo held whole (1.27 GB) beside its mix and a transposed copy took
    +3.3 GB to load; mixed as it is read, +1.7 GB, the same samples (max abs diff 0.0)."""
    import zoo.audio

    samples = np.random.default_rng(0).uniform(-0.5, 0.5, (2500, 3)).astype(np.float32)
    soundfile.write(tmp_path / "three.wav", samples, 16000, subtype="FLOAT")
    reads = []
    original = soundfile.SoundFile.read

    def counted(self, frames=-1, *args, **kwargs):
        reads.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, "read", counted)
    monkeypatch.setattr(zoo.audio, "BLOCK_FRAMES", 1000)
    wave = AudioProcessor(sampling_rate=16000, do_normalize=False).prepare(str(tmp_path / "three.wav"))
    assert reads and all(frames == 1000 for frames in reads)  # never the whole file at once
    assert torch.equal(wave, torch.from_numpy(samples.mean(axis=1, dtype=np.float32)))


def test_the_processor_names_the_bad_recording_of_a_batch():
    """`encoder.preprocess([...])` in a training loop said a recording was empty, not which one."""
    good, empty = np.zeros(800, np.float32), np.zeros(0, np.float32)
    with pytest.raises(InputError, match=r"^input 2: audio input is empty"):
        AudioProcessor()([good, good, empty], sampling_rate=16000)
