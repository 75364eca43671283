"""The BEATs encoder through the shared API: batch invariance, layers, frames, bad input,
the tagging head and the codebook (random tiny weights; parity is in test_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zoo
from zoo.errors import ConfigError, InputError

MICRO = dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
             embed_dim_patches=48, conv_pos=16, conv_pos_groups=4, dropout=0.0, attention_dropout=0.0)


@pytest.fixture
def micro_beats():
    from modalities.audio.beats.model import BEATsConfig, BEATsEncoder

    torch.manual_seed(0)
    return BEATsEncoder(BEATsConfig(**MICRO)).eval()


def waves(*seconds: float, rate: int = 16000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.3 * rng.standard_normal(int(s * rate))).astype(np.float32) for s in seconds]


def test_rows_do_not_depend_on_the_batch(micro_beats):
    items = waves(1.0, 2.3, 0.7, 0.2)
    together = micro_beats.embed(items, sampling_rate=16000, batch_size=4, progress=False)
    alone = torch.cat([micro_beats.embed([item], sampling_rate=16000, progress=False) for item in items])
    assert together.shape == (4, 32)
    assert (together - alone).abs().max() < 1e-5


def test_tokens_layers_and_frames(micro_beats):
    item = waves(2.3)[0]
    tokens = micro_beats.embed([item], sampling_rate=16000, pool="none", progress=False)[0]
    frames = 1 + (len(item) - 400) // 160
    assert tokens.shape == (8 * (frames // 16), 32)
    states = micro_beats.embed([item], sampling_rate=16000, layer="all", progress=False)
    assert states.shape == (1, 3, 32)
    times, columns = micro_beats.embed_frames([item], sampling_rate=16000, progress=False)[0]
    assert columns.shape == (frames // 16, 32)
    assert torch.allclose(columns[0], tokens[:8].mean(0), atol=1e-6)
    assert torch.equal(times, (torch.arange(frames // 16, dtype=torch.float64) * 2560 + 1400) / 16000)
    _, layers = micro_beats.embed_frames([item], sampling_rate=16000, layer="all", progress=False)[0]
    assert layers.shape == (3, frames // 16, 32)
    assert torch.equal(layers[-1], columns)
    with torch.no_grad():
        output = micro_beats(torch.from_numpy(item)[None])
    view, mask = micro_beats.frames(output.last_hidden_state, output.mask)
    assert view.shape == (1, frames // 16, 32) and bool(mask.all())


def test_every_column_comes_out_across_windows(micro_beats):
    """Each 10 s window dropped its last partial column: 25 s gave 153 of its 156 columns (a gap of
    about 80 ms at each edge). Windows now start on column boundaries: every column once, at the
    whole recording's times, and a window's columns are those of its samples alone (its fbank frames
    are the whole recording's)."""
    item = waves(25.0)[0]  # 2,498 fbank frames: 156 columns, 52 in each of 3 windows (62 fit in 10 s)
    times, columns = micro_beats.embed_frames([item], sampling_rate=16000, progress=False)[0]
    assert len(columns) == 156
    assert torch.equal(times, (torch.arange(156, dtype=torch.float64) * 2560 + 1400) / 16000)
    third = micro_beats.embed_frames([item[104 * 2560:]], sampling_rate=16000, progress=False)[0][1]
    assert (columns[104:] - third).abs().max() < 1e-5


def test_other_rates_are_resampled(micro_beats):
    item = waves(1.0, rate=8000)[0]
    import torchaudio.functional

    resampled = torchaudio.functional.resample(torch.from_numpy(item), 8000, 16000).numpy()
    assert torch.allclose(micro_beats.embed([item], sampling_rate=8000, progress=False),
                          micro_beats.embed([resampled], sampling_rate=16000, progress=False), atol=1e-6)


def test_bad_audio_raises_zoo_errors(micro_beats):
    with pytest.raises(InputError, match="at least 2800 samples"):
        micro_beats(torch.zeros(1, 1000))
    short = micro_beats.embed(waves(0.05), sampling_rate=16000, pool="none", progress=False)[0]
    assert short.shape == (8, 32)  # padded up to one column
    with pytest.raises(InputError, match="empty"):
        micro_beats.embed([np.zeros(0, np.float32)], sampling_rate=16000, progress=False)
    with pytest.raises(InputError, match="NaN"):
        micro_beats.embed([np.full(4000, np.nan, np.float32)], sampling_rate=16000, progress=False)
    micro_beats.embed = lambda *args, **kwargs: pytest.fail("embedded")  # was: every clip embedded, then refused
    with pytest.raises(ConfigError, match="not a tokenizer"):
        micro_beats.tokenize(waves(1.0), sampling_rate=16000)


def test_forward_refuses_batches_of_other_shapes(micro_beats):
    """A 1-d waveform raised a bare IndexError, a (B, 1, S) batch was read as waveforms of one
    sample, and a mask shorter than the batch, or padded on the left, silently encoded other samples."""
    item = torch.from_numpy(waves(0.5)[0])
    with torch.no_grad():
        with pytest.raises(InputError, match=r"shape \(8000,\); pass a \(batch > 0, samples\) torch tensor"):
            micro_beats(item)
        with pytest.raises(InputError, match=r"shape \(1, 1, 8000\); pass a \(batch > 0, samples\)"):
            micro_beats(item[None, None])
        with pytest.raises(InputError, match=r"attention_mask of shape \(1, 4000\) for input_values of shape"):
            micro_beats(item[None], attention_mask=torch.ones(1, 4000, dtype=torch.long))
        left_padded = torch.ones(1, 8000, dtype=torch.long)
        left_padded[0, :3000] = 0  # transformers' padding_side="left": pooled max abs diff 4.23 on beats-tiny
        with pytest.raises(InputError, match="padding .0. before real samples"):
            micro_beats(item[None], attention_mask=left_padded)


def test_config_errors_name_the_fix():
    from modalities.audio.beats.model import BEATsConfig

    with pytest.raises(ConfigError, match="not divisible by encoder_attention_heads"):
        BEATsConfig(**{**MICRO, "encoder_attention_heads": 5})
    with pytest.raises(ConfigError, match="attn_implementation='flash'"):
        BEATsConfig(**{**MICRO, "attn_implementation": "flash"})
    with pytest.raises(ConfigError, match="codebook_size 8 and codebook_dim 0"):
        BEATsConfig(**{**MICRO, "codebook_size": 8})


#: bfloat16 vs float32 pooled output (scale ~2.4): measured max abs diff 0.0043-0.0054 with bfloat16
#: weights and 0.0088 under autocast, on AVX-512 (Intel, AMX) and with ATEN_CPU_CAPABILITY=avx2 /
#: MKL_CBWR=AVX2 (eager path); ~2% of the output scale. Before the positional conv ran in float32
#: on CPU it was 0.96 on AVX-512-BF16 CPUs (see test_positional_conv_in_bfloat16_matches_float32).
BFLOAT16_TOLERANCE = 0.05


def test_bfloat16_weights_and_autocast_run_close_to_float32(micro_beats):
    items = waves(1.0, 1.5)
    reference = micro_beats.embed(items, sampling_rate=16000, progress=False)
    half = micro_beats.to(torch.bfloat16).embed(items, sampling_rate=16000, progress=False)
    assert half.dtype == torch.float32 and (half - reference).abs().max() < BFLOAT16_TOLERANCE
    micro_beats.float()
    batch = micro_beats.processor(items, sampling_rate=16000)
    for implementation in ("sdpa", "eager"):  # autocast lowers q/k/v below the float32 bias
        for layer in micro_beats.transformer.layers:
            layer.self_attn.implementation = implementation
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            output = micro_beats(**batch)
        assert output.last_hidden_state.dtype == torch.bfloat16
        assert (output.pooled.float() - reference).abs().max() < BFLOAT16_TOLERANCE


@pytest.mark.parametrize("width,kernel,groups", [(32, 16, 4), (64, 32, 16), (192, 64, 16)])
def test_positional_conv_in_bfloat16_matches_float32(width, kernel, groups):
    """oneDNN's bfloat16 grouped Conv1d is wrong on AVX-512-BF16/AMX CPUs when a group has
    2-12 channels and a long kernel (max abs error ~4 on outputs of scale ~2.5); these are
    the micro test model's, the golden tiny fixture's and the "tiny" variant's shapes. The
    zoo runs that conv in float32, so bfloat16 weights or autocast differ from float32 by
    bfloat16 rounding only: measured max abs diff <= 0.41% of the output scale under autocast,
    <= 0.52% with bfloat16 weights (AVX-512/AMX); it was 96-105% before the fix."""
    from modalities.audio.beats.attention import PositionalConv

    torch.manual_seed(0)
    conv = PositionalConv(width, kernel, groups).eval()
    x = torch.randn(2, 48, width).bfloat16().float()
    with torch.no_grad():
        reference = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = conv(x)
        half = conv.to(torch.bfloat16)(x.bfloat16())
    assert autocast.dtype == half.dtype == torch.bfloat16
    scale = reference.abs().max()
    assert (autocast.float() - reference).abs().max() < 0.01 * scale
    assert (half.float() - reference).abs().max() < 0.02 * scale


def test_tagging_head_learns_saves_and_predicts(micro_beats, tmp_path):
    tagger = zoo.for_tagging(micro_beats, labels=["low", "high", "noise"], freeze=False)
    t = np.arange(16000) / 16000
    items = [np.sin(2 * np.pi * 200 * t).astype(np.float32), np.sin(2 * np.pi * 3000 * t).astype(np.float32)]
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    batch = tagger.processor(items, sampling_rate=16000)
    optimizer = torch.optim.Adam(tagger.parameters(), lr=3e-3)
    tagger.train()
    losses = []
    for _ in range(30):
        loss = tagger(**batch, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    tagger.eval()
    tagger.save_pretrained(tmp_path / "tagger")
    loaded = zoo.load(tmp_path / "tagger")
    assert loaded.labels == ["low", "high", "noise"]
    top = loaded.predict(items, top_k=2, sampling_rate=16000)
    assert {name for name, _ in top[0]} == {"noise", "low"} and {name for name, _ in top[1]} == {"noise", "high"}
    assert all(score > 0.5 for row in top for _, score in row)
    assert torch.allclose(loaded.probabilities(items, sampling_rate=16000),
                          tagger.probabilities(items, sampling_rate=16000), atol=1e-6)


def test_codebook_kmeans_and_ema_keep_unit_codes():
    from modalities.audio.beats.quantizer import CosineCodebook

    generator = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    points = (centres.repeat_interleave(50, 0) + 0.05 * torch.randn(200, 8, generator=generator))
    codebook = CosineCodebook(4, 8)
    codebook.kmeans_init(centres, generator=generator)
    codes = codebook.nearest(points)
    assert len(codes.unique()) == 4
    assert all(len(codes[i * 50:(i + 1) * 50].unique()) == 1 for i in range(4))
    before = codebook.embed.clone()
    codebook.update(points[:50] + 0.5, codes[:50])
    assert torch.allclose(codebook.embed.norm(dim=-1), torch.ones(4), atol=1e-5)
    moved = codes[0].item()
    assert not torch.equal(codebook.embed[moved], before[moved])
    unused = [i for i in range(4) if i != moved]
    assert torch.equal(codebook.embed[unused], before[unused])


def test_the_nearest_codes_are_found_a_block_at_a_time():
    """A long recording's distances to the codes, all at once, took 1.5 GB for 30 minutes."""
    from modalities.audio.beats.quantizer import CosineCodebook

    torch.manual_seed(0)
    codebook, features = CosineCodebook(32, 8), torch.randn(3, 500, 8)
    codes = codebook.nearest(features, block=64)
    assert codes.shape == (3, 500) and torch.equal(codes, codebook.distances(features).argmin(-1))
    assert codebook.nearest(features[:, :0]).shape == (3, 0)
