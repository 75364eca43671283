"""The shared pretraining loop on a toy objective: schedule, logs, checkpoints, resume."""

import argparse
import dataclasses
import json
import math
import os
import signal

import pytest
import torch
from torch import nn

from zoo.checkpointing import CheckpointedBlocks
from zoo.errors import CheckpointError, ConfigError, Stopped, ZooError
from zoo.outputs import PretrainOutput
from zoo.run_folders import ARGS_FILE, CHECKPOINT_FILE, LOG_FILE, PLOT_FILE, read_log
from zoo.options import add_optimization_arguments
from zoo.training import (
    TrainConfig, lr_factor, make_optimizer, train, train_and_save, train_config_from_args, weight_decay_at,
)


class Regression(nn.Module):
    """Least squares with dropout, so that the RNG state matters for exact resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, batch) -> PretrainOutput:
        x, y = batch
        loss = (self.linear(self.dropout(x)).squeeze(-1) - y).pow(2).mean()
        return PretrainOutput(loss=loss, logs={"mean_target": float(y.mean())})


def toy_batches(count: int = 5):
    """A finite list of batches: the loop must iterate it again when it runs out."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.tensor([1.0, -2.0, 0.5, 3.0])
    batches = []
    for _ in range(count):
        x = torch.randn(16, 4, generator=generator)
        batches.append((x, x @ weight + 1.0))
    return batches


def make_objective() -> Regression:
    torch.manual_seed(0)
    return Regression()


