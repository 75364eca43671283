"""MERT pretraining: teachers (residual k-means, EnCodec, CQT), in-batch noise, the objective,
and `zoo pretrain mert` end to end (the loss falls; an interrupted run resumes exactly)."""

from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
import pytest
import torch
from helpers import MICRO_MERT, ctrl_c_at_step

from zoo.frame_rows import PASS_FILE
from zoo.run_folders import RUN_LOCK_FILE
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
        codes = fit_clusters(features, 2, seed=0, weights=weights, standardise=True, inits=3).assign(features[0])
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
    if not torch.cuda.is_available():  # it coded the corpus on the CPU whatever --device said
        with pytest.raises(ConfigError, match="cannot move the model to device='cuda'"):
            load_encodec(str(tmp_path / "encodec"), "cuda")


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
    log = out / "log.jsonl"  # none where the run stopped before training
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


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
    assert targets["codebook_sizes"] == [8, 8] and targets["labels"][0].dtype == torch.uint8
    assert np.load(tmp_path / "run" / "cqt.npy", mmap_mode="r").shape == (int(targets["cqt"]["frames"].sum()), 336)


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
    from zoo.frame_rows import FrameRows

    log = pretrain(music_folder, tmp_path / "run", "--steps", "40", "--lr", "2e-3", "--warmup-steps", "5",
                   "--cqt-target", "log", "--feature-penalty", "0")
    assert mean_of(log[:5], "cqt_mse") > 0.5  # standardised targets: an untrained head is off by about 1 per bin
    assert mean_of(log[-10:], "cqt_mse") < 0.8 * mean_of(log[:10], "cqt_mse")
    # the run standardised with the statistics of its own CQT targets
    objective = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["objective"]
    record = torch.load(tmp_path / "run" / "labels.pt", weights_only=True)["cqt"]
    mean, std = cqt_bin_statistics(list(FrameRows.from_record(tmp_path / "run", record)))
    assert torch.equal(objective["cqt_mean"], mean) and torch.equal(objective["cqt_std"], std)


@pytest.mark.parametrize("cqt_target", ["magnitude", "log"])
def test_interrupted_run_resumes_exactly(music_folder, tmp_path, monkeypatch, cqt_target):
    """The resumed run reads its targets back (codes from labels.pt, CQT crops from cqt.npy)."""
    options = ["--steps", "6", "--checkpoint-every", "2", "--cqt-target", cqt_target]
    straight = pretrain(music_folder, tmp_path / "straight", *options)
    with ctrl_c_at_step(monkeypatch, 3):
        pretrain(music_folder, tmp_path / "resumed", *options, status=130)
    assert (tmp_path / "resumed" / "cqt.npy").read_bytes() == (tmp_path / "straight" / "cqt.npy").read_bytes()
    resumed = pretrain(music_folder, tmp_path / "resumed", *options)
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


# ---------------------------------------------------------------------------------------
# Targets in bounded memory: CQT in OUT/cqt.npy read a crop at a time, codes in small integers


def test_codes_take_the_smallest_integer_type_of_their_codebooks():
    from modalities.audio.mert.pretrain import code_dtype

    cases = {(8,): torch.uint8, (256, 2): torch.uint8, (257,): torch.int16, (1024,): torch.int16,
             (32768,): torch.int16, (32769,): torch.int32, (2**31,): torch.int32, (2**31 + 1,): torch.int64}
    assert {sizes: code_dtype(sizes) for sizes in cases} == cases


def test_loss_is_the_same_for_small_integer_codes():
    """The objective takes its codes as long a batch at a time: int16 and uint8 codes give the loss
    of int64 ones exactly."""
    frames = 1 + (RATE - 400) // 320
    batch = {"input_values": torch.randn(2, RATE) * 0.1, "attention_mask": torch.ones(2, RATE, dtype=torch.long),
             "labels": torch.randint(0, 8, (2, frames, 2)), "cqt": torch.rand(2, frames, 12)}
    losses = []
    for dtype in (torch.int64, torch.int16, torch.uint8):
        objective = micro_objective()
        torch.manual_seed(3)
        output = objective({**batch, "labels": batch["labels"].to(dtype)})
        losses.append((output.loss.item(), output.logs["accuracy"]))
    assert losses[1] == losses[0] and losses[2] == losses[0]


