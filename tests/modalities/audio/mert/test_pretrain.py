"""MERT pretraining: teachers (residual k-means, EnCodec, CQT), in-batch noise, the objective,
and `zoo pretrain mert` end to end (the loss falls; an interrupted run resumes exactly)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import MICRO_MERT, ctrl_c_at_step

from zoo.errors import ConfigError, InputError

RATE = 24000


def tone(frequency: float, seconds: float, rate: int = RATE) -> torch.Tensor:
    time = torch.arange(int(seconds * rate)) / rate
    return 0.5 * torch.sin(2 * math.pi * frequency * time)


def test_in_batch_noise_adds_segments_of_other_crops():
    from modalities.audio.mert.pretrain import mix_in_batch_noise

    torch.manual_seed(0)
    waves = torch.stack([torch.zeros(2000), torch.ones(2000), 2 * torch.ones(2000)])
    mixed = mix_in_batch_noise(waves, 1.0, (100, 300), (1, 3))
    assert torch.equal(waves, torch.stack([torch.zeros(2000), torch.ones(2000), 2 * torch.ones(2000)]))
    added = mixed - waves
    for row in range(3):
        assert added[row].abs().sum() > 0
        assert 100 <= int((added[row] != 0).sum()) <= 3 * 300 + 1
        assert set(added[row].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0} - {float(row)} | {0.0}
    assert torch.equal(mix_in_batch_noise(waves, 0.0, (100, 300), (1, 3)), waves)


def test_noise_segments_never_exceed_the_crop():
    from modalities.audio.mert.pretrain import mix_in_batch_noise

    torch.manual_seed(1)
    mixed = mix_in_batch_noise(torch.ones(2, 50), 1.0, (12000, 24000), (1, 3))
    assert mixed.shape == (2, 50) and bool((mixed >= 2).all())


def test_cqt_and_chroma_frames_line_up_with_encoder_frames():
    from modalities.audio.mert.model import constant_q
    from modalities.audio.mert.pretrain import CQT_BINS, acoustic_features, centred_cqt

    wave = tone(440.0, 1.0)
    frames = 1 + (len(wave) - 400) // 320
    cqt = centred_cqt(constant_q(RATE, 320, CQT_BINS), wave, 400, frames)
    assert cqt.shape == (frames, CQT_BINS)
    peak_bin = int(cqt[frames // 2].argmax())
    assert round(32.7 * 2 ** (peak_bin / 48)) in range(435, 446)
    features = acoustic_features(wave, RATE, 400, 320, constant_q(RATE, 320, 84))
    assert features.shape == (frames, 64 + 12)
    assert int(features[frames // 2, 64:].argmax()) == 9  # A is pitch class 9 counted from C


def test_residual_kmeans_codebooks_refine_each_other():
    from modalities.audio.mert.pretrain import fit_residual_kmeans

    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(400, 6, generator=generator) for _ in range(3)]
    quantiser = fit_residual_kmeans(features, codebooks=3, clusters=8, max_frames=10_000, seed=0)
    codes = quantiser.codes(features[0])
    assert codes.shape == (400, 3) and int(codes.max()) < 8

    def error(stages):
        residual = features[0].clone()
        for stage in stages:
            residual -= stage.centers[stage.assign(residual)] * stage.std + stage.mean
        return float(residual.pow(2).mean())

    errors = [error(quantiser.stages[:count]) for count in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_feature_weights_decide_what_the_codes_split():
    """Two independent features, two codes: the codes follow the feature weighted up."""
    from modalities.speech.hubert.pretrain import fit_clusters

    generator = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, (2000, 2), generator=generator).float() * 2 - 1
    features = [signs + 0.1 * torch.randn(2000, 2, generator=generator)]
    for heavy in (0, 1):
        weights = torch.ones(2)
        weights[heavy] = 3.0
        codes = fit_clusters(features, 2, seed=0, weights=weights).assign(features[0])
        agreement = (codes == (signs[:, heavy] > 0).long()).float().mean().item()
        assert max(agreement, 1 - agreement) > 0.99, heavy  # the split is along the heavy feature


def test_chroma_weight_scales_the_twelve_chroma_features():
    from modalities.audio.mert.pretrain import MEL_BINS, feature_weights

    weights = feature_weights(2.31)
    assert weights.shape == (MEL_BINS + 12,)
    assert torch.all(weights[:MEL_BINS] == 1) and torch.allclose(weights[MEL_BINS:], torch.tensor(2.31))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="--chroma-weight"):
            feature_weights(bad)


def test_encodec_teacher_through_transformers(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    from modalities.audio.mert.pretrain import encodec_codes, load_encodec

    torch.manual_seed(0)
    config = EncodecConfig(num_filters=4, hidden_size=16, codebook_size=1024, codebook_dim=16, num_lstm_layers=1,
                           target_bandwidths=[1.5, 6.0])
    EncodecModel(config).save_pretrained(tmp_path / "encodec")
    model = load_encodec(str(tmp_path / "encodec"))
    codes = encodec_codes(model, tone(220.0, 1.0), frames=74)
    assert codes.shape == (74, 8) and codes.dtype == torch.long and int(codes.max()) < 1024
    with pytest.raises(InputError, match="--teacher kmeans"):
        load_encodec(str(tmp_path / "missing"))


def micro_objective(**kwargs):
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig
    from modalities.audio.mert.pretrain import MertPretraining

    torch.manual_seed(0)
    encoder = MertEncoder(MertEncoderConfig(**{**MICRO_MERT, "sample_rate": RATE}))
    return MertPretraining(encoder, [8, 8], cqt_bins=12, final_dim=4, **kwargs)


def test_objective_combines_codes_penalty_and_cqt():
    objective = micro_objective()
    frames = 1 + (RATE - 400) // 320
    batch = {"input_values": torch.randn(3, RATE) * 0.1, "attention_mask": torch.ones(3, RATE, dtype=torch.long),
             "labels": torch.randint(0, 8, (3, frames, 2)), "cqt": torch.rand(3, frames, 12)}
    torch.manual_seed(0)
    output = objective(batch)
    logs = output.logs
    expected = logs["code_loss"] + 10 * logs["feature_penalty"] + logs["cqt_mse"]
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert 0.2 < logs["masked_fraction"] < 0.9
    output.loss.backward()
    assert objective.cqt_head.weight.grad is not None and objective.label_embeddings.grad is not None
    with pytest.raises(InputError, match="frames"):
        objective({**batch, "labels": batch["labels"][:, :-1]})


def test_front_end_gradient_is_scaled_by_feature_grad_mult():
    """The same batch, the same draws: the conv front end's gradient is 0.1 times the
    unscaled one (MERT's feature_grad_mult), the transformer's is unchanged."""
    frames = 1 + (RATE - 400) // 320
    batch = {"input_values": torch.randn(2, RATE) * 0.1, "attention_mask": torch.ones(2, RATE, dtype=torch.long),
             "labels": torch.randint(0, 8, (2, frames, 2)), "cqt": torch.rand(2, frames, 12)}
    grads = {}
    for mult in (1.0, 0.1):
        objective = micro_objective(feature_grad_mult=mult, mixture_prob=0.0).eval()
        torch.manual_seed(1)
        objective(batch).loss.backward()
        front = objective.encoder.model.feature_extractor.conv_layers[-1].conv.weight.grad
        grads[mult] = (front, objective.encoder.model.encoder.layers[0].attention.q_proj.weight.grad)
    assert torch.allclose(grads[0.1][0], 0.1 * grads[1.0][0], rtol=1e-4, atol=1e-9)
    assert torch.allclose(grads[0.1][1], grads[1.0][1], rtol=1e-4, atol=1e-9)


def test_log_cqt_targets_are_standardised_per_bin():
    """cqt_target="log": over the frames the scale was fitted on, each bin's target has
    mean 0 and standard deviation 1, whatever the bin's loudness."""
    objective = micro_objective(cqt_target="log")
    loudness = torch.logspace(-3, 0, 12)  # bins 1,000x apart
    cqts = [torch.rand(50, 12) * loudness, torch.rand(30, 12) * loudness]
    objective.fit_cqt_scale(cqts)
    targets = objective.cqt_targets(torch.cat(cqts))
    assert targets.mean(0).abs().max() < 1e-5 and (targets.std(0) - 1).abs().max() < 1e-5
    assert torch.equal(micro_objective().cqt_targets(cqts[0]), cqts[0])  # MERT's default: the magnitudes


def test_objective_refuses_bad_settings():
    with pytest.raises(ConfigError, match="mixture_prob"):
        micro_objective(mixture_prob=1.5)
    with pytest.raises(ConfigError, match="feature_grad_mult"):
        micro_objective(feature_grad_mult=2.0)
    with pytest.raises(ConfigError, match="mask_prob"):
        micro_objective(mask_prob=-0.1)
    with pytest.raises(ConfigError, match="cqt_target='db'"):
        micro_objective(cqt_target="db")


@pytest.fixture(scope="module")
def music_folder(tmp_path_factory):
    """Twelve 1.5 s two-note chords at 24 kHz as FLAC files."""
    import soundfile

    folder = tmp_path_factory.mktemp("music")
    rng = np.random.default_rng(0)
    for index in range(12):
        low, high = 110 * 2 ** (rng.integers(0, 24) / 12), 220 * 2 ** (rng.integers(0, 24) / 12)
        wave = (tone(low, 1.5) + tone(high, 1.5)).numpy() * 0.5
        soundfile.write(str(folder / f"chord_{index:02d}.flac"), wave, RATE)
    return folder


def pretrain(folder, out, *extra: str, status: int = 0) -> list[float]:
    from zoo.cli import main

    micro = [f"--set={name}={json.dumps(value)}" for name, value in MICRO_MERT.items() if name != "sample_rate"]
    assert main(["pretrain", "mert", "--data", str(folder), "-o", str(out), "--batch-size", "4",
                 "--codebooks", "2", "--clusters", "8", "--final-dim", "8", "--max-seconds", "1.0",
                 "--noise-seconds", "0.1", "0.3", "--no-progress", *micro, *extra]) == status
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def mean_of(rows: list[dict], key: str) -> float:
    return float(np.mean([row[key] for row in rows]))


def test_pretrain_loss_falls_and_encoder_loads(music_folder, tmp_path):
    import zoo

    log = pretrain(music_folder, tmp_path / "run", "--steps", "60", "--lr", "2e-3", "--warmup-steps", "5")
    for key in ("loss", "code_loss", "cqt_mse"):  # each teacher's term falls, not only the feature penalty
        assert mean_of(log[-10:], key) < 0.8 * mean_of(log[:10], key), key
    encoder = zoo.load(tmp_path / "run" / "encoder")
    assert type(encoder).__name__ == "MertEncoder" and encoder.processor.sampling_rate == RATE
    targets = torch.load(tmp_path / "run" / "labels.pt", weights_only=True)
    assert targets["codebook_sizes"] == [8, 8] and targets["cqt"][0].shape[1] == 336


def test_chroma_weight_changes_the_teacher(music_folder, tmp_path, capsys):
    runs = {weight: tmp_path / f"chroma-{weight}" for weight in ("1", "5")}
    for weight, out in runs.items():
        pretrain(music_folder, out, "--steps", "1", "--no-cqt", "--codebooks", "1", "--chroma-weight", weight)
    targets = {weight: torch.load(out / "labels.pt", weights_only=True) for weight, out in runs.items()}
    assert targets["5"]["source"].endswith("(chroma weight 5)")
    assert any(not torch.equal(a, b) for a, b in zip(targets["1"]["labels"], targets["5"]["labels"]))
    # rerun in the first folder with the second teacher: refused, not trained on the old labels
    with pytest.raises(AssertionError):
        pretrain(music_folder, runs["1"], "--steps", "2", "--no-cqt", "--codebooks", "1", "--chroma-weight", "5")
    assert "other settings (chroma_weight=1.0 then, 5.0 now)" in capsys.readouterr().err


def test_log_cqt_loss_falls(music_folder, tmp_path):
    from modalities.audio.mert.pretrain import cqt_bin_statistics

    log = pretrain(music_folder, tmp_path / "run", "--steps", "40", "--lr", "2e-3", "--warmup-steps", "5",
                   "--cqt-target", "log", "--feature-penalty", "0")
    assert mean_of(log[:5], "cqt_mse") > 0.5  # standardised targets: an untrained head is off by about 1 per bin
    assert mean_of(log[-10:], "cqt_mse") < 0.8 * mean_of(log[:10], "cqt_mse")
    # the run standardised with the statistics of its own CQT targets
    objective = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["objective"]
    mean, std = cqt_bin_statistics(torch.load(tmp_path / "run" / "labels.pt", weights_only=True)["cqt"])
    assert torch.equal(objective["cqt_mean"], mean) and torch.equal(objective["cqt_std"], std)


def test_interrupted_run_resumes_exactly(music_folder, tmp_path, monkeypatch):
    straight = pretrain(music_folder, tmp_path / "straight", "--steps", "6", "--checkpoint-every", "2")
    with ctrl_c_at_step(monkeypatch, 3):
        pretrain(music_folder, tmp_path / "resumed", "--steps", "6", "--checkpoint-every", "2", status=130)
    resumed = pretrain(music_folder, tmp_path / "resumed", "--steps", "6", "--checkpoint-every", "2")
    losses = [row["loss"] for row in resumed]
    assert losses == [row["loss"] for row in straight]  # noise, masks and crops are drawn again identically


def test_loss_weights_come_from_the_command_line(music_folder, tmp_path):
    log = pretrain(music_folder, tmp_path / "run", "--steps", "2", "--feature-penalty", "0", "--cqt-weight", "2")
    for row in log:
        assert row["loss"] == pytest.approx(row["code_loss"] + 2 * row["cqt_mse"], rel=1e-5)


def test_init_goes_on_from_the_embedded_model(music_folder, tmp_path, capsys):
    """`zoo pretrain mert --init mert-tiny` trains the embedded weights further (was only a random init)."""
    import zoo
    from zoo.cli import main

    args = ["pretrain", "mert", "--data", str(music_folder), "--batch-size", "4", "--codebooks", "1", "--clusters",
            "8", "--max-seconds", "1.0", "--noise-seconds", "0.1", "0.3", "--steps", "2", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "run"), "--init", "mert-tiny"]) == 0
    start, trained = zoo.load("mert-tiny"), zoo.load(tmp_path / "run" / "encoder")
    assert trained.config == start.config and trained.processor == start.processor
    steps = [float((value.float() - start.state_dict()[name].float()).abs().max())
             for name, value in trained.state_dict().items()]
    assert 0 < max(steps) < 0.01  # two AdamW steps of lr 5e-4 from those weights
    assert main([*args, "-o", str(tmp_path / "hubert"), "--init", "hubert-tiny-fsdd"]) == 2
    assert "holds a HubertEncoder, not a MertEncoder" in capsys.readouterr().err