def test_warmup_then_cosine_schedule():
    assert lr_factor(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert lr_factor(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 0, 10, 0.0) == pytest.approx(1.0)


def test_a_linear_decay_is_fairseqs_polynomial_decay_and_decay_may_reach_every_parameter():
    """fairseq's polynomial_decay (power 1) sets the lr of update k + 1 to lr * (1 - (k - W) / (T - W))
    after W warmup updates; its Adam decays every parameter, biases and norms too."""
    for step in (4, 9, 12, 19, 20):
        assert lr_factor(step, 4, 20, 0.0, "linear") == pytest.approx(1 - (step - 4) / (20 - 4))
    assert lr_factor(12, 4, 20, 0.1, "linear") == pytest.approx(0.1 + 0.9 * 0.5)
    objective = make_objective()
    groups = make_optimizer(objective, TrainConfig(steps=1, decay_every_parameter=True)).param_groups
    assert [len(group["params"]) for group in groups] == [2, 0] and groups[0]["weight_decay"] == 0.01
    assert [len(group["params"]) for group in make_optimizer(objective, TrainConfig(steps=1)).param_groups] == [1, 1]
    with pytest.raises(ConfigError, match="lr_decay='step'"):
        TrainConfig(steps=2, lr_decay="step")


def test_parameters_lr_scales_name_train_at_their_share_of_the_lr_and_the_log_shows_the_unscaled_one(tmp_path):
    """`zoo finetune --mode full` trains a standardised T-JEPA's encoder at 1e-4 of its head's lr. AdamW's
    first step moves each parameter by its lr (the update is m / sqrt(v) = g / |g| after bias correction)."""
    objective = make_objective()
    before = {name: value.detach().clone() for name, value in objective.named_parameters()}
    config = TrainConfig(steps=1, lr=1e-2, weight_decay=0.0, lr_scales={"linear.weight": 1e-4}, progress=False)
    groups = make_optimizer(objective, config).param_groups
    assert [(group["lr"], group["lr_scale"], len(group["params"])) for group in groups] == [
        (1e-2 * 1e-4, 1e-4, 1), (1e-2, 1.0, 1)]
    records = train(objective, toy_batches(), tmp_path, config)
    moved = {name: (value.detach() - before[name]).abs() for name, value in objective.named_parameters()}
    # float32 weights near 0.4 resolve steps of 1e-6 to 3e-8, steps of 1e-2 to 1e-6 of them
    assert torch.allclose(moved["linear.weight"], torch.full((1, 4), 1e-6), rtol=0.05, atol=0)
    assert torch.allclose(moved["linear.bias"], torch.full((1,), 1e-2), rtol=1e-4, atol=0)
    assert records[0]["lr"] == pytest.approx(1e-2)
    with pytest.raises(ConfigError, match=r"lr_scales=\{'linear.': 0.0\}; give each parameter prefix a positive"):
        TrainConfig(steps=1, lr_scales={"linear.": 0.0})


def test_hubert_and_mert_recipes_take_fairseqs_schedule_and_decay():
    from zoo.cli import build_parser

    for family in ("hubert", "mert"):
        args = build_parser(family).parse_args(["pretrain", family, "--data", "x", "-o", "y"])
        config = train_config_from_args(args)
        assert config.lr_decay == "linear" and config.decay_every_parameter
    args = build_parser("beats").parse_args(["pretrain", "beats", "--data", "x", "-o", "y", "--lr-decay", "linear"])
    config = train_config_from_args(args)
    assert config.lr_decay == "linear" and not config.decay_every_parameter


def test_a_schedule_that_moves_once_an_epoch_holds_each_epochs_lr(tmp_path):
    """GraphMAE's upstream steps its cosine after each epoch: with schedule_every=5 the five steps of
    an epoch share one factor, epoch e's being the cosine at e / epochs, also across a resume."""
    config = TrainConfig(steps=20, lr=0.1, schedule_every=5, checkpoint_every=7, progress=False)
    assert len(train(make_objective(), toy_batches(), tmp_path, dataclasses.replace(config, time_limit=0.0))) == 1
    records = train(make_objective(), toy_batches(), tmp_path, config)  # resumed at step 1, mid-epoch
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * (step // 5) / 4)) for step in range(20)]
    assert [r["lr"] for r in records] == pytest.approx(expected)
    with pytest.raises(ConfigError, match="schedule_every=0"):
        TrainConfig(steps=2, schedule_every=0)


def test_weight_decay_schedule_rises_on_decayed_groups_only(tmp_path):
    assert weight_decay_at(0, 0.04, 0.4, 10) == pytest.approx(0.04)
    assert weight_decay_at(5, 0.04, 0.4, 10) == pytest.approx(0.22)
    assert weight_decay_at(10, 0.04, 0.4, 10) == pytest.approx(0.4)
    config = TrainConfig(steps=10, lr=0.05, weight_decay=0.04, weight_decay_end=0.4, checkpoint_every=10,
                         progress=False)
    objective = make_objective()
    records = train(objective, toy_batches(), tmp_path, config)
    assert [r["weight_decay"] for r in records] == pytest.approx([weight_decay_at(s, 0.04, 0.4, 10) for s in range(10)])
    groups = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["optimizer"]["param_groups"]
    assert groups[0]["weight_decay"] == pytest.approx(records[-1]["weight_decay"]) and groups[1]["weight_decay"] == 0
    assert "weight_decay" not in train(make_objective(), toy_batches(), tmp_path / "constant",
                                       TrainConfig(steps=2, progress=False))[0]


def test_the_loss_plot_is_redrawn_once_a_minute_and_at_the_end(tmp_path, monkeypatch):
    """It was drawn from the whole log at every checkpoint: 61 s of CPU over a 20,000-step run."""
    import zoo.training

    drawn = []
    monkeypatch.setattr(zoo.training, "plot_losses", lambda records, path: drawn.append(len(records)))
    config = TrainConfig(steps=6, lr=0.05, checkpoint_every=1, progress=False)
    train(make_objective(), toy_batches(), tmp_path / "a", config)
    assert drawn == [1, 6]  # the first checkpoint's, then the last
    monkeypatch.setattr(zoo.training, "PLOT_INTERVAL", 0.0)
    drawn.clear()
    train(make_objective(), toy_batches(), tmp_path / "b", config)
    assert drawn == [1, 2, 3, 4, 5, 6]


def test_loss_falls_and_every_file_is_written(tmp_path):
    config = TrainConfig(steps=60, lr=0.05, warmup_steps=5, checkpoint_every=25, progress=False)
    records = train(make_objective(), toy_batches(), tmp_path, config)
    assert [r["step"] for r in records] == list(range(1, 61))
    assert records[-1]["loss"] < 0.2 * records[0]["loss"]
    assert {"loss", "lr", "grad_norm", "elapsed", "mean_target"} <= set(records[0])
    assert (tmp_path / PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == 60 and state["optimizer"]["state"]
    assert [json.loads(line)["step"] for line in (tmp_path / LOG_FILE).read_text().splitlines()] == list(range(1, 61))


class Interrupted(KeyboardInterrupt):
    """What Ctrl-C raises."""


class Interrupting:
    """Yields `after` batches, then fails as a killed job would."""

    def __init__(self, batches, after: int) -> None:
        self.batches, self.after = batches, after

    def __iter__(self):
        for index, batch in enumerate(self.batches * 100):
            if index == self.after:
                raise Interrupted
            yield batch


def test_resume_continues_as_if_never_stopped(tmp_path):
    config = TrainConfig(steps=12, lr=0.05, warmup_steps=2, checkpoint_every=4, progress=False)
    whole = make_objective()
    train(whole, toy_batches(4), tmp_path / "whole", config)

    stopped = make_objective()
    with pytest.raises(Interrupted):
        # dies while fetching the batch of step 7, after the checkpoint at step 4
        train(stopped, Interrupting(toy_batches(4), after=6), tmp_path / "stopped", config)
    resumed = make_objective()
    records = train(resumed, toy_batches(4), tmp_path / "stopped", config)

    assert [r["step"] for r in records] == list(range(1, 13))
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert torch.load(tmp_path / "stopped" / CHECKPOINT_FILE, weights_only=True)["scheduler"]["last_epoch"] == 12


def test_a_time_limit_stops_with_a_checkpoint_and_a_rerun_goes_on(tmp_path):
    """time_limit=0 lets one step through per call: six calls of one step equal one run of six
    (one batch, since a plain list restarts from its first on resume)."""
    config = TrainConfig(steps=6, lr=0.05, warmup_steps=2, checkpoint_every=100, progress=False)
    whole = make_objective()
    train(whole, toy_batches(1), tmp_path / "whole", config)

    sliced = dataclasses.replace(config, time_limit=0.0)
    for step in range(1, 7):
        resumed = make_objective()
        records = train(resumed, toy_batches(1), tmp_path / "sliced", sliced)
        assert [r["step"] for r in records] == list(range(1, step + 1))
        assert torch.load(tmp_path / "sliced" / CHECKPOINT_FILE, weights_only=True)["step"] == step
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ConfigError, match="time_limit=-1"):
        TrainConfig(steps=1, time_limit=-1)


def test_a_finished_run_is_not_trained_again(tmp_path):
    config = TrainConfig(steps=3, checkpoint_every=10, progress=False)
    train(make_objective(), toy_batches(), tmp_path, config)
    again = make_objective()
    records = train(again, toy_batches(), tmp_path, config)
    assert len(records) == 3 and not torch.equal(again.linear.weight, make_objective().linear.weight)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    train(make_objective(), toy_batches(), tmp_path, TrainConfig(steps=2, progress=False))
    other = nn.Module()
    other.linear = nn.Linear(3, 1)
    other.forward = make_objective().forward
    with pytest.raises(CheckpointError, match="different model"):
        train(other, toy_batches(), tmp_path, TrainConfig(steps=2, progress=False))


def test_a_rerun_with_other_settings_is_refused_not_mixed_in(tmp_path):
    """A run stopped at step 4 of 8 and rerun with other steps or lr would go on under another
    schedule (the lr jumped back up) while its files said it was one run; where and how it runs
    (device, time slices, checkpoint interval) may change."""
    config = TrainConfig(steps=8, lr=0.05, warmup_steps=2, progress=False, time_limit=0.0)
    train(make_objective(), toy_batches(), tmp_path, config)
    for change in ({"steps": 16}, {"lr": 0.1}, {"seed": 1}, {"warmup_steps": 0}):
        with pytest.raises(CheckpointError, match=f"{next(iter(change))}: .* then, .* now"):
            train(make_objective(), toy_batches(), tmp_path, dataclasses.replace(config, **change))
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"] == 1
    local = dataclasses.replace(config, time_limit=None, checkpoint_every=3, device="cpu:0")
    assert len(train(make_objective(), toy_batches(), tmp_path, local)) == 8


def test_a_run_an_older_zoo_began_resumes_without_the_records_it_did_not_keep(tmp_path):
    """A T-JEPA run begun before the zoo recorded its table's digest (`training_data`) was refused
    ("training_data: None then, '32561 rows, sha256 ...' now; rerun with its settings"), which no
    option could satisfy. The record is left out of the comparison where the run lacks it; a setting
    the older zoo's recipe lacked is still refused, saying that no option resumes it."""
    from zoo.run_folders import check_same_run

    older = {"steps": 100, "lr": 0.001}
    check_same_run(older, {**older, "training_data": "32561 rows, sha256 5d7cf66a"}, tmp_path)
    with pytest.raises(CheckpointError, match=r"training_data: '1 rows' then, '2 rows' now\); .*rerun with its "
                                              "settings"):
        check_same_run({**older, "training_data": "1 rows"}, {**older, "training_data": "2 rows"}, tmp_path)
    with pytest.raises(CheckpointError, match=r"schedule_every: None then, 1 now\); .*an older zoo began it, whose "
                                              "recipe had no schedule_every, so no option resumes it"):
        check_same_run(older, {**older, "schedule_every": 1}, tmp_path)
    node_run = {**older, "training_data": "1 training nodes, sha256 3e65ed8910e5a155"}  # worded so before audit 11
    check_same_run(node_run, {**older, "training_data": "140 training nodes, sha256 3e65ed8910e5a155"}, tmp_path)
    with pytest.raises(CheckpointError, match="training_data: '1 training nodes, sha256 3e65ed8910e5a155' then, "
                                              "'1 training nodes, sha256 0e65ed8910e5a155' now"):
        check_same_run(node_run, {**older, "training_data": "1 training nodes, sha256 0e65ed8910e5a155"}, tmp_path)


def test_a_pretrain_command_rerun_with_other_settings_keeps_its_args_json(tmp_path, micro_hubert):
    """args.json says how the run was made: a refused rerun leaves it as it was, and a rerun
    from another machine (other data location, threads, device) goes on."""
    config = TrainConfig(steps=4, progress=False, time_limit=0.0)
    settings = {"args": {"data": "a/", "threads": 2, "mask_prob": 0.8}, "recipe": {"betas": (0.9, 0.98)}}

    def run(run_settings):
        return train_and_save(make_objective(), toy_batches(), tmp_path, config, micro_hubert, "encoder", run_settings,
                              "toy")

    run(settings)
    written = (tmp_path / ARGS_FILE).read_text()
    with pytest.raises(CheckpointError, match=r"args.mask_prob: 0.8 then, 0.5 now"):
        run({**settings, "args": {**settings["args"], "mask_prob": 0.5}})
    assert (tmp_path / ARGS_FILE).read_text() == written
    moved = {**settings, "args": {"data": "/elsewhere/a", "threads": 16, "mask_prob": 0.8}}
    assert [record["step"] for record in run(moved)] == [1, 2]
    assert json.loads((tmp_path / ARGS_FILE).read_text())["args"]["data"] == "/elsewhere/a"


def test_bad_settings_and_divergence_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="bf16"):
        TrainConfig(steps=1, bf16=True, device="cpu")
    with pytest.raises(ConfigError, match=r"warmup_steps=5 must lie in \[0, steps=4\]; .* warm up for fewer$"):
        TrainConfig(steps=4, warmup_steps=5)  # no command line's option: each command adds its own (naming_options)
    with pytest.raises(ConfigError, match="device='gpu' is not a torch device.*use 'cpu' or 'cuda'"):
        TrainConfig(steps=1, device="gpu")
    if not torch.cuda.is_available():  # was a raw RuntimeError from torch.cuda, after args.json was written
        with pytest.raises(ConfigError, match="device='cuda', but torch sees no CUDA device here; use 'cpu'"):
            TrainConfig(steps=1, device="cuda")
    with pytest.raises(ConfigError, match="no batches"):
        train(make_objective(), [], tmp_path / "empty", TrainConfig(steps=1, progress=False))
    nan_batch = [(torch.full((2, 4), float("nan")), torch.zeros(2))]
    with pytest.raises(ZooError, match=r"diverged: the loss is nan at step 1; rerun in a new output folder with a "
                                       r"lower learning rate \(lr=0.0005\) .*\(no checkpoint was saved in "):
        train(make_objective(), nan_batch, tmp_path / "nan", TrainConfig(steps=1, progress=False))
    batches = [(torch.ones(2, 4), torch.zeros(2))] * 2 + nan_batch  # said a checkpoint was kept where none was
    with pytest.raises(ZooError, match=r"loss is nan at step 3; .*checkpoint.pt keeps step 2, but resumes only these"):
        train(make_objective(), batches, tmp_path / "later", TrainConfig(steps=3, checkpoint_every=2, progress=False))


class RunawayStatistic(Regression):
    """A model whose buffer (a BatchNorm's running_var, say) goes infinite while its loss stays
    finite: GraphMAE at lr=1e6 trained on at loss 1.0 and saved weights that `load` refused."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running_var", torch.ones(4))

    def after_step(self) -> None:
        self.running_var.mul_(1e30)


class InfiniteGradient(nn.Module):
    """A finite loss (sqrt of 0) whose gradient is infinite: the step would write NaN into the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))

    def forward(self, batch) -> PretrainOutput:
        return PretrainOutput(loss=torch.sqrt(self.weight - self.weight.detach()).sum(), logs={})


