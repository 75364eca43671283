"""HuBERT pretraining: the span-mask convention, frame alignment of labels and crops,
learning on real recordings (FSDD), resuming, and the `zoo pretrain hubert` entry."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from helpers import ctrl_c_at_step, shared_path

from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
from modalities.speech.hubert.pretrain import (
    IGNORE_LABEL,
    HubertPretraining,
    cluster_labels,
    compute_span_mask,
    drawn_frames,
    fit_clusters,
    frame_geometry,
    fresh_encoder,
    mfcc_features,
    run,
)
from modalities.speech.hubert_pretrain_options import add_arguments
from zoo.audio_crops import CropBatches, frame_count, list_audio_files, load_waves
from zoo.frame_rows import PASS_FILE
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.run_folders import CHECKPOINT_FILE
from zoo.training import TrainConfig, train


#: smaller than VARIANTS["tiny"], with HuBERT's 7-conv front end (400-sample field, 320 hop)
MICRO = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)


def micro_encoder(seed: int = 0) -> HubertEncoder:
    torch.manual_seed(seed)
    return HubertEncoder(HubertEncoderConfig(**MICRO))


def runs_of_true(row: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True in a 1-D bool tensor."""
    runs, current = [], 0
    for value in row.tolist() + [False]:
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


# ----------------------------------------------------------------------------- masking


def test_span_mask_fraction_follows_fairseq_convention():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.full((64,), 1000)
    # 80 spans of 10 among 991 starts: expected union 1 - (1 - 10/991)^80 = 0.555
    heavy = compute_span_mask(lengths, 1000, 0.8, 10, min_masks=2, generator=generator)
    assert 0.52 < heavy.float().mean() < 0.59
    # few spans barely overlap, so the fraction approaches mask_prob from below
    light = compute_span_mask(lengths, 1000, 0.05, 10, generator=generator)
    assert 0.045 < light.float().mean() <= 0.05


def test_span_mask_is_whole_spans_inside_valid_frames():
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([50, 37, 12, 10, 3, 1, 0])
    mask = compute_span_mask(lengths, 60, 0.8, 10, min_masks=2, generator=generator)
    assert mask.shape == (7, 60)
    for row, length in enumerate(lengths.tolist()):
        assert not mask[row, length:].any(), "padding frames must never be masked"
        if length >= 10:
            assert min(runs_of_true(mask[row])) >= 10, "every masked run is at least one span"
    assert mask[4, :3].all() and mask[5, 0], "an item shorter than a span is one span of its length"
    assert not mask[6].any()
    assert mask[3].sum() == 10, "a 10-frame item has one possible start"


