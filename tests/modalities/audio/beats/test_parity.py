"""Parity with the official unilm BEATs code on ../shared/golden/beats (tiny random weights).

Every stage is compared with what the official code computes for each item alone
(unpadded): upstream's batch mask lets padding into real patches, the zoo's must not, so
the zoo's batched rows are held to the official item-alone outputs too.

Tolerances are float32 rounding across CPUs: the fixtures were made on another x86 CPU, and
MKL picks FFT/GEMM kernels per CPU (its AVX2 and AVX-512 paths round differently; with
MKL_CBWR=COMPATIBLE the diffs here drop to <= 2.7e-6). The golden README measured 1.8e-6
between 1 and 2 threads.
"""

from __future__ import annotations

import pytest
import torch
from helpers import shared_path

#: encoder stages (outputs of scale 2-6): max abs diff measured 1.67e-5 on AVX-512 (Intel Xeon),
#: 2.0e-5 with MKL_CBWR=AVX2 (+ ATEN_CPU_CAPABILITY=avx2) on that Xeon, < 1e-5 on AVX2 (AMD EPYC,
#: where the previous bound 1e-5 passed); 2x the largest (~80 float32 ulps at scale 5)
TOLERANCE = 4e-5
#: the log-mel fbank (scale 2.4): max abs diff measured 4.05e-5 on AVX-512, 5.2e-5 with
#: MKL_CBWR=AVX2 on the Xeon, < 1e-5 on AVX2/AMD. The log turns the FFT's rounding, which is
#: absolute (relative to the frame's loudest bin), into a relative error of the quiet mel bins:
#: the largest diffs sit in bins ~1e-8 as loud as the frame's peak (value ~ -0.86), where
#: 5e-5 is ~7e-4 of the bin's energy after the (2 * 6.55582) normalisation; bins above 0 differ
#: by <= 3.7e-6 on AVX-512
FBANK_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    folder = shared_path("golden", "beats")
    files = {name: load_file(str(folder / f"{name}.safetensors"))
             for name in ("inputs", "outputs_pretrained", "outputs_finetuned", "outputs_tokenizer")}
    files["folder"] = folder
    return files


def items(golden) -> list[torch.Tensor]:
    inputs = golden["inputs"]
    return [wave[: int(length)] for wave, length in zip(inputs["source"], inputs["lengths"])]


def convert(golden, name: str):
    from modalities.audio.beats.convert import encoder_from_official

    return encoder_from_official(golden["folder"] / f"beats_tiny_{name}.pt")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_front_end_matches_official_on_real_frames(golden):
    encoder = convert(golden, "pretrained")
    reference = golden["outputs_pretrained"]
    waves = items(golden)
    for index, wave in enumerate(waves):
        fbank = encoder.fbanks(wave[None], torch.tensor([len(wave)]))[0]
        frames = 1 + (len(wave) - 400) // 160
        assert fbank.shape == (frames, 128)
        assert max_diff(fbank, reference["fbank"][index, :frames]) < FBANK_TOLERANCE
    # the longest item is unpadded in the golden batch: every stage of it is comparable
    longest = waves[1]
    with torch.no_grad():
        fbank = encoder.fbanks(longest[None], torch.tensor([len(longest)]))
        patches = encoder.patch_embedding(fbank.unsqueeze(1)).flatten(2).transpose(1, 2)
        assert max_diff(encoder.layer_norm(patches)[0], reference["patch_ln"][1]) < TOLERANCE
        tokens = encoder.patch_tokens(fbank)
        assert max_diff(tokens[0], reference["proj"][1]) < TOLERANCE
        assert max_diff(encoder.transformer.pos_conv(tokens)[0], reference["pos_conv_out"][1]) < TOLERANCE


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_every_layer_matches_official(golden, implementation):
    encoder = convert(golden, "pretrained")
    for layer in encoder.transformer.layers:
        layer.self_attn.implementation = implementation
    reference = golden["outputs_pretrained"]
    longest = items(golden)[1]
    with torch.no_grad():
        output = encoder(longest[None], output_hidden_states=True)
    names = ["enc_in", "layer0", "layer1"]
    assert len(output.hidden_states) == len(names)
    for state, name in zip(output.hidden_states, names):
        assert max_diff(state[0], reference[name][1]) < TOLERANCE, name
    assert max_diff(output.last_hidden_state[0], reference["features"][1]) < TOLERANCE


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_batched_rows_equal_official_item_alone(golden, implementation):
    encoder = convert(golden, "pretrained")
    for layer in encoder.transformer.layers:
        layer.self_attn.implementation = implementation
    reference = golden["outputs_pretrained"]
    inputs = golden["inputs"]
    with torch.no_grad():
        batched = encoder(inputs["source"], attention_mask=(~inputs["padding_mask"]).long())
        for index, wave in enumerate(items(golden)):
            alone = reference[f"alone{index}_features"][0]
            count = int(batched.mask[index].sum())
            assert count == len(alone) == int((~reference[f"alone{index}_padding_mask_out"]).sum())
            assert not batched.mask[index, count:].any()
            assert max_diff(batched.last_hidden_state[index, :count], alone) < TOLERANCE
            single = encoder(wave[None]).last_hidden_state[0]
            assert max_diff(single, alone) < TOLERANCE