def test_weights_gone_infinite_an_infinite_gradient_or_an_overflowing_step_end_the_run_before_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match=r"diverged: after step 2 the weights hold NaN or infinite values "
                                          r"\(running_var\); .*no checkpoint was saved"):
        train(RunawayStatistic(), toy_batches(4), tmp_path / "runaway",
              TrainConfig(steps=4, checkpoint_every=2, progress=False))
    assert not (tmp_path / "runaway" / CHECKPOINT_FILE).exists()
    with pytest.raises(ConfigError, match="diverged: the gradient norm is inf at step 1"):
        train(InfiniteGradient(), toy_batches(1), tmp_path / "steep", TrainConfig(steps=1, progress=False))
    with pytest.raises(ConfigError, match=r"diverged: the optimizer's step at step 1 overflows float32 \(value "
                                          r"cannot be converted .*\); rerun .* lower learning rate \(lr=1e\+38\)"):
        train(make_objective(), toy_batches(1), tmp_path / "huge", TrainConfig(steps=1, lr=1e38, progress=False))


def test_default_warmup_is_the_recipes_share_of_the_steps():
    for share, steps, warmup in ((0.08, 1000, 80), (10 / 800, 4650, 58)):  # HuBERT's; GMML's 10 of 800 epochs
        parser = argparse.ArgumentParser()
        add_optimization_arguments(parser, warmup_share=share, warmup_source="test")
        assert train_config_from_args(parser.parse_args(["--steps", str(steps)])).warmup_steps == warmup
        assert f"{100 * share:g}% of --steps" in " ".join(parser.format_help().split())
        assert train_config_from_args(parser.parse_args(["--warmup-steps", "3"])).warmup_steps == 3


