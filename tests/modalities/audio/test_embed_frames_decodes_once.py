"""`embed_frames` decodes each recording once (it decoded every file twice: once to embed it,
once more for its frame times), and gives what `embed(pool="none")` and `frame_times` give."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

import zoo.audio
from zoo.audio import PreparedWave, frame_times
from zoo.errors import InputError

HUBERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
BEATS = dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
             embed_dim_patches=48, conv_pos=16, conv_pos_groups=4, dropout=0.0, attention_dropout=0.0)


def micro_hubert(normalize: bool = False):
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
    from zoo.audio import AudioProcessor

    torch.manual_seed(0)
    return HubertEncoder(HubertEncoderConfig(**HUBERT), AudioProcessor(do_normalize=normalize)).eval()


def micro_beats():
    from modalities.audio.beats.model import BEATsConfig, BEATsEncoder

    torch.manual_seed(0)
    return BEATsEncoder(BEATsConfig(**BEATS)).eval()


@pytest.fixture
def recordings(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index, seconds in enumerate((0.7, 1.3, 0.4)):
        path = tmp_path / f"clip{index}.wav"
        soundfile.write(path, (0.3 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000)
        paths.append(str(path))
    return paths


@pytest.fixture
def decodes(monkeypatch):
    """The number of times a file or buffer is decoded."""
    calls = []
    decode = zoo.audio.decode_audio

    def counting(source, where, *args, **kwargs):
        calls.append(where)
        return decode(source, where, *args, **kwargs)

    monkeypatch.setattr(zoo.audio, "decode_audio", counting)
    return calls


@pytest.mark.parametrize("make", [micro_hubert, lambda: micro_hubert(normalize=True), micro_beats],
                         ids=["hubert", "hubert-normalised", "beats"])
def test_each_file_is_decoded_once(make, recordings, decodes):
    encoder = make()
    stamped = encoder.embed_frames(recordings, progress=False, batch_size=2)
    assert len(decodes) == len(recordings)
    decodes.clear()
    tokens = encoder.embed(recordings, pool="none", progress=False, batch_size=2)
    hop, field, counts = ((encoder.config.frame_hop, encoder.config.receptive_field, encoder.frame_lengths)
                          if hasattr(encoder.config, "frame_hop") else
                          (encoder.config.input_patch_size * 160, encoder.config.min_samples, encoder.column_counts))
    for path, item_tokens, (times, frames) in zip(recordings, tokens, stamped):
        wave = encoder.processor.prepare(path)
        assert torch.equal(times, frame_times(encoder.processor, wave, counts, hop, field))
        if hasattr(encoder.config, "frame_hop"):
            assert torch.equal(frames, item_tokens), "the prepared waveform is not normalised twice"
        else:
            assert torch.equal(frames, item_tokens.unflatten(-2, (-1, 8)).mean(-2))


def test_prepared_waves_pass_through_and_bad_items_are_named(recordings):
    encoder = micro_hubert(normalize=True)
    wave = torch.randn(4000)
    assert encoder.processor.prepare(PreparedWave(wave)) is wave
    with pytest.raises(InputError, match="input 1:"):
        encoder.embed_frames([recordings[0], recordings[0] + ".missing.wav"], progress=False)
    with pytest.raises(InputError, match="no inputs"):
        encoder.embed_frames([], progress=False)
