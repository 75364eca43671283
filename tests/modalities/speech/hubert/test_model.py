"""HuBERT encoder: same numbers as transformers' HubertModel on the same weights, variants
that agree with hub_configs, and the embedded hubert-tiny-fsdd checkpoint."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import MICRO_HUBERT, shared_path

import zoo
from modalities.speech.hubert.model import VARIANTS, HubertEncoder, HubertEncoderConfig
from zoo import registry
from zoo.errors import ConfigError, InputError

TOLERANCE = 1e-5  # float32, identical weights, same operations in the same order


def wave(length: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(length).astype(np.float32))


@pytest.mark.parametrize("fixture", ["micro_hubert", "micro_hubert_stable"])
def test_item_alone_equals_transformers_hubert(fixture, request):
    encoder = request.getfixturevalue(fixture)
    item = wave(7000)[None]
    with torch.no_grad():
        ours = encoder(input_values=item, output_hidden_states=True)
        reference = encoder.model(item, output_hidden_states=True)
    assert (ours.last_hidden_state - reference.last_hidden_state).abs().max() <= TOLERANCE
    # transformers 5 records the last hidden state of pre-LN models before the final
    # LayerNorm; the zoo's last entry is always last_hidden_state
    compared = len(ours.hidden_states) - (1 if encoder.config.do_stable_layer_norm else 0)
    for index in range(compared):
        assert (ours.hidden_states[index] - reference.hidden_states[index]).abs().max() <= TOLERANCE, index
    assert torch.equal(ours.hidden_states[-1], ours.last_hidden_state)


@pytest.mark.parametrize("fixture", ["micro_hubert", "micro_hubert_stable"])
def test_a_saved_folder_loads_into_transformers_with_its_weights(fixture, request, tmp_path):
    """A folder `save_pretrained` (and so `zoo publish`) writes is a transformers HuBERT repo:
    AutoModel refused it (no model_type), and HubertModel loaded it with every weight missing, each
    output NaN, without an error. The zoo reads it back, and folders saved with `model.` keys."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, HubertModel

    encoder = request.getfixturevalue(fixture)
    encoder.save_pretrained(tmp_path / "saved")
    item = wave(7000)[None]
    with torch.no_grad():
        ours = encoder(input_values=item).last_hidden_state
        for model_class in (AutoModel, HubertModel):
            model = model_class.from_pretrained(tmp_path / "saved").eval()
            assert type(model) is HubertModel
            assert (model(item).last_hidden_state - ours).abs().max() <= TOLERANCE, model_class
        assert torch.equal(zoo.load(tmp_path / "saved")(input_values=item).last_hidden_state, ours)
        weights = tmp_path / "saved" / "model.safetensors"
        save_file({f"model.{key}": value for key, value in load_file(weights).items()}, weights)  # an older save
        assert torch.equal(zoo.load(tmp_path / "saved")(input_values=item).last_hidden_state, ours)


def test_transformers_batched_output_depends_on_padding_but_the_zoo_does_not(micro_hubert):
    """The GroupNorm front end of HuBERT-base lets padding into real frames in transformers."""
    short, long = wave(3000, 1), wave(12000, 2)
    batch = micro_hubert.preprocess([short.numpy(), long.numpy()], sampling_rate=16000)
    with torch.no_grad():
        alone = micro_hubert.model(short[None]).last_hidden_state[0]
        theirs = micro_hubert.model(**batch).last_hidden_state[0, : len(alone)]
        ours = micro_hubert(**batch).last_hidden_state[0, : len(alone)]
    assert (theirs - alone).abs().max() > 1e-3
    assert (ours - alone).abs().max() <= TOLERANCE


def test_mask_embedding_replaces_masked_frames_only(micro_hubert):
    item = wave(4000)[None]
    with torch.no_grad():
        features = micro_hubert.model.feature_projection(micro_hubert.extract_features(item, torch.tensor([4000])))
        masked = torch.zeros(features.shape[:2], dtype=torch.bool)
        masked[0, 5:9] = True
        with_mask = micro_hubert(input_values=item, mask_time_indices=masked).last_hidden_state
        without = micro_hubert(input_values=item).last_hidden_state
    assert not torch.allclose(with_mask, without)