def test_an_interrupt_says_which_step_the_kept_checkpoint_holds(tmp_path, capsys):
    config = TrainConfig(steps=12, checkpoint_every=4, progress=False)
    with pytest.raises(Interrupted):
        train(make_objective(), Interrupting(toy_batches(4), after=2), tmp_path / "early", config)
    assert "interrupted during step 3; no checkpoint yet (the first comes at step 4)" in capsys.readouterr().err
    with pytest.raises(Interrupted):
        train(make_objective(), Interrupting(toy_batches(4), after=6), tmp_path / "later", config)
    assert f"interrupted during step 7; {tmp_path / 'later' / CHECKPOINT_FILE} holds step 4" in capsys.readouterr().err
    with pytest.raises(Interrupted):  # a run shorter than --checkpoint-every checkpoints at its end
        train(make_objective(), Interrupting(toy_batches(4), after=2), tmp_path / "short",
              TrainConfig(steps=6, checkpoint_every=100, progress=False))
    assert "interrupted during step 3; no checkpoint yet (the first comes at step 6)" in capsys.readouterr().err


def test_an_interrupt_while_a_checkpoint_is_written_says_so(tmp_path, capsys, monkeypatch):
    """It said "interrupted during step 2; no checkpoint yet (the first comes at step 1)"."""
    import zoo.training

    def interrupted(path, state):
        raise Interrupted

    monkeypatch.setattr(zoo.training, "atomic_torch_save", interrupted)
    with pytest.raises(Interrupted):
        train(make_objective(), toy_batches(4), tmp_path / "run", TrainConfig(steps=6, checkpoint_every=1,
                                                                               progress=False))
    assert "interrupted while writing the checkpoint of step 1; none was before" in capsys.readouterr().err