def test_span_mask_min_masks_and_reproducibility():
    lengths = torch.full((32,), 40)
    first = compute_span_mask(lengths, 40, 0.0, 5, min_masks=2, generator=torch.Generator().manual_seed(3))
    again = compute_span_mask(lengths, 40, 0.0, 5, min_masks=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert all(5 <= int(row.sum()) <= 10 for row in first), "mask_prob 0 still gives min_masks spans"
    assert not compute_span_mask(lengths, 40, 0.0, 5).any()
    with pytest.raises(ConfigError, match="mask_prob=1.5"):
        compute_span_mask(lengths, 40, 1.5, 5)
    with pytest.raises(ConfigError, match="mask_length=0"):
        compute_span_mask(lengths, 40, 0.5, 0)


# ----------------------------------------------------------------------------- framing


def test_mfcc_frames_align_with_encoder_frames():
    encoder = micro_encoder()
    field, hop = frame_geometry(encoder.config)
    assert (field, hop) == (400, 320)
    for samples in (400, 719, 720, 1000, 7999, 16000):
        frames = int(encoder.frame_lengths(torch.tensor([samples]))[0])
        assert frame_count(samples, field, hop) == frames
        features = mfcc_features(torch.randn(samples), 16000, field, hop)
        assert features.shape == (frames, 39)
        assert features.untyped_storage().nbytes() == features.numel() * 4  # was a view of twice the frames


def test_crops_start_on_frame_boundaries_with_their_labels():
    field, hop = 400, 320
    # sample value = its index, label = its frame index: a crop must keep them in step
    lengths = [16000, 9000, 12345, 7000, 30000, 5000]
    waves = [torch.arange(n, dtype=torch.float32) for n in lengths]
    labels = [torch.arange(frame_count(n, field, hop)) for n in lengths]
    batches = CropBatches(waves, labels, batch_size=3, max_frames=20, field=field, hop=hop, seed=0)
    for index in range(6):
        batch = batches.batch(index)
        frames = batch["labels"].shape[1]
        assert frames <= 20 and batch["input_values"].shape[1] == (frames - 1) * hop + field
        assert torch.equal(batch["input_values"][:, 0], batch["labels"][:, 0].float() * hop)
        assert torch.equal(batch["labels"], batch["labels"][:, :1] + torch.arange(frames))
    assert torch.equal(CropBatches(waves, labels, 3, 20, field, hop, seed=0).batch(4)["labels"],
                       batches.batch(4)["labels"])


def test_an_epoch_trains_on_every_recording_when_their_number_is_a_multiple_of_the_batch():
    """16 recordings in batches of 4 make 4 batches an epoch, holding each recording once. Cutting
    one batch too few (3) would leave out the 4 longest every epoch: the batches of a pool are cut
    from its recordings sorted by length."""
    field, hop = 400, 320
    waves = [torch.zeros(field + hop * frames) for frames in range(20, 36)]
    batches = CropBatches(waves, None, batch_size=4, max_frames=20, field=field, hop=hop, seed=0)
    assert batches.batches_per_epoch == 4
    for epoch in range(3):
        drawn = np.concatenate(batches.epoch_batches(epoch))
        assert sorted(drawn.tolist()) == list(range(16)), epoch


def test_crop_starts_reach_both_ends_of_each_recording():
    """A recording of T_i frames cropped to T may start at any frame 0..T_i - T, both ends
    included: recordings of 5, 8 and 6 frames cropped to 5 start at {0}, {0..3} and {0, 1}.
    Drawing from [0, T_i - T) never took the last frames of a recording longer than the crop."""
    field, hop = 400, 320
    frames = [5, 8, 6]
    waves = [torch.zeros((count - 1) * hop + field) for count in frames]
    labels = [100 * index + torch.arange(count) for index, count in enumerate(frames)]  # recording, frame
    batches = CropBatches(waves, labels, batch_size=3, max_frames=50, field=field, hop=hop, seed=0)
    starts = {index: set() for index in range(len(frames))}
    for index in range(200):
        for first in batches.batch(index)["labels"][:, 0].tolist():
            starts[first // 100].add(first % 100)
    assert starts == {index: set(range(count - 5 + 1)) for index, count in enumerate(frames)}


def test_loss_counts_masked_frames_only():
    objective = HubertPretraining(micro_encoder(), num_clusters=8, final_dim=16, mask_prob=0.5, mask_length=3).eval()
    waves = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11000])
    attention_mask = (torch.arange(16000)[None] < lengths[:, None]).long()
    frames = objective.encoder.frame_lengths(lengths)
    labels = torch.randint(0, 8, (2, int(frames.max())))
    labels[1, int(frames[1]):] = IGNORE_LABEL
    batch = {"input_values": waves, "attention_mask": attention_mask, "labels": labels}

    torch.manual_seed(5)
    reference = objective(batch)
    torch.manual_seed(5)
    mask = compute_span_mask(frames, labels.shape[1], 0.5, 3, min_masks=2)
    changed = labels.clone()
    changed[~mask & (labels != IGNORE_LABEL)] = (changed[~mask & (labels != IGNORE_LABEL)] + 1) % 8
    torch.manual_seed(5)
    assert objective({**batch, "labels": changed}).loss == reference.loss
    assert 0 < reference.logs["masked_fraction"] < 1 and reference.loss > 0


# ----------------------------------------------------------------------------- learning on FSDD