def test_cqt_statistics_stream_over_blocks():
    """Per-bin statistics read a block of frames at a time equal those of all frames at once
    (torch.cat in float64) within 1e-10 (relative to the bin's scale), whatever the block size."""
    from modalities.audio.mert.pretrain import cqt_bin_moments, cqt_bin_statistics, log_cqt

    generator = torch.Generator().manual_seed(0)
    loudness = torch.logspace(-3, 0, 12)
    cqts = [(torch.rand(frames, 12, generator=generator) * loudness).half() for frames in (50, 1, 33, 200)]
    frames = torch.cat([log_cqt(cqt).double() for cqt in cqts])
    for rows in (1, 7, 64, 10_000):
        mean, std = cqt_bin_moments(cqts, rows)
        assert (mean - frames.mean(0)).abs().max() <= 1e-10 * frames.mean(0).abs().max()
        assert ((std - frames.std(0)) / frames.std(0)).abs().max() <= 1e-10
        mean, std = cqt_bin_statistics(cqts, rows)
        assert torch.equal(mean, frames.mean(0).float()) and torch.equal(std, frames.std(0).float())


def test_cqt_file_holds_each_recording_and_batches_crop_it(music_folder, tmp_path):
    """OUT/cqt.npy holds each recording's fp16 CQT (computed here from the waveform) exactly, and the
    CQT of every batch is those whole-recording rows cropped as the waveform is, exactly."""
    from modalities.audio.mert.model import constant_q
    from modalities.audio.mert.pretrain import CQT_BINS, centred_cqt
    from zoo.audio_crops import CropBatches, frame_count, load_waves
    from zoo.frame_rows import FrameRows

    pretrain(music_folder, tmp_path / "run", "--steps", "1")
    targets = torch.load(tmp_path / "run" / "labels.pt", weights_only=True)
    rows = FrameRows.from_record(tmp_path / "run", targets["cqt"])
    waves = load_waves(sorted(music_folder.glob("*.flac")), micro_objective().encoder.processor)
    transform = constant_q(RATE, 320, CQT_BINS)
    whole = [centred_cqt(transform, wave, 400, frame_count(wave.numel(), 400, 320)).half() for wave in waves]
    assert len(rows) == len(whole) and all(torch.equal(rows[i], cqt) for i, cqt in enumerate(whole))
    arguments = (waves, targets["labels"], 4, 50, 400, 320, 0)
    from_file, held = CropBatches(*arguments, extra={"cqt": rows}), CropBatches(*arguments, extra={"cqt": whole})
    for index in range(8):
        batch, expected = from_file.batch(index), held.batch(index)
        assert batch["cqt"].dtype == torch.float16 and batch["cqt"].shape[1] == 50
        assert all(torch.equal(batch[key], expected[key]) for key in expected)


def test_cqt_rows_read_only_the_rows_asked_for(tmp_path, monkeypatch):
    """A crop reads its rows from the file, not its recording's (nor the corpus's)."""
    from zoo.frame_rows import FrameRows, frame_rows_writer

    cqts = [torch.randn(frames, 6).half() for frames in (10, 40, 7)]
    with frame_rows_writer(tmp_path / "rows.npy", [10, 40, 7], 6, torch.float16) as append:
        for cqt in cqts:
            append(cqt)
    rows = FrameRows(tmp_path / "rows.npy", [10, 40, 7])
    counts = []
    real_fromfile = np.fromfile
    monkeypatch.setattr(np, "fromfile", lambda *args, **kwargs: counts.append(kwargs["count"]) or real_fromfile(
        *args, **kwargs))
    assert torch.equal(rows.rows(1, 5, 3), cqts[1][5:8]) and counts == [3 * 6]
    assert np.array_equal(np.load(tmp_path / "rows.npy"), torch.cat(cqts).numpy())
    with pytest.raises(IndexError, match="recording 2"):
        rows.rows(2, 5, 3)