class Signalling:
    """Yields batches; sends this process `signum` while fetching the batch of step `at` + 1
    (twice: a second signal stops it at once), as a scheduler does before it kills a job."""

    def __init__(self, batches, at: int, signum: int, times: int = 1) -> None:
        self.batches, self.at, self.signum, self.times = batches, at, signum, times

    def __iter__(self):
        for index, batch in enumerate(self.batches * 100):
            if index == self.at:
                for _ in range(self.times):
                    os.kill(os.getpid(), self.signum)
            yield batch


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_schedulers_signal_stops_after_the_step_with_its_checkpoint_and_a_rerun_goes_on(tmp_path, capsys, signum):
    """SIGTERM (Slurm, Kubernetes) ended the process at once: the steps since the last checkpoint
    were lost (90 of 190 at --checkpoint-every 100). Now the step in progress ends, is checkpointed,
    and `zoo` exits 128 + the signal; the rerun ends where an unstopped run ends (torch.equal). A
    second signal stops at once, during the step; the handlers are put back after the run."""
    config = TrainConfig(steps=12, lr=0.05, warmup_steps=2, checkpoint_every=100, progress=False)
    whole = make_objective()
    train(whole, toy_batches(1), tmp_path / "whole", config)
    before = signal.getsignal(signum)
    with pytest.raises(Stopped) as stop:
        train(make_objective(), Signalling(toy_batches(1), at=6, signum=signum), tmp_path / "run", config)
    assert stop.value.signum == signum and signal.getsignal(signum) == before
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["step"] == 7
    name = signal.Signals(signum).name
    assert f"training stopped by {name} after step 7; {tmp_path / 'run' / CHECKPOINT_FILE} holds step 7" in \
        capsys.readouterr().err
    resumed = make_objective()
    train(resumed, toy_batches(1), tmp_path / "run", config)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(Stopped):
        train(make_objective(), Signalling(toy_batches(1), at=2, signum=signum, times=2), tmp_path / "twice", config)
    assert "stopped by" in capsys.readouterr().err and not (tmp_path / "twice" / CHECKPOINT_FILE).exists()