@pytest.fixture
def one_thread():
    """One torch thread: far faster than two on a machine other jobs share."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fsdd_waves():
    files = list_audio_files(shared_path("data", "fsdd", "recordings"), exclude=["*_[0-4].wav"])[::20]
    return load_waves(files, micro_encoder().processor)


def test_masked_prediction_loss_falls_on_fsdd(fsdd_waves, one_thread, tmp_path):
    """A micro HuBERT learns to predict MFCC clusters of masked frames within a few dozen steps.

    Starting near ln(10) = 2.3, the mean loss of the last 10 steps is 0.19-0.25 below that of
    the first 10 (seeds 0-2); the test asks for 0.1.
    """
    encoder = micro_encoder()
    field, hop = frame_geometry(encoder.config)
    features = [mfcc_features(wave, 16000, field, hop) for wave in fsdd_waves]
    labels = cluster_labels(features, fit_clusters(features, 10, seed=0))
    batches = CropBatches(fsdd_waves, labels, batch_size=8, max_frames=50, field=field, hop=hop)
    objective = HubertPretraining(encoder, 10, final_dim=32, mask_length=5)
    records = train(objective, batches, tmp_path, TrainConfig(steps=40, lr=5e-3, warmup_steps=4, progress=False))
    first = np.mean([r["loss"] for r in records[:10]])
    last = np.mean([r["loss"] for r in records[-10:]])
    assert last < first - 0.1, (first, last)


# ----------------------------------------------------------------------------- resuming


class Interrupted(Exception):
    pass


class Interrupting:
    """Passes batches (and the source's state) through, then fails as a killed job would."""

    def __init__(self, batches: CropBatches, after: int) -> None:
        self.batches, self.after = batches, after

    def state_dict(self):
        return self.batches.state_dict()

    def load_state_dict(self, state):
        self.batches.load_state_dict(state)

    def __iter__(self):
        for index, batch in enumerate(self.batches):
            if index == self.after:
                raise Interrupted
            yield batch


def synthetic_batches() -> CropBatches:
    generator = torch.Generator().manual_seed(0)
    waves = [torch.randn(int(n), generator=generator) for n in torch.randint(3000, 9000, (12,), generator=generator)]
    labels = [torch.randint(0, 6, (frame_count(w.numel(), 400, 320),), generator=generator) for w in waves]
    return CropBatches(waves, labels, batch_size=4, max_frames=15, field=400, hop=320, seed=0)


def make_objective() -> HubertPretraining:
    return HubertPretraining(micro_encoder(), num_clusters=6, final_dim=16, mask_length=3)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    config = TrainConfig(steps=8, lr=1e-3, warmup_steps=2, checkpoint_every=4, progress=False)
    whole = make_objective()
    train(whole, synthetic_batches(), tmp_path / "whole", config)

    with pytest.raises(Interrupted):
        train(make_objective(), Interrupting(synthetic_batches(), after=6), tmp_path / "stopped", config)
    resumed = make_objective()
    records = train(resumed, synthetic_batches(), tmp_path / "stopped", config)

    assert [r["step"] for r in records] == list(range(1, 9))
    state = torch.load(tmp_path / "stopped" / CHECKPOINT_FILE, weights_only=True)
    assert state["batches"]["batches_drawn"] == 8
    assert all(int(s["step"]) == 8 for s in state["optimizer"]["state"].values())
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


# ----------------------------------------------------------------------------- command line


def write_tones(folder: Path, count: int) -> None:
    """Short noisy chirps at 8 kHz (the data folder may hold any rate)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for index in range(count):
        t = np.arange(int(8000 * rng.uniform(0.3, 0.8))) / 8000
        wave = np.sin(2 * np.pi * (200 + 300 * index % 7) * t * (1 + t)) + 0.05 * rng.normal(size=len(t))
        soundfile.write(folder / f"{index}_x_{index % 7}.wav", (0.3 * wave).astype(np.float32), 8000)


def test_cli_runs_both_iterations_and_resumes(tmp_path):
    import zoo

    write_tones(tmp_path / "data", 14)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    micro = [f"--set={key}={json.dumps(value)}" for key, value in MICRO.items()]
    common = ["--data", str(tmp_path / "data"), "--exclude", "*_[0-1].wav", "--steps", "3", "--batch-size", "4",
              "--clusters", "4", "--final-dim", "8", "--mask-length", "3", "--no-progress", *micro]
    run(parser.parse_args([*common, "-o", str(tmp_path / "iter1")]))
    run(parser.parse_args([*common, "-o", str(tmp_path / "iter2"), "--iteration", "2",
                           "--labels-from", str(tmp_path / "iter1")]))

    encoder = zoo.load(tmp_path / "iter2" / "encoder")
    assert isinstance(encoder, HubertEncoder) and encoder.config.hidden_size == 32
    stored = torch.load(tmp_path / "iter2" / "labels.pt", weights_only=True)
    assert len(stored["files"]) == 10 and stored["source"].startswith("layer 1 of")
    run(parser.parse_args([*common, "-o", str(tmp_path / "iter1")]))  # finished: resumes, trains nothing
    assert len((tmp_path / "iter1" / "log.jsonl").read_text().splitlines()) == 3
    run(parser.parse_args([*common, "-o", str(tmp_path / "checkpointed"), "--activation-checkpointing"]))
    assert [json.loads(line)["loss"] for line in (tmp_path / "checkpointed" / "log.jsonl").read_text().splitlines()] \
        == [json.loads(line)["loss"] for line in (tmp_path / "iter1" / "log.jsonl").read_text().splitlines()]
    with pytest.raises(CheckpointError, match=r"other settings \(clusters=4 then, 6 now\)"):
        run(parser.parse_args([*common, "-o", str(tmp_path / "iter1"), "--clusters", "6"]))  # not the old labels
    labels = torch.load(tmp_path / "iter1" / "labels.pt", weights_only=True)
    older = {key: value for key, value in labels["settings"].items() if key not in ("kmeans_features", "kmeans_inits")}
    torch.save({**labels, "settings": older}, tmp_path / "iter1" / "labels.pt")
    run(parser.parse_args([*common, "-o", str(tmp_path / "iter1")]))  # an older zoo's labels.pt: resumes
    torch.save({key: value for key, value in labels.items() if key != "settings"}, tmp_path / "iter1" / "labels.pt")
    with pytest.raises(CheckpointError, match="other settings \\(none recorded: an older zoo made it\\)"):
        run(parser.parse_args([*common, "-o", str(tmp_path / "iter1")]))
    with pytest.raises(ConfigError, match="--labels-from"):
        run(parser.parse_args([*common, "-o", str(tmp_path / "bad"), "--iteration", "2"]))


def test_labels_cluster_raw_features_with_fairseqs_kmeans_unless_asked(tmp_path):
    """fairseq's learn_kmeans.py clusters MFCCs as they are, with 20 restarts; the zoo standardised each
    dimension and ran 3, so its labels split the deltas as finely as the cepstra (NMI 0.52 with fairseq's
    on FSDD, below two seeds of either). Iteration 2 clusters into HuBERT-base's 500 by default."""
    from modalities.speech.hubert.pretrain import clusters_of, make_labels
    from zoo.audio_crops import RecordingFiles

    write_tones(tmp_path / "data", 4)
    files = sorted((tmp_path / "data").glob("*.wav"))
    encoder = HubertEncoder(HubertEncoderConfig(**MICRO))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = ["--data", ".", "--clusters", "3", "--no-progress"]
    made, older = {}, ["--kmeans-features", "standardised", "--kmeans-inits", "3"]
    for name, extra in {"raw": [], "standardised": older}.items():
        args = parser.parse_args([*options, "-o", str(tmp_path / name), *extra])
        made[name] = make_labels(args, encoder, RecordingFiles(files, encoder.processor))
    features = [mfcc_features(wave, 16000, *frame_geometry(encoder.config))
                for wave in RecordingFiles(files, encoder.processor)]
    raw, standardised = made["raw"], made["standardised"]
    assert torch.equal(raw["mean"], torch.zeros(39)) and torch.equal(raw["std"], torch.ones(39))
    assert torch.allclose(standardised["mean"], torch.cat(features).mean(0), atol=1e-4)
    spread = raw["centers"].std(0)
    assert spread[:13].mean() > 3 * spread[13:].mean(), spread  # the cepstra separate the clusters
    assert clusters_of(parser.parse_args(["--data", ".", "-o", "x"])) == 100
    assert clusters_of(parser.parse_args(["--data", ".", "-o", "x", "--iteration", "2"])) == 500


def test_the_mfcc_pass_shows_a_bar_over_the_recordings(tmp_path, capsys):
    """Was silent: a corpus's MFCC pass showed nothing until k-means began."""
    from modalities.speech.hubert.pretrain import make_labels
    from zoo.audio_crops import RecordingFiles

    write_tones(tmp_path / "data", 3)
    files = sorted((tmp_path / "data").glob("*.wav"))
    encoder = HubertEncoder(HubertEncoderConfig(**MICRO))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = ["--data", ".", "-o", str(tmp_path / "run"), "--clusters", "2"]
    for shown in (True, False):
        capsys.readouterr()
        make_labels(parser.parse_args(options + ([] if shown else ["--no-progress"])), encoder,
                    RecordingFiles(files, encoder.processor))
        assert ("hubert mfcc: 100%" in capsys.readouterr().err) is shown


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()]