def test_cqt_file_is_written_whole_or_not_at_all(tmp_path):
    from zoo.frame_rows import frame_rows_writer

    with pytest.raises(RuntimeError, match="teacher failed"):
        with frame_rows_writer(tmp_path / "rows.npy", [3, 4], 6, torch.float16) as append:
            append(torch.zeros(3, 6, dtype=torch.float16))
            raise RuntimeError("teacher failed")
    with pytest.raises(InputError, match=r"expects \(4, 6\)"):
        with frame_rows_writer(tmp_path / "rows.npy", [3, 4], 6, torch.float16) as append:
            append(torch.zeros(3, 6, dtype=torch.float16))
            append(torch.zeros(5, 6, dtype=torch.float16))
    with pytest.raises(InputError, match="rows of 1 recordings"):
        with frame_rows_writer(tmp_path / "rows.npy", [3, 4], 6, torch.float16) as append:
            append(torch.zeros(3, 6, dtype=torch.float16))
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def cut_file(path):
    path.write_bytes(path.read_bytes()[:-672])


def other_rows(path):
    data = bytearray(path.read_bytes())
    data[128:800] = bytes(672)  # the first row, which the fingerprint reads
    path.write_bytes(bytes(data))


def other_run(path):
    path.unlink()
    (path.parent.parent / "other" / "cqt.npy").rename(path)


@pytest.mark.parametrize("damage, message", [
    (cut_file, "was cut or half written"),
    (other_rows, "holds other rows than its labels recorded"),
    (lambda path: path.unlink(), "is missing"),
    (other_run, r"holds rows of shape \(\d+, 336\), its labels record"),
])
def test_a_damaged_or_mismatched_cqt_file_is_refused(music_folder, tmp_path, capsys, damage, message):
    """A rerun checks cqt.npy against labels.pt, and names the file and the fix when it does not match."""
    pretrain(music_folder, tmp_path / "run", "--steps", "1")
    pretrain(music_folder, tmp_path / "other", "--steps", "1", "--exclude", "chord_00.flac")
    damage(tmp_path / "run" / "cqt.npy")
    capsys.readouterr()
    pretrain(music_folder, tmp_path / "run", "--steps", "1", status=2)
    error = capsys.readouterr().err
    assert str(tmp_path / "run" / "cqt.npy") in error and re.search(message, error), error
    assert "delete it and the labels.pt beside it (and checkpoint.pt)" in error


def test_labels_of_an_older_zoo_holding_the_cqt_are_refused(music_folder, tmp_path, capsys):
    """labels.pt as the zoo wrote it before cqt.npy ("cqt": a list of (T, Q) tensors): refused,
    saying to delete it, rather than loaded whole into memory and trained on."""
    from zoo.frame_rows import FrameRows

    out = tmp_path / "run"
    pretrain(music_folder, out, "--steps", "1")
    targets = torch.load(out / "labels.pt", weights_only=True)
    old = {**targets, "cqt": list(FrameRows.from_record(out, targets["cqt"])),
           "labels": [codes.long() for codes in targets["labels"]]}
    torch.save(old, out / "labels.pt")
    (out / "cqt.npy").unlink()
    capsys.readouterr()
    pretrain(music_folder, out, "--steps", "1", status=2)
    error = capsys.readouterr().err
    assert f"{out / 'labels.pt'} holds its CQT targets itself" in error
    assert "delete it (and checkpoint.pt) to compute them again into cqt.npy" in error


# ---------------------------------------------------------------------------------------
# The k-means teacher in bounded memory: features in OUT/features.npy, residuals computed when read


def written_rows(path, rows: list[torch.Tensor]):
    from zoo.frame_rows import FrameRows, frame_rows_writer

    with frame_rows_writer(path, [len(block) for block in rows], rows[0].shape[1], rows[0].dtype) as append:
        for block in rows:
            append(block)
    return FrameRows(path, [len(block) for block in rows])


def held_residual_kmeans(features, codebooks, clusters, max_frames, seed):
    """The residual k-means as it was fitted with every recording's residual held: the reference."""
    from modalities.speech.hubert.pretrain import fit_clusters

    residuals, stages = [f.float() for f in features], []
    for round_ in range(codebooks):
        stages.append(fit_clusters(residuals, clusters, max_frames, seed + round_, standardise=True, inits=3))
        residuals = [r - stages[-1].centroids(stages[-1].assign(r)) for r in residuals]
    return stages


