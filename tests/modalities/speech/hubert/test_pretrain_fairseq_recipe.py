"""HuBERT's and MERT's objectives against fairseq's recipe: masked counts evened out across the
batch (`compute_mask_indices`' require_same_masks), the feature penalty and the front end's
gradient scale (`features_pen` x 10, `feature_grad_mult` 0.1), MERT's min_masks 2.

The reference numbers were measured by running fairseq @3d262bb's `compute_mask_indices`
(plain numpy) on 10,000 rows: batches of 8 equal-length crops, mask_prob 0.8, span 10,
min_masks 2 (HuBERT's call).
"""

import argparse

import pytest
import torch

from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
from modalities.speech.hubert.pretrain import (
    HubertPretraining,
    compute_span_mask,
    equalise_mask_counts,
)
from modalities.speech.hubert_pretrain_options import add_arguments
from zoo.errors import ConfigError

MICRO = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)
#: fairseq's mean masked fraction per row for 8 crops of (250, 30) frames; rows alone give 0.569, 0.597
FAIRSEQ_BATCH_FRACTION = {250: 0.5058, 30: 0.4115}


def micro_objective(**kwargs) -> HubertPretraining:
    torch.manual_seed(0)
    return HubertPretraining(HubertEncoder(HubertEncoderConfig(**MICRO)), num_clusters=6, final_dim=8,
                             mask_length=3, **kwargs)


def batch_of(rows: int, samples: int = 8000) -> dict[str, torch.Tensor]:
    frames = 1 + (samples - 400) // 320
    generator = torch.Generator().manual_seed(0)
    return {"input_values": torch.randn(rows, samples, generator=generator) * 0.1,
            "attention_mask": torch.ones(rows, samples, dtype=torch.long),
            "labels": torch.randint(0, 6, (rows, frames), generator=generator)}


@pytest.mark.parametrize("frames", sorted(FAIRSEQ_BATCH_FRACTION))
def test_masked_fraction_of_a_batch_matches_fairseq(frames):
    generator = torch.Generator().manual_seed(0)
    fractions = []
    for _ in range(200):
        spans = compute_span_mask(torch.full((8,), frames), frames, 0.8, 10, min_masks=2, generator=generator)
        mask = equalise_mask_counts(spans, generator)
        assert not (mask & ~spans).any(), "evening out only unmasks frames"
        assert len(set(mask.sum(1).tolist())) == 1, "every row keeps the same count"
        fractions.append(mask.float().mean())
    assert float(torch.stack(fractions).mean()) == pytest.approx(FAIRSEQ_BATCH_FRACTION[frames], abs=0.012)


def test_equalising_keeps_the_fewest_and_a_random_subset():
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, 2:8] = True
    mask[1, 0:3] = True
    mask[2, 4:11] = True
    equal = equalise_mask_counts(mask, torch.Generator().manual_seed(0))
    assert equal.sum(1).tolist() == [3, 3, 3]
    assert torch.equal(equal[1], mask[1])
    assert not equalise_mask_counts(torch.zeros(0, 5, dtype=torch.bool)).any()


def spy_on_mask(objective) -> list[torch.Tensor]:
    """The masks the objective hands the encoder."""
    seen, encode = [], objective.encoder.encode_features

    def recording(*args, mask_time_indices=None, **kwargs):
        seen.append(mask_time_indices)
        return encode(*args, mask_time_indices=mask_time_indices, **kwargs)

    objective.encoder.encode_features = recording
    return seen


def test_hubert_objective_masks_equal_counts_per_row():
    objective = micro_objective().eval()
    masks = spy_on_mask(objective)
    torch.manual_seed(3)
    objective(batch_of(6))
    assert len(set(masks[0].sum(1).tolist())) == 1 and masks[0].any()


def test_hubert_loss_adds_ten_times_the_feature_penalty():
    objective = micro_objective().eval()
    torch.manual_seed(1)
    output = objective(batch_of(2))
    logs = output.logs
    assert logs["feature_penalty"] > 0
    assert output.loss.item() == pytest.approx(logs["code_loss"] + 10 * logs["feature_penalty"], rel=1e-5)
    without_penalty = micro_objective(feature_penalty=0.0).eval()
    torch.manual_seed(1)
    without = without_penalty(batch_of(2))
    assert without.loss.item() == pytest.approx(logs["code_loss"], rel=1e-5)