def sliced_and_straight(tmp_path, capsys, *options: str) -> tuple[dict, dict, list[str]]:
    """labels.pt of a run whose features' pass went in `--time-limit 0` calls (a group of recordings
    each, then a stop before k-means, then k-means and a step, then nothing) and of a straight run;
    the stderr of the calls after the straight run."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    micro = [f"--set={key}={json.dumps(value)}" for key, value in MICRO.items()]
    common = ["--data", str(tmp_path / "data"), "--steps", "1", "--batch-size", "2", "--clusters", "3",
              "--final-dim", "8", "--mask-length", "3", "--no-progress", *micro, *options]
    run(parser.parse_args([*common, "-o", str(tmp_path / "straight")]))
    said = []
    while not said or "nothing left to train" not in said[-1]:
        assert len(said) < 10, said
        capsys.readouterr()
        run(parser.parse_args([*common, "-o", str(tmp_path / "sliced"), "--time-limit", "0"]))
        said.append(capsys.readouterr().err)
    return (*(torch.load(tmp_path / run_ / "labels.pt", weights_only=True) for run_ in ("sliced", "straight")), said)


@pytest.mark.parametrize("iteration, stops", [(1, [1, 2, 3, 4]), (2, [2, 4])])
def test_the_features_pass_goes_on_in_slices_of_the_time_limit(tmp_path, capsys, monkeypatch, iteration, stops):
    """Was: the features were held in memory (a 768-wide layer: 553 MB an hour of audio) and made
    again by every rerun, with no time limit: a slice of a lent machine spent in the pass was lost.
    Iteration 2's teacher embeds groups of recordings (here of 2), and stops between them: a
    recording's features depend on the batch it was padded in, and the slices' are the straight
    run's bit for bit."""
    from modalities.speech.hubert import pretrain

    write_tones(tmp_path / "data", 5)  # 0.3-0.8 s: padded in a batch
    options = []
    if iteration == 2:
        monkeypatch.setattr("zoo.encoder.PREPARE_GROUP", 2)
        micro_encoder().save_pretrained(tmp_path / "teacher")
        options = ["--iteration", "2", "--labels-from", str(tmp_path / "teacher"), "--layer", "1"]
    sliced, straight, said = sliced_and_straight(tmp_path, capsys, *options)
    assert "time limit (0 s) reached in the features' pass" in said[0] and "going on" not in said[0]
    for text, done in zip(said, stops):
        assert f"{done} of 5 recordings' features done; rerun" in text
    for text, done in zip(said[1:], stops):
        assert f"going on from recording {done + 1} of 5" in text
    assert "all 5 recordings' features done; k-means comes next" in said[len(stops)]
    assert "k-means: 3 clusters" in said[len(stops) + 1] and "done: 1 steps" in said[len(stops) + 1]
    assert len(said) == len(stops) + 3 and "features of" not in said[-1]  # the last: finished, nothing computed
    assert all(torch.equal(a, b) for a, b in zip(sliced["labels"], straight["labels"], strict=True))
    assert torch.equal(sliced["centers"], straight["centers"]) and torch.equal(sliced["std"], straight["std"])
    assert not {pretrain.FEATURES_FILE, PASS_FILE} & {path.name for path in (tmp_path / "sliced").iterdir()}