def test_attention_paths_agree_in_a_padded_batch(golden):
    encoder = convert(golden, "pretrained")
    inputs = golden["inputs"]
    outputs = {}
    for implementation in ("sdpa", "eager"):
        for layer in encoder.transformer.layers:
            layer.self_attn.implementation = implementation
        with torch.no_grad():
            outputs[implementation] = encoder(inputs["source"], attention_mask=(~inputs["padding_mask"]).long())
    mask = outputs["sdpa"].mask
    assert max_diff(outputs["sdpa"].last_hidden_state[mask], outputs["eager"].last_hidden_state[mask]) < TOLERANCE


def test_finetuned_probabilities_and_frame_logits_match_official(golden):
    tagger = convert(golden, "finetuned")
    reference = golden["outputs_finetuned"]
    waves = items(golden)
    probabilities = tagger.probabilities(waves, sampling_rate=16000)
    for index in range(len(waves)):
        assert max_diff(probabilities[index], reference[f"alone{index}_probs"][0]) < TOLERANCE
        with torch.no_grad():
            tokens = tagger.encoder(waves[index][None]).last_hidden_state
            assert max_diff(tagger.head(tokens)[0], reference[f"alone{index}_frame_logits"][0]) < TOLERANCE
    top = tagger.predict(waves, top_k=3, sampling_rate=16000)
    for index, row in enumerate(top):
        expected = reference[f"alone{index}_probs"][0].topk(3)
        assert [name for name, _ in row] == [f"/m/0gold0{i}" for i in expected.indices.tolist()]
        assert [score for _, score in row] == pytest.approx(expected.values.tolist(), abs=TOLERANCE)


def test_tokenizer_labels_match_official(golden):
    tokenizer = convert(golden, "tokenizer")
    reference = golden["outputs_tokenizer"]
    waves = items(golden)
    labels = tokenizer.tokenize(waves, sampling_rate=16000)
    for index, wave in enumerate(waves):
        assert torch.equal(labels[index], reference[f"alone{index}_labels"].view(-1))
        with torch.no_grad():
            tokens = tokenizer(wave[None]).last_hidden_state
            assert max_diff(tokens[0], reference[f"alone{index}_encoder_out"][0]) < TOLERANCE
            assert max_diff(tokenizer.quantize_layer(tokens)[0], reference[f"alone{index}_quant_in"][0]) < TOLERANCE
    # the unpadded item of the official batch (flattened, 112 patches per item) agrees too
    assert torch.equal(labels[1], reference["labels"][112:224])