def test_hubert_front_end_gradient_is_scaled_by_feature_grad_mult():
    grads = {}
    for mult in (1.0, 0.1):
        objective = micro_objective(feature_grad_mult=mult).eval()
        torch.manual_seed(1)
        objective(batch_of(2)).loss.backward()
        grads[mult] = (objective.encoder.model.feature_extractor.conv_layers[-1].conv.weight.grad,
                       objective.encoder.model.encoder.layers[0].attention.q_proj.weight.grad)
    assert torch.allclose(grads[0.1][0], 0.1 * grads[1.0][0], rtol=1e-4, atol=1e-9)
    assert torch.allclose(grads[0.1][1], grads[1.0][1], rtol=1e-4, atol=1e-9)


def test_hubert_loss_settings_are_checked_and_on_the_command_line():
    with pytest.raises(ConfigError, match="feature_penalty=-1"):
        micro_objective(feature_penalty=-1.0)
    with pytest.raises(ConfigError, match="feature_grad_mult=2"):
        micro_objective(feature_grad_mult=2.0)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", "d", "-o", "o"])
    assert (args.feature_penalty, args.feature_grad_mult) == (10.0, 0.1)


def test_mert_masks_at_least_two_spans_and_equal_counts():
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig
    from modalities.audio.mert.pretrain import MertPretraining

    torch.manual_seed(0)
    encoder = MertEncoder(MertEncoderConfig(**MICRO, sample_rate=16000))
    objective = MertPretraining(encoder, [8, 8], cqt_bins=0, final_dim=4, mask_prob=0.0, mixture_prob=0.0).eval()
    masks = spy_on_mask(objective)
    batch = batch_of(4)
    batch["labels"] = torch.stack([batch["labels"] % 8] * 2, dim=-1)
    torch.manual_seed(2)
    output = objective(batch)
    counts = masks[0].sum(1).tolist()
    assert len(set(counts)) == 1 and 5 <= counts[0] <= 10, "mask_prob 0 still masks min_masks = 2 spans of 5"
    assert torch.isfinite(output.loss)


def test_mfcc_features_are_fairseqs_100_hz_features_read_at_50_hz():
    """fairseq's dump_mfcc_feature.py: Kaldi MFCC at its defaults (25 ms every 10 ms), deltas
    over those 100 Hz frames; its HuBERT reads label 2t for frame t."""
    import torchaudio

    from modalities.speech.hubert.pretrain import mfcc_features

    wave = torch.sin(torch.arange(11_999) * 0.05) * torch.linspace(0, 1, 11_999) + 0.1 * torch.randn(11_999)
    cepstra = torchaudio.compliance.kaldi.mfcc(waveform=wave[None], sample_frequency=16000, use_energy=False).T
    deltas = torchaudio.functional.compute_deltas(cepstra)
    reference = torch.cat([cepstra, deltas, torchaudio.functional.compute_deltas(deltas)]).T[::2]
    ours = mfcc_features(wave, 16000, 400, 320)
    assert ours.shape == (1 + (11_999 - 400) // 320, 39) == reference.shape
    assert (ours - reference).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="hop=321"):
        mfcc_features(wave, 16000, 400, 321)


def test_pretraining_sizes_take_fairseqs_dropouts():
    """fairseq's base yaml: dropout_input 0.1 (after the projection), encoder_layerdrop 0.05,
    dropout 0.1; large / xlarge: no dropout at all. The released checkpoints' configs keep theirs."""
    from modalities.speech.hubert.model import VARIANTS
    from modalities.speech.hubert.pretrain import encoder_config

    def dropouts(config):
        return config.feat_proj_dropout, config.layerdrop, config.hidden_dropout, config.attention_dropout

    assert dropouts(encoder_config("base", [])) == (0.1, 0.05, 0.1, 0.1)
    assert dropouts(encoder_config("large", [])) == dropouts(encoder_config("xlarge", [])) == (0, 0, 0, 0)
    assert encoder_config("base", ["layerdrop=0.0"]).layerdrop == 0.0
    assert "layerdrop" not in VARIANTS["base"] and encoder_config(None, []).layerdrop == 0.0