@pytest.mark.parametrize("max_frames", [10_000, 500])  # every frame, and 500 drawn at random
def test_residual_kmeans_holds_no_recording_while_it_fits(tmp_path, monkeypatch, max_frames):
    """Fitted on features read from their file, each round draws its frames from residuals computed
    as they are read: while a round is fitted, no recording's features or residuals are held (the
    old list of residuals held all 3), and the stages and codes are those of the held residuals
    (torch.equal)."""
    import gc

    from modalities.audio.mert import pretrain as mert

    lengths = (401, 403, 409)  # recordings' rows, told apart from every other tensor by their length
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(frames, 6, generator=generator) * torch.arange(1.0, 7.0) for frames in lengths]
    rows = written_rows(tmp_path / "features.npy", features)
    held, fit = [], mert.fit_clusters

    def counting_fit(residuals, *args, **kwargs):
        gc.collect()
        held.append(sum(type(value) is torch.Tensor and value.dim() == 2 and len(value) in lengths
                        for value in gc.get_objects()))
        return fit(residuals, *args, **kwargs)

    expected = held_residual_kmeans(features, 3, 8, max_frames, 0)
    del features
    monkeypatch.setattr(mert, "fit_clusters", counting_fit)
    quantiser = mert.fit_residual_kmeans(rows, codebooks=3, clusters=8, max_frames=max_frames, seed=0)
    for stage, reference in zip(quantiser.stages, expected, strict=True):
        assert all(torch.equal(getattr(stage, name), getattr(reference, name)) for name in ("centers", "mean", "std"))
    assert all(torch.equal(quantiser.codes(rows[index]), mert.ResidualKMeans(expected).codes(rows[index]))
               for index in range(len(rows)))
    assert held == [0, 0, 0]



@pytest.mark.parametrize("max_frames", [10_000, 500])
def test_each_round_computes_each_recordings_residual_once(tmp_path, monkeypatch, max_frames):
    """`drawn_frames` counts the rows of `StageResiduals` from its `frames`: it took each residual's
    length by computing it, so every round computed every recording's residual twice."""
    from modalities.audio.mert import pretrain as mert

    generator = torch.Generator().manual_seed(0)
    rows = written_rows(tmp_path / "features.npy", [torch.randn(frames, 6, generator=generator)
                                                    for frames in (401, 403, 409)])
    calls, residual = [], mert.ResidualKMeans.residual

    def counted(self, features):
        calls.append(len(features))
        return residual(self, features)

    monkeypatch.setattr(mert.ResidualKMeans, "residual", counted)
    mert.fit_residual_kmeans(rows, codebooks=3, clusters=8, max_frames=max_frames, seed=0)
    assert calls == [401, 403, 409] * 3

def mert_teacher_args(*options: str):
    from modalities.audio.mert_pretrain_options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--data", ".", "-o", ".", "--codebooks", "2", "--clusters", "8", *options])


def test_kmeans_features_pass_through_a_file_deleted_once_coded(music_folder, tmp_path, monkeypatch):
    """The k-means teacher reads each recording's log-mel + chroma from OUT/features.npy (the features
    of the waveform, torch.equal), which is gone once labels.pt holds the codes: not before, or a kill
    while labels.pt is written made the rerun do the whole pass again. A k-means that fails leaves
    the pass's files to its rerun (the command's refusal removes them, `undone_if_refused`)."""
    from modalities.audio.mert import pretrain as mert
    from modalities.speech.hubert import pretrain as hubert_pretrain
    from zoo.audio_crops import RecordingFiles, load_waves
    from zoo.frame_rows import FrameRows

    encoder = micro_objective().encoder
    files = sorted(music_folder.glob("*.flac"))
    waves = load_waves(files, encoder.processor)
    expected = mert.teacher_features(waves, RATE, 400, 320)
    seen, fit = [], mert.fit_residual_kmeans

    def checking_fit(features, *args, **kwargs):
        seen.append((isinstance(features, FrameRows) and features.path == tmp_path / mert.FEATURES_FILE
                     and features.path.is_file(), all(torch.equal(features[index], wanted)
                                                      for index, wanted in enumerate(expected))))
        return fit(features, *args, **kwargs)

    monkeypatch.setattr(mert, "fit_residual_kmeans", checking_fit)
    args = mert_teacher_args()

    def labelled():
        return mert.cached_labels(tmp_path, files, {}, lambda: mert.stored_targets(mert.make_targets(
            args, encoder, RecordingFiles(files, encoder.processor), tmp_path / mert.CQT_FILE)), music_folder)

    def killed(path, obj):
        if path.name == mert.LABELS_FILE:
            raise KeyboardInterrupt
        saving(path, obj)

    saving = hubert_pretrain.atomic_torch_save
    monkeypatch.setattr(hubert_pretrain, "atomic_torch_save", killed)
    with pytest.raises(KeyboardInterrupt):  # killed while labels.pt is written: the pass's files are kept
        labelled()
    assert {mert.FEATURES_FILE, PASS_FILE} <= {path.name for path in tmp_path.iterdir()}
    monkeypatch.setattr(hubert_pretrain, "atomic_torch_save", saving)
    targets = labelled()
    assert seen == [(True, True), (True, True)]
    assert sorted(path.name for path in tmp_path.iterdir()) == [mert.CQT_FILE, mert.LABELS_FILE]  # no pass files
    (tmp_path / mert.LABELS_FILE).unlink()
    quantiser = fit(expected, 2, 8, args.kmeans_frames, args.seed, mert.feature_weights(1.0))
    assert all(torch.equal(codes, quantiser.codes(features).to(torch.uint8))
               for codes, features in zip(targets["labels"], expected, strict=True))
    with pytest.raises(ConfigError, match="cannot make 100000 clusters"):
        mert.make_targets(mert_teacher_args("--clusters", "100000"), encoder,
                          RecordingFiles(files, encoder.processor), tmp_path / mert.CQT_FILE)
    assert sorted(path.name for path in tmp_path.iterdir()) == [PASS_FILE, mert.CQT_FILE, mert.FEATURES_FILE]
    monkeypatch.setattr(mert, "acoustic_features", None)  # the rerun computes no features: it reads the kept ones
    again = labelled()
    assert all(torch.equal(a, b) for a, b in zip(again["labels"], targets["labels"], strict=True))
    assert sorted(path.name for path in tmp_path.iterdir()) == [mert.CQT_FILE, mert.LABELS_FILE]