def test_kmeans_reads_the_features_from_their_file(tmp_path, monkeypatch):
    """The pass holds one recording's features: k-means and the labelling read them from
    features.npy a recording at a time."""
    from modalities.speech.hubert import pretrain
    from zoo.audio_crops import RecordingFiles
    from zoo.frame_rows import FrameRows

    write_tones(tmp_path / "data", 3)
    files = sorted((tmp_path / "data").glob("*.wav"))
    encoder = micro_encoder()
    given, fit = [], pretrain.fit_clusters

    def spy(features, *args, **kwargs):
        given.append((type(features), list(features)))  # read from the file while it is there
        return fit(features, *args, **kwargs)

    monkeypatch.setattr(pretrain, "fit_clusters", spy)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", ".", "-o", str(tmp_path / "run"), "--clusters", "2", "--no-progress"])
    labels = pretrain.make_labels(args, encoder, RecordingFiles(files, encoder.processor))
    (kind, features), = given
    field, hop = frame_geometry(encoder.config)
    waves = load_waves(files, encoder.processor)
    assert kind is FrameRows and all(torch.equal(rows, mfcc_features(wave, 16000, field, hop))
                                     for rows, wave in zip(features, waves, strict=True))
    assert [len(rows) for rows in labels["labels"]] == [frame_count(len(wave), field, hop) for wave in waves]
    assert (tmp_path / "run" / pretrain.FEATURES_FILE).exists()  # kept until labels.pt is written
    for delete in labels.pop(pretrain.SPENT):  # as `cached_labels` does then
        delete()
    assert not (tmp_path / "run" / pretrain.FEATURES_FILE).exists()