class BlockStack(CheckpointedBlocks, nn.Module):
    """Three dropout-linear blocks run through `run_block`, as an encoder runs its layers."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 4), nn.Tanh()) for _ in range(3))
        self.out = nn.Linear(4, 1)

    def forward(self, batch) -> PretrainOutput:
        x, y = batch
        for index, block in enumerate(self.blocks):
            x = self.run_block(index, block, x)
        return PretrainOutput(loss=(self.out(x).squeeze(-1) - y).pow(2).mean(), logs={})


def test_activation_checkpointing_trains_the_same_steps_and_may_change_on_resume(tmp_path):
    """--activation-checkpointing saves memory, not a different run: the same losses and
    weights, and a rerun may turn it on or off."""
    config = TrainConfig(steps=6, lr=0.05, checkpoint_every=2, progress=False)
    runs = {}
    for checkpointed in (False, True):
        torch.manual_seed(0)
        runs[checkpointed] = BlockStack()
        records = train(runs[checkpointed], toy_batches(), tmp_path / str(checkpointed),
                        dataclasses.replace(config, activation_checkpointing=checkpointed))
        assert (runs[checkpointed].checkpointing is not None) is checkpointed
        plain = read_log(tmp_path / "False" / LOG_FILE)
        assert [record["loss"] for record in records] == [record["loss"] for record in plain]
    for key, value in runs[False].state_dict().items():
        assert torch.equal(value, runs[True].state_dict()[key]), key
    parser = argparse.ArgumentParser()
    add_optimization_arguments(parser, "test")
    assert train_config_from_args(parser.parse_args(["--activation-checkpointing"])).activation_checkpointing
    torch.manual_seed(0)
    train(BlockStack(), toy_batches(), tmp_path / "switched", dataclasses.replace(config, time_limit=0.0))
    resumed = train(BlockStack(), toy_batches(), tmp_path / "switched",
                    dataclasses.replace(config, activation_checkpointing=True))
    assert [record["step"] for record in resumed] == list(range(1, 7))


def test_a_run_card_lists_the_settings_that_made_the_weights():
    """Graph and table runs nest their settings: args unprefixed, recipe keys prefixed, the
    architecture left to config.json, machine settings and unset ones left out, table cells escaped,
    and a local --data folder shown by its last part (a published card said "/home/alice/clips")."""
    from zoo.run_cards import settings_rows

    settings = {"args": {"dataset": "cora", "output": "runs/x", "threads": 2, "seed": 0, "device": "cuda",
                         "init": None, "data": "/home/alice/clips"},
                "recipe": {"lr": 0.001, "probe": {"protocol": "svm-10fold"}, "note": "a|b"},
                "architecture": {"num_hidden": 512}}
    assert settings_rows(settings) == [("dataset", "`cora`"), ("seed", "`0`"), ("data", "`clips`"),
                                       ("recipe.lr", "`0.001`"), ("recipe.probe.protocol", "`svm-10fold`"),
                                       ("recipe.note", "`a\\|b`")]


class EndsEarly(Regression):
    """Logs a score after each step and ends the run after step 4, as a validation's patience would."""

    def __init__(self) -> None:
        super().__init__()
        self.finished, self.steps_done = False, 0

    def after_step(self) -> dict:
        self.steps_done += 1
        self.finished = self.steps_done >= 4
        return {"val_score": float(self.steps_done)}


