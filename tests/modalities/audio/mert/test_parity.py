"""Parity with the official MERT remote code on ../shared/golden/mert (tiny random weights).

Each variant folder is loaded as a user would load a Hub snapshot (`zoo.load(folder)`),
with no remote code. Every hidden state is compared with what the official code computes
for each item alone: the official batched output lets padding into the first conv's
GroupNorm, the zoo's must not, so the zoo's batched rows are held to the item-alone
outputs too. Measured max abs diff: 7.2e-6 (deepnorm), 5.0e-6 (stable layer norm),
4.1e-6 (v1-like), 1.9e-6 (CQT); SDPA against the official eager attention. Tolerance 2e-5.
"""

from __future__ import annotations

import pytest
import torch
from helpers import shared_path

TOLERANCE = 2e-5
VARIANTS = ("v1_like", "v1_stable_layer_norm", "deepnorm", "cqt")


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    folder = shared_path("golden", "mert")
    inputs = load_file(str(folder / "inputs.safetensors"))
    outputs = {variant: load_file(str(folder / variant / "outputs.safetensors")) for variant in VARIANTS}
    return folder, inputs, outputs


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def load(golden, variant: str):
    import zoo

    return zoo.load(golden[0] / variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_item_alone_matches_official(golden, variant):
    _, inputs, outputs = golden
    encoder = load(golden, variant)
    for index, length in enumerate(inputs["lengths"].tolist()):
        with torch.no_grad():
            output = encoder(inputs["input_values"][index : index + 1, :length], output_hidden_states=True)
        assert len(output.hidden_states) == 3
        for layer, state in enumerate(output.hidden_states):
            assert max_diff(state, outputs[variant][f"alone.{index}.hidden_states.{layer}"]) < TOLERANCE
        assert max_diff(output.last_hidden_state, outputs[variant][f"alone.{index}.last_hidden_state"]) < TOLERANCE


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_rows_match_official_item_alone(golden, variant):
    _, inputs, outputs = golden
    encoder = load(golden, variant)
    with torch.no_grad():
        output = encoder(inputs["input_values"], inputs["attention_mask"], output_hidden_states=True)
    reference = outputs[variant]
    assert output.mask.int().tolist() == reference["batched.frame_mask"].tolist()
    for index in range(3):
        frames = reference[f"alone.{index}.last_hidden_state"].shape[1]
        for layer in range(3):
            expected = reference[f"alone.{index}.hidden_states.{layer}"][0]
            assert max_diff(output.hidden_states[layer][index, :frames], expected) < TOLERANCE
    # the longest item has no padding: there the official batched output is comparable as it is
    assert max_diff(output.last_hidden_state[1], reference["batched.last_hidden_state"][1]) < TOLERANCE


@pytest.mark.parametrize("variant", ["v1_like", "deepnorm"])
def test_official_batched_output_depends_on_padding(golden, variant):
    """The trap the zoo avoids: the official padded rows are far from the item-alone rows."""
    _, inputs, outputs = golden
    reference = outputs[variant]
    frames = reference["alone.2.last_hidden_state"].shape[1]
    gap = max_diff(reference["batched.last_hidden_state"][2, :frames], reference["alone.2.last_hidden_state"][0])
    assert gap > 0.1


def test_v1_like_equals_transformers_hubert_model(golden):
    """Where MERT is HuBERT (v1 configs), transformers' HubertModel on the same keys is exact."""
    from transformers import HubertConfig, HubertModel

    folder, inputs, outputs = golden
    encoder = load(golden, "v1_like")
    model = HubertModel(encoder.config.to_transformers()).eval()
    model.load_state_dict(encoder.model.state_dict(), strict=True)
    with torch.no_grad():
        reference = model(inputs["input_values"][1:2], output_hidden_states=True)
    assert isinstance(model.config, HubertConfig)
    assert max_diff(reference.last_hidden_state, outputs["v1_like"]["alone.1.last_hidden_state"]) < TOLERANCE


def test_stable_layer_norm_last_state_is_after_final_layer_norm(golden):
    """transformers 5 records HubertModel's last hidden state before the final LayerNorm; MERT's is after."""
    _, inputs, outputs = golden
    encoder = load(golden, "v1_stable_layer_norm")
    with torch.no_grad():
        output = encoder(inputs["input_values"][1:2], output_hidden_states=True)
    assert torch.equal(output.hidden_states[-1], output.last_hidden_state)
    assert max_diff(output.hidden_states[-1], outputs["v1_stable_layer_norm"]["alone.1.hidden_states.2"]) < TOLERANCE


def test_variant_configs_are_read_from_config_json(golden):
    configs = {variant: load(golden, variant).config for variant in VARIANTS}
    assert configs["deepnorm"].deepnorm and not configs["v1_like"].deepnorm
    assert configs["v1_stable_layer_norm"].do_stable_layer_norm
    assert configs["v1_stable_layer_norm"].attention_relax == 32.0
    assert configs["cqt"].feature_extractor_cqt and configs["cqt"].feature_extractor_cqt_bins == 84
    assert load(golden, "cqt").processor.sampling_rate == 16000
    assert load(golden, "v1_like").processor.sampling_rate == 24000