def stopped_at_call(monkeypatch, module, name: str, call: int) -> list[int]:
    """`module.name` raises KeyboardInterrupt (Ctrl-C) at its `call`-th call; the list counts the calls."""
    calls, function = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return function(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_stopped_teachers_pass_goes_on_where_it_stopped(music_folder, tmp_path, monkeypatch, capsys):
    """Was: a rerun computed every recording's targets again (9 min for FSDD's 3,000 clips), so a
    run on a machine lent for less than its pass never got to train."""
    from modalities.audio.mert import pretrain as mert

    straight = tmp_path / "straight"
    pretrain(music_folder, straight, "--steps", "1")
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        # centred_cqt makes a recording's chroma, then its CQT: recording 2's features are written, its CQT is not
        stopped_at_call(patch, mert, "centred_cqt", 6)
        pretrain(music_folder, out, "--steps", "1", status=130)
    assert {path.name for path in out.iterdir()} >= {PASS_FILE, ".cqt.npy.partial", ".features.npy.partial"}
    capsys.readouterr()
    with monkeypatch.context() as patch:
        calls = stopped_at_call(patch, mert, "acoustic_features", 0)
        pretrain(music_folder, out, "--steps", "1")
    assert len(calls) == 12 - 2 and "going on from recording 3 of 12" in capsys.readouterr().err
    assert (out / mert.CQT_FILE).read_bytes() == (straight / mert.CQT_FILE).read_bytes()
    resumed, whole = (torch.load(run / mert.LABELS_FILE, weights_only=True) for run in (out, straight))
    assert all(torch.equal(a, b) for a, b in zip(resumed["labels"], whole["labels"], strict=True))
    assert resumed["cqt"]["fingerprint"] == whole["cqt"]["fingerprint"]
    assert [path.name for path in out.iterdir() if path.name.startswith(".")] == [RUN_LOCK_FILE]  # no partial file


def test_a_run_stopped_in_kmeans_computes_no_targets_again(music_folder, tmp_path, monkeypatch):
    from modalities.audio.mert import pretrain as mert

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stopped_at_call(patch, mert, "fit_residual_kmeans", 1)
        pretrain(music_folder, out, "--steps", "1", status=130)
    assert {PASS_FILE, mert.CQT_FILE, mert.FEATURES_FILE} <= {path.name for path in out.iterdir()}
    with monkeypatch.context() as patch:
        calls = stopped_at_call(patch, mert, "acoustic_features", 0)
        pretrain(music_folder, out, "--steps", "1")
    assert len(calls) == 0 and (out / "encoder").is_dir()


def test_kmeans_goes_on_with_the_codebook_a_stop_or_the_time_limit_left(music_folder, tmp_path, monkeypatch, capsys):
    """Was: k-means started over after a stop and ran past a time limit, so one slice of a lent
    machine had to hold all of it (FSDD on one thread: most of a 325 s slice). Each codebook is
    now kept as it is fitted, and the codes come out as a straight run's (torch.equal)."""
    from modalities.audio.mert import pretrain as mert

    straight = tmp_path / "straight"
    pretrain(music_folder, straight, "--steps", "1", "--codebooks", "3")
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        stopped_at_call(patch, mert, "fit_clusters", 2)  # Ctrl-C in codebook 2: codebook 1 is kept
        pretrain(music_folder, out, "--steps", "1", "--codebooks", "3", status=130)
    kept = torch.load(out / mert.KMEANS_FILE, weights_only=True)
    assert len(mert.fitted_stages(out / mert.KMEANS_FILE, kept["record"])) == 1
    assert mert.fitted_stages(out / mert.KMEANS_FILE, {**kept["record"], "seed": 7}) == []  # another run's
    assert mert.fitted_stages(out / "missing.pt", kept["record"]) == []
    capsys.readouterr()
    with monkeypatch.context() as patch:
        calls = stopped_at_call(patch, mert, "fit_clusters", 0)
        pretrain(music_folder, out, "--steps", "1", "--codebooks", "3", "--time-limit", "0")
    err = capsys.readouterr().err
    assert len(calls) == 1 and "going on from k-means codebook 2 of 3" in err
    assert "time limit (0 s) reached making the teachers' targets: 2 of 3 k-means codebooks fitted" in err
    with monkeypatch.context() as patch:
        calls = stopped_at_call(patch, mert, "fit_clusters", 0)
        pretrain(music_folder, out, "--steps", "1", "--codebooks", "3", "--time-limit", "0")  # the last: no stop
    assert len(calls) == 1 and (out / "encoder").is_dir()
    stopped, whole = (torch.load(run / mert.LABELS_FILE, weights_only=True) for run in (out, straight))
    assert all(torch.equal(a, b) for a, b in zip(stopped["labels"], whole["labels"], strict=True))
    assert [path.name for path in out.iterdir() if path.name.startswith(".")] == [RUN_LOCK_FILE]  # kept codebooks gone
    (out / mert.KMEANS_FILE).write_bytes(b"not a torch file")
    assert mert.fitted_stages(out / mert.KMEANS_FILE, kept["record"]) == []


def test_the_time_limit_stops_the_teachers_pass_for_a_rerun_to_go_on(music_folder, tmp_path, monkeypatch, capsys):
    """Was: --time-limit covered training only, so a slice of a lent machine spent in the pass
    was killed by the machine, losing the recording under way and any k-means begun after it."""
    from modalities.audio.mert import pretrain as mert

    straight = tmp_path / "straight"
    pretrain(music_folder, straight, "--steps", "1")
    out = tmp_path / "sliced"
    capsys.readouterr()
    pretrain(music_folder, out, "--steps", "1", "--time-limit", "0")  # a call does one recording at least
    assert "time limit (0 s) reached making the teachers' targets: 1 of 12 recordings'" in capsys.readouterr().err
    assert not (out / "log.jsonl").exists() and not (out / mert.LABELS_FILE).exists()
    with monkeypatch.context() as patch:
        # from recording 2 on, a recording's chroma is call 2k - 1: Ctrl-C in recording 12's, 11 left done
        stopped_at_call(patch, mert, "centred_cqt", 2 * 11 - 1)
        pretrain(music_folder, out, "--steps", "1", status=130)
    pretrain(music_folder, out, "--steps", "1", "--time-limit", "0")  # the last recording, then a stop
    err = capsys.readouterr().err
    assert "going on from recording 12 of 12" in err and "of 12 recordings' teacher targets" not in err
    assert "all 12 recordings' teacher targets done; k-means comes next" in err
    assert {mert.CQT_FILE, mert.FEATURES_FILE, PASS_FILE} <= {path.name for path in out.iterdir()}
    with monkeypatch.context() as patch:
        calls = stopped_at_call(patch, mert, "acoustic_features", 0)
        pretrain(music_folder, out, "--steps", "3", "--time-limit", "0")  # k-means' first codebook, then a stop
        assert "1 of 2 k-means codebooks fitted" in capsys.readouterr().err
        pretrain(music_folder, out, "--steps", "3", "--time-limit", "0")  # its last, then one step: none left
    assert len(calls) == 0 and "time limit reached at step 1 of 3" in capsys.readouterr().err
    assert (out / mert.CQT_FILE).read_bytes() == (straight / mert.CQT_FILE).read_bytes()
    sliced, whole = (torch.load(run / mert.LABELS_FILE, weights_only=True) for run in (out, straight))
    assert all(torch.equal(a, b) for a, b in zip(sliced["labels"], whole["labels"], strict=True))


def test_the_teachers_pass_takes_its_time_from_trainings(music_folder, tmp_path, monkeypatch):
    """One limit for the command: training gets what the pass left of it."""
    from modalities.audio.mert import pretrain as mert
    from zoo import training

    limits = []
    monkeypatch.setattr(mert, "train_and_save", lambda objective, batches, out, config, *rest: limits.append(
        config.time_limit))
    clock = iter(range(0, 10_000, 5))  # every reading of the clock 5 s after the last
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    pretrain(music_folder, tmp_path / "run", "--steps", "1", "--time-limit", "1000")
    assert 0 < limits[0] < 1000 - 5 * 12  # the pass read the clock once a recording at least
    limited, unlimited = training.TrainConfig(steps=1, time_limit=3.0), training.TrainConfig(steps=1)
    assert limited.left_before(limited.deadline() - 5.0).time_limit == 0.0  # 5 s past it: none left
    assert unlimited.deadline() is None and unlimited.left_before(None).time_limit is None


def test_a_pass_begun_for_other_files_or_frames_starts_again(tmp_path):
    from zoo.frame_rows import done_passes, frame_rows_writer

    outputs, frames, record = [(tmp_path / "cqt.npy", 6, torch.float16)], [3, 4], tmp_path / PASS_FILE
    ours, theirs = {"files": ["a.flac", "b.flac"], "frame_hop": 320}, {"files": ["a.flac"], "frame_hop": 320}
    assert done_passes(ours, record, outputs, frames) == 0 and record.is_file()
    with pytest.raises(KeyboardInterrupt):
        with frame_rows_writer(tmp_path / "cqt.npy", frames, 6, torch.float16) as append:
            append(torch.ones(3, 6, dtype=torch.float16))
            raise KeyboardInterrupt
    assert done_passes(ours, record, outputs, frames) == 1
    assert done_passes(theirs, record, outputs, frames) == 0  # and the record is now theirs
    assert done_passes(ours, record, outputs, frames) == 0
    assert done_passes(ours, record, outputs, [3, 5]) == 0  # the partial file's header is not these rows'


def test_a_recording_cut_halfway_in_the_partial_file_is_written_again_whole(tmp_path):
    """A kill in the middle of recording 2's write leaves 2 recordings whole and half of its
    bytes (30 of 60) at the end of the partial file; the rerun goes on from recording 2 and gives
    the rows of an uninterrupted pass. Kept, the half rows stood before recording 2's and shifted
    every row after them."""
    from zoo.frame_rows import frame_rows_writer, partial_rows, recordings_in_partial

    frames, width = [3, 4, 5, 2], 6
    generator = torch.Generator().manual_seed(0)
    rows = [torch.randn(count, width, generator=generator).half() for count in frames]
    with frame_rows_writer(tmp_path / "whole.npy", frames, width, torch.float16) as append:
        for block in rows:
            append(block)
    path = tmp_path / "rows.npy"
    with pytest.raises(KeyboardInterrupt):
        with frame_rows_writer(path, frames, width, torch.float16) as append:
            append(rows[0])
            append(rows[1])
            raise KeyboardInterrupt
    half = rows[2].numpy().tobytes()[:30]
    with partial_rows(path).open("ab") as file:
        file.write(half)
    first = recordings_in_partial(path, frames, width, torch.float16)
    assert first == 2
    with frame_rows_writer(path, frames, width, torch.float16, first) as append:
        for block in rows[first:]:
            append(block)
    assert path.read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_encodec_codes_pass_through_a_file_and_a_stopped_pass_goes_on(music_folder, tmp_path, monkeypatch, capsys):
    """`--teacher encodec` gives each recording's codes as EnCodec gives them (torch.equal), through
    codes.npy, deleted once they are made. Was: the codes were held in memory as the pass went, so
    a stopped pass (or one a time limit would stop) started over from the first recording."""
    from transformers import EncodecConfig, EncodecModel

    from modalities.audio.mert import pretrain as mert
    from zoo.audio_crops import RecordingFiles, frame_count, load_waves
    from zoo.training import TimeLimitReached

    torch.manual_seed(0)
    config = EncodecConfig(num_filters=4, hidden_size=16, codebook_size=1024, codebook_dim=16, num_lstm_layers=1,
                           target_bandwidths=[1.5, 6.0])
    EncodecModel(config).save_pretrained(tmp_path / "encodec")
    encoder = micro_objective().encoder
    files = sorted(music_folder.glob("*.flac"))[:3]
    args = mert_teacher_args("--teacher", "encodec", "--encodec", str(tmp_path / "encodec"), "--no-cqt")
    run = tmp_path / "run"
    targets = mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), run / mert.CQT_FILE)
    model = mert.load_encodec(str(tmp_path / "encodec"))
    waves = load_waves(files, encoder.processor)
    assert targets["codebook_sizes"] == [1024] * 8 and "cqt" not in targets
    assert all(isinstance(codes, torch.Tensor) and codes.dtype == torch.int16
               and torch.equal(codes, mert.encodec_codes(model, wave, frame_count(wave.numel(), 400, 320)).short())
               for codes, wave in zip(targets["labels"], waves, strict=True))
    for delete in targets.pop(mert.SPENT):  # as `cached_labels` does once labels.pt is written
        delete()
    assert list(run.iterdir()) == []  # codes.npy and the pass's record are deleted
    args = mert_teacher_args("--teacher", "encodec", "--encodec", str(tmp_path / "encodec"))
    with monkeypatch.context() as patch:
        stopped_at_call(patch, mert, "centred_cqt", 2)  # Ctrl-C in recording 2's CQT, its codes made
        with pytest.raises(KeyboardInterrupt):
            mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), run / mert.CQT_FILE)
    assert {".codes.npy.partial", ".cqt.npy.partial", PASS_FILE} == {path.name for path in run.iterdir()}
    capsys.readouterr()
    with monkeypatch.context() as patch:
        calls = stopped_at_call(patch, mert, "encodec_codes", 0)
        with pytest.raises(TimeLimitReached, match="2 of 3 recordings' teacher targets done"):
            mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), run / mert.CQT_FILE, 0.0)
    assert len(calls) == 1 and "going on from recording 2 of 3" in capsys.readouterr().err
    with pytest.raises(TimeLimitReached, match="all 3 recordings' teacher targets done; training comes next"):
        mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), run / mert.CQT_FILE, 0.0)
    again = mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), run / mert.CQT_FILE)
    assert all(torch.equal(a, b) for a, b in zip(again["labels"], targets["labels"], strict=True))
    for delete in again.pop(mert.SPENT):
        delete()
    assert len(again["cqt"]) == len(files) and {path.name for path in run.iterdir()} == {mert.CQT_FILE}
    # EnCodec saved again in place with other weights: the rerun starts over, its codes not mixed with the old
    with monkeypatch.context() as patch:
        stopped_at_call(patch, mert, "centred_cqt", 2)
        with pytest.raises(KeyboardInterrupt):
            mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), tmp_path / "run2" / "cqt.npy")
    EncodecModel(config).save_pretrained(tmp_path / "encodec")
    capsys.readouterr()
    with pytest.raises(TimeLimitReached, match="1 of 3 recordings'"):
        mert.make_targets(args, encoder, RecordingFiles(files, encoder.processor), tmp_path / "run2" / "cqt.npy", 0.0)
    assert "going on" not in capsys.readouterr().err


def test_the_95m_variant_drops_its_projected_input_as_its_recipe_does():
    """MERT_RVQ-VAE_CQT_95M.yaml has dropout_input 0.1 (HuBERT's feat_proj_dropout); `--variant 95m`
    left it at 0."""
    from modalities.audio.mert.model import VARIANTS, MertEncoderConfig
    from modalities.speech.hubert.pretrain import encoder_config

    config = encoder_config("95m", [], VARIANTS, MertEncoderConfig)
    assert (config.feat_proj_dropout, config.layerdrop, config.hidden_dropout, config.attention_dropout) == \
        (0.1, 0.05, 0.1, 0.1)