def test_forward_refuses_batches_it_cannot_encode(micro_hubert):
    """A waveform shorter than one frame's receptive field (40 samples here, 400 for the real
    models) raised torch's "Kernel size can't be greater than actual input size", alone or in a
    padded batch; a mask shorter than the batch silently encoded only the samples it covered."""
    field = micro_hubert.config.receptive_field
    with torch.no_grad():
        assert micro_hubert(input_values=wave(field)[None]).last_hidden_state.shape[1] == 1
        with pytest.raises(InputError, match=f"at least {field} samples .* got {field - 1}; pad it"):
            micro_hubert(input_values=wave(field - 1)[None])
        mask = torch.ones(2, 4000, dtype=torch.long)
        mask[1, field - 1:] = 0
        with pytest.raises(InputError, match=f"at least {field} samples .* got {field - 1}"):
            micro_hubert(input_values=torch.stack([wave(4000), wave(4000)]), attention_mask=mask)
        with pytest.raises(InputError, match=r"attention_mask of shape \(1, 3000\) for input_values of shape"):
            micro_hubert(input_values=wave(4000)[None], attention_mask=torch.ones(1, 3000, dtype=torch.long))
        with pytest.raises(InputError, match=r"shape \(4000,\); pass a \(batch > 0, samples\) torch tensor"):
            micro_hubert(input_values=wave(4000))
        with pytest.raises(InputError, match=r"shape \(0, 4000\); pass a \(batch > 0"):  # was an IndexError
            micro_hubert(input_values=torch.zeros(0, 4000))
        with pytest.raises(InputError, match="input_values has dtype torch.int16; forward takes float waveforms"):
            micro_hubert(input_values=(wave(4000)[None] * 32767).to(torch.int16))  # was read as amplitudes
        with pytest.raises(InputError, match=r"attention_mask holds values other than 0 and 1 \(\[0, 2\]\)"):
            micro_hubert(input_values=torch.stack([wave(4000), wave(4000)]), attention_mask=mask * 2)  # read as 2x
        holed = torch.stack([wave(4000), wave(4000)])
        holed[1, 17] = float("nan")  # came out as NaN rows without a word
        with pytest.raises(InputError, match=r"NaN or infinite samples \(waveform 1, sample 17: nan\); clean"):
            micro_hubert(input_values=holed)


def test_forward_refuses_left_padding(micro_hubert):
    """transformers' feature extractors pad on the left with padding_side="left"; lengths read as
    mask sums then encoded the leading zeros and dropped the item's end (pooled max abs diff 4.13
    on hubert-tiny-fsdd, rows of scale 3.3)."""
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, :1000] = 0
    with torch.no_grad(), pytest.raises(InputError, match="padding .0. before real samples"):
        micro_hubert(input_values=torch.stack([wave(4000), wave(4000)]), attention_mask=mask)


@pytest.mark.parametrize("name, variant", [("hubert-base-ls960", "base"), ("hubert-large-ll60k", "large"),
                                           ("hubert-xlarge-ll60k", "xlarge")])
def test_variants_agree_with_hub_configs(name, variant):
    entry = registry.get_entry(name)
    resolved = dataclasses.asdict(HubertEncoderConfig(**VARIANTS[variant]))
    assert HubertEncoderConfig.from_dict(entry.architecture) == HubertEncoderConfig(**VARIANTS[variant])
    assert set(entry.architecture) == set(resolved)


def test_config_checks_name_the_values():
    with pytest.raises(ConfigError, match="hidden_size 30 is not divisible by num_attention_heads 4"):
        HubertEncoderConfig(**{**MICRO_HUBERT, "hidden_size": 30})
    with pytest.raises(ConfigError, match="one entry per conv layer"):
        HubertEncoderConfig(**{**MICRO_HUBERT, "conv_kernel": (10, 3)})
    with pytest.raises(ConfigError, match="feat_extract_norm='batch'"):
        HubertEncoderConfig(**{**MICRO_HUBERT, "feat_extract_norm": "batch"})
    with pytest.raises(ConfigError, match="unknown keys"):
        HubertEncoderConfig.from_dict({"hidden_size": 32, "hiden_layers": 2})