def test_a_resumed_run_keeps_the_recordings_it_began_with(tmp_path, monkeypatch, capsys):
    """A file --data lists only since the run was interrupted (added, or of an ending the listing
    took up later, as .aiff) is left out with a warning: labels.pt, which labels the files the run
    began with, refused the rerun for good. A run an older zoo began (no inputs.json) goes on over
    the files its labels.pt names."""
    import shutil

    from zoo.run_folders import INPUTS_FILE

    write_tones(tmp_path / "data", 6)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    micro = [f"--set={key}={json.dumps(value)}" for key, value in MICRO.items()]
    common = ["--data", str(tmp_path / "data"), "--steps", "4", "--checkpoint-every", "2", "--batch-size", "2",
              "--clusters", "4", "--final-dim", "8", "--mask-length", "3", "--threads", "1", "--no-progress", *micro]
    run(parser.parse_args([*common, "-o", str(tmp_path / "whole")]))
    with ctrl_c_at_step(monkeypatch, 3), pytest.raises(KeyboardInterrupt):
        run(parser.parse_args([*common, "-o", str(tmp_path / "parts")]))
    shutil.copytree(tmp_path / "parts", tmp_path / "older")
    (tmp_path / "older" / INPUTS_FILE).unlink()
    late = tmp_path / "data" / "late.aiff"
    soundfile.write(late, np.sin(np.arange(4000) / 5).astype(np.float32) * 0.3, 8000)
    capsys.readouterr()
    for name in ("parts", "older"):
        run(parser.parse_args([*common, "-o", str(tmp_path / name)]))
        assert losses(tmp_path / name) == losses(tmp_path / "whole"), name
        assert f"1 file in --data not among the 6 that the run in {str(tmp_path / name)!r} began with (e.g. " \
               f"{str(late)!r}): the resumed run keeps its original files" in capsys.readouterr().err


def test_a_run_resumes_on_its_data_moved_to_another_folder(tmp_path, monkeypatch):
    """The README says a rerun may change the data's location; was: labels.pt compared the
    files' full paths, so a HuBERT or MERT run could not be resumed from the moved data."""
    write_tones(tmp_path / "data", 6)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    micro = [f"--set={key}={json.dumps(value)}" for key, value in MICRO.items()]
    common = ["--steps", "4", "--checkpoint-every", "2", "--batch-size", "2", "--clusters", "4", "--final-dim", "8",
              "--mask-length", "3", "--threads", "1", "--no-progress", *micro]
    run(parser.parse_args([*common, "--data", str(tmp_path / "data"), "-o", str(tmp_path / "whole")]))
    with ctrl_c_at_step(monkeypatch, 3), pytest.raises(KeyboardInterrupt):
        run(parser.parse_args([*common, "--data", str(tmp_path / "data"), "-o", str(tmp_path / "parts")]))
    (tmp_path / "data").rename(tmp_path / "moved")
    run(parser.parse_args([*common, "--data", str(tmp_path / "moved"), "-o", str(tmp_path / "parts")]))
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")


def test_kmeans_frames_are_drawn_without_joining_the_corpus(monkeypatch):
    """fit_clusters joined every recording's features into one copy (28 MB an hour of MFCCs, 82 MB of
    MERT's log-mel + chroma) before drawing --kmeans-frames of them; the rows drawn from each recording
    are the same rows, in the same order, whatever the lengths (empty, half precision, all drawn).
    Then it joined the drawn rows (a list, then their concatenation: twice the rows at the peak);
    they are now copied into one tensor as each recording's are drawn."""
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(count, 5, generator=generator) for count in (120, 0, 7, 301, 1, 64)]
    features[2] = features[2].half()
    joined = torch.cat([f.float() for f in features])
    for count in (1, 100, 492, 493, 10_000):
        drawn = np.sort(np.random.default_rng(3).choice(len(joined), count, replace=False)) if count < 493 else None
        expected = joined if drawn is None else joined[torch.from_numpy(drawn)]
        assert torch.equal(drawn_frames(features, count, np.random.default_rng(3)), expected)
    joins = []
    cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda tensors, *args, **kwargs: joins.append(sum(map(len, tensors)))
                        or cat(tensors, *args, **kwargs))
    fit_clusters(features, 4, max_frames=50)
    fit_clusters(features, 4, max_frames=10_000)  # every frame
    assert joins == []