def test_an_objective_logs_after_its_steps_and_may_end_the_run_early(tmp_path):
    config = TrainConfig(steps=10, lr=0.05, checkpoint_every=100, progress=False)
    torch.manual_seed(0)
    records = train(EndsEarly(), toy_batches(), tmp_path, config)
    assert [(r["step"], r["val_score"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"] == 4  # saved where it ended
    resumed = EndsEarly()
    resumed.finished = True  # as its state would say, were it checkpointed: the rerun trains nothing
    assert len(train(resumed, toy_batches(), tmp_path, config)) == 4


@pytest.mark.parametrize("change", [{"lr": math.nan}, {"lr": math.inf}, {"weight_decay": math.nan},
                                    {"time_limit": math.nan}, {"betas": (0.9, math.nan)}])
def test_a_setting_that_is_not_a_finite_number_is_refused(change):
    """NaN passes every range check (each comparison with it is false): it must be refused by name."""
    name = next(iter(change))
    with pytest.raises(ConfigError, match=f"{name}=.*; give a finite number"):
        TrainConfig(steps=1, **change)


def test_seeds_and_counts_that_cannot_work_are_refused_when_parsed(tmp_path, capsys):
    """`zoo finetune --seed -1` failed in numpy after making the run folder; `zoo probe --seeds -1` in sklearn."""
    from zoo.cli import main
    from zoo.options import non_negative_int, positive_float, probability, seed_int

    assert seed_int("0") == 0 and seed_int(str(2**32 - 1)) == 2**32 - 1
    assert non_negative_int("0") == 0 and positive_float("0.5") == 0.5 and probability("1") == 1.0
    bad_values = {seed_int: ("-1", str(2**32), "x"), non_negative_int: ("-1", "1.5"),  # --workers -1: a ValueError
                  positive_float: ("0", "-3", "inf", "nan", "x"),  # --max-seconds 0: one-frame crops, silently
                  probability: ("0", "2", "x")}  # --mask-prob 2: refused only after the k-means labels
    for parse, values in bad_values.items():
        for bad in values:
            with pytest.raises(argparse.ArgumentTypeError):
                parse(bad)
    with pytest.raises(SystemExit, match="2"):  # argparse's refusal
        main(["finetune", "graphmae-cora", "--dataset", "cora", "-o", str(tmp_path / "run"), "--seed", "-1"])
    assert "argument --seed: -1 is not a seed; use 0 to 4294967295" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("family, dataset, folder", [("tjepa", "adult", "adult"), ("graphmae", "mutag", "tu")])
def test_a_recipe_batch_size_below_one_is_refused(family, dataset, folder, tmp_path, capsys):
    """`--set batch_size=0` was a ZeroDivisionError when the batches were counted."""
    from helpers import shared_path

    from zoo.cli import main

    assert main(["pretrain", family, "--dataset", dataset, "--data", str(shared_path("data", folder)),
                 "-o", str(tmp_path / "run"), "--set", "batch_size=0", "--no-progress"]) == 2
    assert "batch_size=0; use a positive batch size (--set batch_size=N)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_records_its_input_files_and_a_resumed_run_takes_them_where_the_data_is_now(tmp_path):
    from zoo.run_folders import INPUTS_FILE, run_input_files

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    files = [data / "a.wav", data / "sub" / "b.wav"]
    for file in files:
        file.write_bytes(b"")
    out = tmp_path / "run"
    assert run_input_files(out, [(data, files)]) == files  # a fresh run: its listing, recorded
    assert json.loads((out / INPUTS_FILE).read_text()) == {"folders": [{"folder": str(data),
                                                                        "files": ["a.wav", "sub/b.wav"]}]}
    (out / CHECKPOINT_FILE).write_bytes(b"")  # the run has begun: a rerun resumes it
    moved = data.rename(tmp_path / "moved")
    assert run_input_files(out, [(moved, [moved / "sub" / "b.wav"])]) == [moved / "a.wav", moved / "sub" / "b.wav"]
    with pytest.raises(ConfigError, match=r"began on 1 data folders \('.*data'\) and this rerun gives 2; pass the "):
        run_input_files(out, [(moved, []), (moved, [])])
    (out / INPUTS_FILE).unlink()  # a run an older zoo began: its labels.pt's files, else the listing
    assert run_input_files(out, [(moved, [moved / "a.wav"])]) == [moved / "a.wav"]
    assert run_input_files(out, [(moved, [moved / "a.wav"])], lambda: [moved / "sub" / "b.wav"]) == \
        [moved / "sub" / "b.wav"]


def test_the_same_state_saved_twice_is_the_same_bytes(tmp_path):
    """torch.save names an archive's records after the path it is given: the random temporary name
    made two equal runs' labels.pt differ byte for byte."""
    from zoo.io import atomic_torch_save

    state = {"labels": [torch.arange(5)], "settings": {"clusters": 3}}
    for run in ("a", "b"):
        atomic_torch_save(tmp_path / run / "labels.pt", state)
    assert (tmp_path / "a" / "labels.pt").read_bytes() == (tmp_path / "b" / "labels.pt").read_bytes()


def test_a_run_folder_is_held_by_one_run_which_clears_what_killed_writes_left(tmp_path):
    """Two runs started on one folder both trained, each replacing the other's log and checkpoint;
    a SIGKILL during a save left a checkpoint-sized `.checkpoint.pt.*.tmp` (or `.encoder.*/`) that
    outlived every rerun. The second run is refused; the first clears those, and only those."""
    from zoo.run_folders import run_lock

    out = tmp_path / "run"
    (out / ".encoder.ab12cd34").mkdir(parents=True)
    (out / ".encoder.ab12cd34" / "config.json").write_text("{}")
    for name in (".checkpoint.pt.x9_y8z7w.tmp", ".features.npy.partial", "notes.txt"):
        (out / name).write_text("x")
    (out / ".ipynb_checkpoints").mkdir()
    with run_lock(out):
        assert sorted(path.name for path in out.iterdir()) == [".features.npy.partial", ".ipynb_checkpoints",
                                                               ".run.lock", "notes.txt"]
        with pytest.raises(ConfigError, match=f"another run is training in '{out}' now; wait for it to finish"):
            with run_lock(out):
                pass
    with run_lock(out):  # released at the end of the run
        pass