def test_embedded_checkpoint_rows_do_not_depend_on_the_batch():
    encoder = zoo.load("hubert-tiny-fsdd")
    assert isinstance(encoder, HubertEncoder) and encoder.processor.sampling_rate == 16000
    recordings = sorted(shared_path("data", "fsdd", "recordings").glob("*_jackson_0.wav"))[:6]
    alone = torch.cat([encoder.embed([path], progress=False) for path in recordings])
    assert alone.shape == (6, encoder.embed_dim) and torch.isfinite(alone).all()
    for batch_size in (2, 4, 6):
        batched = encoder.embed(recordings, batch_size=batch_size, progress=False)
        assert (batched - alone).abs().max() <= TOLERANCE
    mixed = encoder.embed([recordings[0], wave(48000).numpy() * 0.05, recordings[1]], sampling_rate=16000,
                          batch_size=3, progress=False)
    assert (mixed[[0, 2]] - alone[:2]).abs().max() <= TOLERANCE


@pytest.mark.parametrize("autocast", [False, True], ids=["bf16-weights", "bf16-autocast"])
def test_bfloat16_runs_close_to_float32(autocast):
    """The embedded tiny model's conv positional embedding (12 channels per group, kernel 64)
    is a shape oneDNN's bfloat16 grouped conv gets wrong on AVX-512-BF16 CPUs: max abs diff
    2.65 on rows of scale 2.93 before `zoo.numerics.grouped_conv1d`; measured after: 0.016
    (weights) / 0.0056 (autocast) on an AVX-512 Xeon. AVX2 CPUs were right before and after."""
    encoder = zoo.load("hubert-tiny-fsdd")
    items = [wave(16000, 3).numpy() * 0.1]
    reference = encoder.embed(items, sampling_rate=16000, progress=False)
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rows = encoder.embed(items, sampling_rate=16000, progress=False)
    else:
        rows = encoder.to(torch.bfloat16).embed(items, sampling_rate=16000, progress=False)
    assert (rows.float() - reference).abs().max() < 0.1 * reference.abs().max()


@pytest.mark.parametrize("fixture", ["micro_hubert", "micro_hubert_stable"])
def test_the_front_end_takes_a_long_batch_a_few_rows_at_a_time(fixture, request, monkeypatch):
    """A batch of eight 30 s windows at 24 kHz went through the conv front end at once: 7,178 MiB
    for MERT-v1-95M's shape. Its rows now run `FRONT_END_SAMPLES` at a time, with the same outputs
    (GroupNorm and LayerNorm front ends alike: each row's statistics are its own)."""
    import modalities.speech.hubert.model as hubert

    encoder = request.getfixturevalue(fixture)
    waves = torch.randn(5, 3000, generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(waves, dtype=torch.long)
    mask[3:, 2000:] = 0  # two lengths: a GroupNorm front end runs each length on its own
    with torch.no_grad():
        whole = encoder(waves, mask, output_hidden_states=True)
        passes = []
        monkeypatch.setattr(hubert, "FRONT_END_SAMPLES", 6000)  # two rows of 3,000 samples a pass
        monkeypatch.setattr(encoder.model.feature_extractor.conv_layers[0], "forward", counted(
            encoder.model.feature_extractor.conv_layers[0].forward, passes))
        parts = encoder(waves, mask, output_hidden_states=True)
    assert passes == [2, 2, 1]  # GroupNorm: 2 rows of 2,000 (3 fit), then 3 of 3,000 (2 fit); LayerNorm: 5 of 3,000
    for got, expected in zip(parts.hidden_states, whole.hidden_states):
        assert (got - expected).abs().max() <= 1e-5  # measured 0.0 on this CPU


def counted(forward, calls):
    def wrapped(*args, **kwargs):
        calls.append(args[0].shape[0])
        return forward(*args, **kwargs)
    return wrapped