def test_too_little_audio_names_the_setting_to_change(tmp_path):
    with pytest.raises(ConfigError, match=r"6 frames cannot make 100 clusters; use fewer \(--clusters\)"):
        fit_clusters([torch.randn(6, 13)], 100)
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(InputError, match=r"no audio files \(.wav, .flac, .ogg, .*\) in .*; pass a folder of rec"):
        list_audio_files(tmp_path)
    with pytest.raises(InputError, match=r"once \['\*.txt'\] are left out"):
        list_audio_files(tmp_path, exclude=["*.txt"])


def test_labels_from_takes_a_run_folder_a_checkpoint_folder_or_a_model_name(tmp_path):
    from modalities.speech.hubert.pretrain import load_teacher

    assert isinstance(load_teacher("hubert-tiny-fsdd"), HubertEncoder)  # the embedded model, by name
    with pytest.raises(InputError, match="holds a BEATsEncoder, not a HuBERT encoder"):
        load_teacher("beats-tiny")
    with pytest.raises(CheckpointError, match="--labels-from: .* has no config.json, nor a subfolder with one"):
        load_teacher(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the device is applied by asking for one absent here")
def test_the_teacher_goes_to_the_runs_device():
    """The teacher of iteration 2 embedded the corpus on the CPU whatever --device said."""
    from modalities.speech.hubert.pretrain import load_teacher

    with pytest.raises(ConfigError, match="cannot move the model to device='cuda'"):
        load_teacher("hubert-tiny-fsdd", "cuda")


def test_init_goes_on_from_the_embedded_model(tmp_path):
    """`--init hubert-tiny-fsdd`: its weights (float32) and processor, a new projection and
    label embeddings; the architecture is the checkpoint's, so --variant / --set are refused."""
    from huggingface_hub import ModelCard

    import zoo
    from zoo.errors import ZooError

    write_tones(tmp_path / "data", 6)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    common = ["--data", str(tmp_path / "data"), "--steps", "2", "--batch-size", "2", "--clusters", "4",
              "--mask-length", "3", "--no-progress", "--init", "hubert-tiny-fsdd"]
    run(parser.parse_args([*common, "-o", str(tmp_path / "run")]))
    start, trained = zoo.load("hubert-tiny-fsdd"), zoo.load(tmp_path / "run" / "encoder")
    assert trained.config == start.config and trained.processor == start.processor
    steps = {name: float((value.float() - start.state_dict()[name].float()).abs().max())
             for name, value in trained.state_dict().items()}
    assert 0 < max(steps.values()) < 0.01  # two AdamW steps of lr 5e-4 from those weights, not a new init
    card = ModelCard.load(tmp_path / "run" / "encoder" / "README.md")  # said only "Pretrained ... for 2 steps"
    assert "Pretrained with `zoo pretrain hubert` from the weights of `hubert-tiny-fsdd` (ssl-zoo" in card.text
    assert (card.data.base_model, card.data.license) == ("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0")
    with pytest.raises(ConfigError, match="drop --variant and --set"):
        run(parser.parse_args([*common, "-o", str(tmp_path / "other"), "--variant", "base"]))
    with pytest.raises(ZooError, match="holds a MertEncoder, not a HubertEncoder"):
        run(parser.parse_args([*common[:-1], "mert-tiny", "-o", str(tmp_path / "mert")]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a device this machine lacks")
def test_training_settings_are_checked_before_the_labels_are_made(tmp_path):
    """`--device cuda` without CUDA ran the k-means teacher first and left OUT/labels.pt behind."""
    from zoo.cli import main

    write_tones(tmp_path / "data", 4)
    assert main(["pretrain", "hubert", "--data", str(tmp_path / "data"), "-o", str(tmp_path / "run"),
                 "--device", "cuda", "--no-progress"]) == 2
    assert not (tmp_path / "run").exists()


def test_iteration_2_teacher_prepares_the_recordings_itself(tmp_path, monkeypatch):
    """Iteration 2 clusters the teacher's features of each file as its own processor prepares it: the
    waveforms prepared for a `do_normalize` student were normalised a second time by a `do_normalize`
    teacher, which moved a quiet clip under fairseq's 1e-5 variance floor from std 0.71 to 1.0."""
    from modalities.speech.hubert import pretrain
    from zoo.audio import FAIRSEQ_NORMALIZE_EPS, AudioProcessor
    from zoo.audio_crops import RecordingFiles

    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        soundfile.write(folder / f"{index}.wav", (0.0032 * rng.standard_normal(4000)).astype(np.float32), 16000)
    files = sorted(folder.glob("*.wav"))
    quiet = AudioProcessor(do_normalize=True, normalize_eps=FAIRSEQ_NORMALIZE_EPS)
    torch.manual_seed(0)
    teacher = HubertEncoder(HubertEncoderConfig(**MICRO), quiet)
    teacher.save_pretrained(tmp_path / "teacher")
    student = HubertEncoder(HubertEncoderConfig(**MICRO), quiet)
    waves = RecordingFiles(files, student.processor)
    assert 0.6 < float(waves[0].std()) < 0.8  # normalised once, under the variance floor
    clustered = []

    def fit(features, *args, **kwargs):
        clustered.extend(features)
        raise KeyboardInterrupt  # the features are all this test needs

    monkeypatch.setattr(pretrain, "fit_clusters", fit)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", str(folder), "-o", str(tmp_path / "run"), "--iteration", "2",
                              "--labels-from", str(tmp_path / "teacher"), "--layer", "1", "--no-progress"])
    with pytest.raises(KeyboardInterrupt):
        pretrain.make_labels(args, student, waves)
    expected = teacher.embed(files, layer=1, pool="none", progress=False)
    assert len(clustered) == 3 and all(torch.equal(got, want) for got, want in zip(clustered, expected))


def test_iteration_2_labels_every_frame_of_recordings_longer_than_the_teachers_window(tmp_path):
    """A recording longer than the teacher's window got `embed`'s windows, which left out the frames
    straddling their edges (5 s in 1 s windows: 245 of 249 frames), and the run was refused ("has
    249 frames but 245 labels"). The teacher's windows are now cut on frame boundaries: one feature
    per frame, the first window's its own embedding (within 1e-5, batched), and the samples after
    the last frame (31,560 samples: 98 frames, 49 in each window, and 200 left) in none."""
    from modalities.speech.hubert.pretrain import layer_feature_groups
    from zoo.audio import AudioProcessor, framed_windows

    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, samples in (("long", 80000), ("edge", 31560), ("short", 11000)):
        soundfile.write(folder / f"{name}.wav", (0.1 * rng.standard_normal(samples)).astype(np.float32), 16000)
    torch.manual_seed(0)
    teacher = HubertEncoder(HubertEncoderConfig(**MICRO), AudioProcessor(chunk_seconds=1.0))
    field, hop = frame_geometry(teacher.config)
    assert framed_windows(31560, 16000, field, hop) == [(0, 15760), (15680, 15760)]
    files = [folder / f"{name}.wav" for name in ("long", "edge", "short")]
    features = [rows for group in layer_feature_groups(teacher, files, 1, progress=False) for rows in group]
    assert [len(rows) for rows in features] == [frame_count(n, field, hop) for n in (80000, 31560, 11000)]
    wave = teacher.processor.prepare(files[0])
    (_, count), *_ = framed_windows(80000, 16000, field, hop)  # 249 frames: 42, 42, 42, 41, 41, 41
    first = teacher.embed([wave[:count]], layer=1, pool="none", sampling_rate=16000, progress=False)[0]
    assert len(first) == 42 and float((features[0][:42] - first).abs().max()) <= 1e-5  # batched with others
    teacher.save_pretrained(tmp_path / "teacher")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    micro = [f"--set={key}={json.dumps(value)}" for key, value in MICRO.items()]
    run(parser.parse_args(["--data", str(folder), "-o", str(tmp_path / "run"), "--iteration", "2", "--labels-from",
                           str(tmp_path / "teacher"), "--steps", "1", "--batch-size", "2", "--clusters", "4",
                           "--final-dim", "8", "--mask-length", "3", "--no-progress", *micro]))
    assert len(losses(tmp_path / "run")) == 1


@pytest.mark.parametrize("variant, normalized", [(None, False), ("base", False), ("large", True), ("xlarge", True)])
def test_each_size_reads_waveforms_as_fairseqs_recipe_does(variant, normalized, tmp_path):
    """fairseq pretrains large and xlarge on normalised waveforms (task.normalize: true), as their
    checkpoints' do_normalize says; `--variant large` trained on raw ones, and no option changed it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    small = ["--set", "num_hidden_layers=1", "--set", "hidden_size=32", "--set", "num_attention_heads=2",
             "--set", "intermediate_size=64", "--set", "conv_dim=[16,16,16,16,16,16,16]"]
    variant_args = ["--variant", variant] if variant else []
    args = parser.parse_args(["--data", str(tmp_path), "-o", str(tmp_path / "out"), *variant_args, *small])
    assert fresh_encoder(args).processor.do_normalize is normalized
