"""Audio pretraining reads its recordings as batches reach them (`RecordingFiles`): the sample
counts it lays its batches out by come from the files' headers and are exactly what decoding
gives, the batches are those of the waveforms held in memory, and the teachers' targets are
made in one reading of each recording."""

import argparse
import weakref
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modalities.audio.mert_pretrain_options import add_arguments as mert_arguments
from modalities.audio.mert.pretrain import (
    centred_cqt, feature_weights, fit_residual_kmeans, make_targets, teacher_features,
)
from modalities.audio.mert.model import MertEncoder, MertEncoderConfig, VARIANTS as MERT_VARIANTS, constant_q
from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
from modalities.speech.hubert.pretrain import layer_feature_groups
from zoo.audio import AudioProcessor
from zoo.audio_crops import COUNTED_FORMATS, CropBatches, RecordingFiles, frame_count, load_waves, recording_layout
from zoo.errors import InputError

#: (format, subtype, ending) of every format in COUNTED_FORMATS
FORMATS = [("WAV", "PCM_16", ".wav"), ("WAV", "FLOAT", ".wav"), ("WAVEX", "PCM_24", ".wav"),
           ("FLAC", "PCM_16", ".flac"), ("AIFF", "PCM_16", ".aiff"), ("AU", "PCM_16", ".au"),
           ("CAF", "PCM_16", ".caf"), ("W64", "PCM_16", ".w64"), ("RF64", "PCM_16", ".rf64"),
           ("OGG", "VORBIS", ".ogg"), ("OGG", "OPUS", ".opus")]
#: crops decoded alone and resampled against the whole decoding's (tests/test_audio_blocks.py's BLOCK_TOLERANCE)
SPAN_TOLERANCE = 5e-7
PROCESSORS = [AudioProcessor(sampling_rate=16000, min_samples=400),
              AudioProcessor(sampling_rate=24000, min_samples=400, do_normalize=True)]


def write(path: Path, frames: int, rate: int, channels: int = 1, seed: int = 0, **options) -> Path:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)
    soundfile.write(path, samples, rate, **options)
    return path


class Decodes(list):
    """The paths a processor decodes, in order, and the most of its decoded waveforms alive at once."""

    def __init__(self, processor: AudioProcessor, monkeypatch) -> None:
        super().__init__()
        self.alive = self.most_alive = 0
        prepare = processor.prepare

        def recording(item, *args, **kwargs):
            wave = prepare(item, *args, **kwargs)
            if isinstance(item, Path):
                self.append(item)
                self.alive += 1
                self.most_alive = max(self.most_alive, self.alive)
                weakref.finalize(wave, self.freed)
            return wave

        monkeypatch.setattr(processor, "prepare", recording)

    def freed(self) -> None:
        self.alive -= 1


def test_every_counted_format_has_the_length_it_decodes_to(tmp_path):
    """The header's frames resampled (`resampled_length`) and padded to min_samples are the samples
    `prepare` gives, at rates that resample up, down and not at all, over several decoding blocks
    (2^18 frames), for recordings shorter than one frame, and in stereo."""
    assert {name for name, _, _ in FORMATS} == set(COUNTED_FORMATS)
    checked = 0
    for name, subtype, ending in FORMATS:
        for rate in (8000, 16000, 48000) if subtype == "OPUS" else (8000, 16000, 44100):
            for frames, channels in ((150, 1), (8001, 2), (270001, 1)):
                path = write(tmp_path / f"{rate}-{frames}{ending}", frames, rate, channels, format=name,
                             subtype=subtype)
                assert soundfile.info(str(path)).format == name
                for processor in PROCESSORS:
                    assert recording_layout(path, processor)[0] == processor.prepare(path).numel(), (path, processor)
                    checked += 1
    assert checked == 2 * 3 * 3 * len(FORMATS)


def test_a_truncated_wav_counts_what_it_holds(tmp_path):
    path = write(tmp_path / "cut.wav", 48000, 44100, channels=2)
    path.write_bytes(path.read_bytes()[:-7001])
    with pytest.warns(UserWarning, match="truncated audio"):
        assert recording_layout(path, PROCESSORS[0])[0] == PROCESSORS[0].prepare(path).numel() == 16780


def test_an_uncounted_format_is_decoded_for_its_length(tmp_path, monkeypatch):
    """MP3's header length can be an estimate: it is decoded once, where a WAV is not decoded at all."""
    if "MP3" not in soundfile.available_formats():
        pytest.skip("this libsndfile has no MP3 codec")
    mp3 = write(tmp_path / "a.mp3", 9000, 22050, format="MP3", subtype="MPEG_LAYER_III")
    wav = write(tmp_path / "b.wav", 9000, 22050)
    processor = AudioProcessor(sampling_rate=16000)
    decoded = Decodes(processor, monkeypatch)
    recordings = RecordingFiles([mp3, wav], processor)
    assert decoded == [mp3]
    assert recordings.lengths.tolist() == [recordings[0].numel(), recordings[1].numel()]


def test_an_unreadable_file_is_named_when_the_run_begins(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not a wav")
    with pytest.raises(InputError, match="bad.wav"):
        RecordingFiles([write(tmp_path / "good.wav", 4000, 8000), bad], PROCESSORS[0])


def corpus(folder: Path, count: int = 14) -> list[Path]:
    """`count` 8 kHz WAVs of 0.05 to 1.9 s: some shorter than a frame once resampled to 16 kHz."""
    lengths = np.random.default_rng(1).integers(400, 15000, count)
    lengths[3] = 150
    return [write(folder / f"{index:02d}.wav", int(frames), 8000, seed=index) for index, frames in enumerate(lengths)]


@pytest.mark.parametrize("processor", PROCESSORS, ids=["16k", "24k-normalized"])
def test_crops_of_recording_files_are_those_of_the_waveforms_held(tmp_path, monkeypatch, processor):
    """Same inputs and labels for 12 batches (over two epochs; 8 kHz files resampled, so within
    SPAN_TOLERANCE). None is decoded whole to lay the batches out, and a crop decodes its own
    samples only (`decode_span`), but for a recording too short to crop alone (padded to
    min_samples: at 16 kHz, not at 24 kHz)."""
    files = corpus(tmp_path)
    waves = load_waves(files, processor)
    field, hop = 400, processor.sampling_rate // 50
    labels = [torch.arange(frame_count(wave.numel(), field, hop)) for wave in waves]
    held = CropBatches(waves, labels, batch_size=4, max_frames=20, field=field, hop=hop, seed=3)
    decoded = Decodes(processor, monkeypatch)
    recordings = RecordingFiles(files, processor)
    lazy = CropBatches(recordings, labels, batch_size=4, max_frames=20, field=field, hop=hop, seed=3)
    too_short = {path for path in files if soundfile.info(str(path)).frames * processor.sampling_rate // 8000 < 400}
    assert decoded == [] and recordings.spanned.tolist() == [path not in too_short for path in files]
    for index in range(12):
        expected, got = held.batch(index), lazy.batch(index)
        assert expected.keys() == got.keys() and torch.equal(expected["labels"], got["labels"])
        assert (expected["input_values"] - got["input_values"]).abs().max() <= SPAN_TOLERANCE, index
    assert set(decoded) == too_short and decoded.most_alive <= 1


def test_a_recording_changed_since_the_run_began_is_refused(tmp_path):
    path = write(tmp_path / "a.wav", 8000, 8000)
    recordings = RecordingFiles([path], PROCESSORS[0])
    write(path, 9000, 8000)
    with pytest.raises(InputError, match="changed since"):
        recordings[0]
    with pytest.raises(InputError, match="decodes to 18000 samples at 16000 Hz, but had 16000.*changed since"):
        recordings.span(0, 0, 400)  # a crop decoded alone is checked too
    path.unlink()
    with pytest.raises(InputError, match="cannot decode audio file .*a.wav"):
        recordings.span(0, 0, 400)


def test_teacher_layer_features_are_embeds_and_read_each_recording_once(tmp_path, monkeypatch):
    """HuBERT's iteration 2 clusters a teacher's layer: the same features as `embed` of every
    waveform held (the same batches: torch.equal), reading each file once and holding one at a
    time, or two (`embed` of them all lists every one first)."""
    torch.manual_seed(0)
    teacher = HubertEncoder(HubertEncoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                intermediate_size=64, conv_dim=(32,) * 7,
                                                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4))
    files, processor = corpus(tmp_path, 70), AudioProcessor(sampling_rate=16000, min_samples=400)
    expected = teacher.embed(load_waves(files, processor), layer=1, pool="none", batch_size=16, progress=False,
                             sampling_rate=16000)
    decoded = Decodes(processor, monkeypatch)
    got = [rows for group in layer_feature_groups(teacher, RecordingFiles(files, processor), 1, progress=False)
           for rows in group]
    assert decoded == files and decoded.most_alive == 2  # the one read and the one before it
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def mert_args(*options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    mert_arguments(parser)
    return parser.parse_args(["--data", ".", "-o", ".", "--codebooks", "2", "--clusters", "8", *options])


def test_mert_teachers_read_each_recording_once(tmp_path, monkeypatch):
    """Both teachers' targets (k-means codes, CQT) in one reading of the corpus: the codes and the
    fp16 CQT of the waveforms held (torch.equal), where a pass per teacher read it twice."""
    torch.manual_seed(0)
    encoder = MertEncoder(MertEncoderConfig(**MERT_VARIANTS["tiny"]))
    processor, args = encoder.processor, mert_args()
    files = corpus(tmp_path, 6)
    waves = load_waves(files, processor)
    field, hop, rate = encoder.config.receptive_field, encoder.config.frame_hop, processor.sampling_rate
    decoded = Decodes(processor, monkeypatch)
    targets = make_targets(args, encoder, RecordingFiles(files, processor), tmp_path / "cqt.npy")
    assert decoded == files and decoded.most_alive == 2  # the one read and the one before it
    features = teacher_features(waves, rate, field, hop)
    quantiser = fit_residual_kmeans(features, 2, 8, args.kmeans_frames, args.seed, feature_weights(1.0))
    assert all(torch.equal(codes, quantiser.codes(wave_features))
               for codes, wave_features in zip(targets["labels"], features))
    cqt = constant_q(rate, hop, 336)
    assert all(torch.equal(target, centred_cqt(cqt, wave, field, frame_count(wave.numel(), field, hop)).half())
               for wave, target in zip(waves, targets["cqt"]))


def test_weights_fingerprint_tells_weights_apart_and_takes_any_dtype():
    """A pass's record names its teacher by its weights: the same weights give the same print,
    one value changed or a buffer's type another print; bf16 (which numpy lacks) and 0-d buffers work."""
    from zoo.saving import weights_fingerprint

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))  # a 0-d num_batches_tracked
    same = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    same.load_state_dict(model.state_dict())
    assert weights_fingerprint(model) == weights_fingerprint(same)
    with torch.no_grad():
        same[0].weight[0, 0] += 1e-6
    print_fp32 = weights_fingerprint(model)
    assert print_fp32 != weights_fingerprint(same)
    assert weights_fingerprint(model.to(torch.bfloat16)) not in (print_fp32, weights_fingerprint(same))
