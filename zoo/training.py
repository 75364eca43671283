"""The pretraining loop every family shares.

A family supplies an objective, an `nn.Module` whose `forward(batch)` returns a
`PretrainOutput(loss, logs)` (and, optionally, an `after_step()` run after each optimizer
step, e.g. an EMA update of a teacher or a validation: the logs it returns join the step's
record, and it ends the run early by setting the objective's `finished`), and a source of
batches; `train` does the rest: AdamW with
linear warmup and cosine decay, gradient clipping, optional bf16 autocast on CUDA, a
progress bar, a per-step `log.jsonl`, a loss curve, and a checkpoint that lets an
interrupted run continue exactly where it stopped.

Files written to the output folder:

- `checkpoint.pt`: objective, optimizer, scheduler, step, RNG states, the batch source's
  state and the wall time so far; written atomically every `checkpoint_every` steps and
  at the end. When it is present, `train` resumes from it. A run given a `time_limit`
  writes one and stops when its time is up, so that machines lent for a few minutes at a
  time can carry a long run forward in slices.
- `log.jsonl`: one JSON record per step (`step`, `loss`, `lr`, `grad_norm`, `elapsed`
  seconds, and the objective's logs).
- `loss.png`: the loss curve, redrawn at every checkpoint.
- `inputs.json`: the input files a run listed from its data folders when it began
  (`zoo.run_folders.run_input_files`); a resumed run goes on over these, not over a fresh listing.

A new run that is refused before its trainer starts leaves the folder as it was
(`zoo.run_folders.undone_if_refused`, around every `zoo pretrain` command): inputs.json, a family's labels
and args.json are removed again.

A `zoo pretrain` command also writes its settings to `args.json`, and saves its model with a
card of the run and a copy of `loss.png` (`save_trained`). A rerun resumes only the
same run: other settings (schedule, batches, recipe; not the device, threads or file
locations) are refused rather than mixed into its steps.
"""

from __future__ import annotations

import argparse

import dataclasses
import json
import math
import random
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from zoo.checkpointing import Checkpointing, set_checkpointing
from zoo.errors import (CheckpointError, ConfigError, InputError, Stopped, UnknownModelError, ZooError,
                        on_stop_signals)
from zoo.hub import model_to
from zoo.io import atomic_torch_save, atomic_write_text
from zoo.loss_plot import plot_losses
from zoo.numerics import DIVERGED_WEIGHT, largest_weight, non_finite_weight
from zoo.options import LR_DECAYS
from zoo.outputs import PretrainOutput
from zoo.progress import progress_bar
from zoo.run_folders import (
    CHECKPOINT_FILE, LOG_FILE, PLOT_FILE, check_same_run, loss_curve, make_run_folder, read_log, write_run_settings,
)

OPTIMIZERS = ("adamw", "adam")
#: the fewest seconds between two drawings of a run's loss.png at its checkpoints (its last is always drawn)
PLOT_INTERVAL = 60.0


@dataclasses.dataclass
class TrainConfig:
    """Settings of one pretraining run.

    Args:
        steps: total optimizer steps (a resumed run counts the steps already done).
        lr: peak learning rate, reached after the warmup (default: 5e-4, HuBERT-base's).
        weight_decay: AdamW decay of weight matrices; parameters with fewer than two
            dimensions (biases, norm scales, mask embeddings) are not decayed unless
            `decay_every_parameter` (default: 0.01).
        decay_every_parameter: AdamW decays every parameter, as fairseq's Adam (HuBERT, MERT)
            does (default: False).
        weight_decay_end: if set, the decay follows a cosine from `weight_decay` at the first
            step to this value at the end, as DINO and GMML raise it (0.04 -> 0.4) so that
            late training is regularised harder; None keeps it constant (default: None).
        betas / eps: AdamW moments (defaults: (0.9, 0.98) / 1e-6, as fairseq's HuBERT).
        warmup_steps: steps of linear warmup from lr/warmup_steps to lr (default: 0).
        min_lr_ratio: after the warmup the lr decays from lr to lr * min_lr_ratio at the last step (default: 0).
        lr_decay: the shape of that decay: "cosine", or "linear" as fairseq's `polynomial_decay`
            (power 1) in the HuBERT and MERT recipes (default: "cosine").
        schedule_every: the lr schedule moves every this many steps, holding each factor in between:
            a recipe whose upstream steps its scheduler once an epoch (GraphMAE's) gives its batches
            per epoch, so that its cosine runs over epochs as upstream's does (default: 1).
        max_grad_norm: clip the global gradient norm to this; None logs the norm without
            clipping (default: 10.0, fairseq's clip_norm for HuBERT).
        max_grad_value: clamp every gradient element to [-value, value] before the norm
            clipping; None leaves them (default: None; T-JEPA's recipe clamps at 1.0).
        lr_scales: peak-lr multipliers of the parameters whose names start with a key (the first
            key that matches), e.g. `{"classifier.encoder.": 1e-4}` for an encoder that must move
            far slower than its head (`zoo finetune --mode full` on a standardised T-JEPA); the
            logged lr is the unscaled one; None trains every parameter at `lr` (default: None).
        checkpoint_every: steps between checkpoints; the last step always writes one (default: 100).
        seed: seeds torch, numpy and Python's RNGs at the start of a fresh run (default: 0).
        device: where to train, e.g. "cpu" or "cuda:0" (default: "cpu").
        bf16: bfloat16 autocast for the forward pass; CUDA only (default: False).
        progress: show a tqdm bar with the loss (default: True).
        optimizer: "adamw" (decoupled decay of weight matrices only) or "adam" (L2 decay
            of every parameter, as the GraphMAE recipes use) (default: "adamw").
        time_limit: seconds of wall time for this call; once they have passed, the step
            under way finishes, a checkpoint is written and `train` returns early, so that a
            rerun continues the run; None trains to the end (default: None).
        activation_checkpointing: recompute the encoder's block activations in the backward
            pass (`zoo.checkpointing`): less memory, the same steps (default: False).
    """

    steps: int
    lr: float = 5e-4
    weight_decay: float = 0.01
    weight_decay_end: Optional[float] = None
    decay_every_parameter: bool = False
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    lr_decay: str = "cosine"
    schedule_every: int = 1
    max_grad_norm: Optional[float] = 10.0
    max_grad_value: Optional[float] = None
    lr_scales: Optional[dict[str, float]] = None
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    progress: bool = True
    optimizer: str = "adamw"
    time_limit: Optional[float] = None
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.check_finite()
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps}; train for at least one step")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr}; the learning rate must be positive")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"warmup_steps={self.warmup_steps} must lie in [0, steps={self.steps}]; train for more "
                              "steps or warm up for fewer")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio={self.min_lr_ratio} must lie in [0, 1]")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(f"lr_decay={self.lr_decay!r}; use one of {', '.join(LR_DECAYS)}")
        if self.schedule_every < 1:
            raise ConfigError(f"schedule_every={self.schedule_every}; the schedule moves every 1 or more steps")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay}; use a decay >= 0")
        if self.weight_decay_end is not None and self.weight_decay_end < 0:
            raise ConfigError(f"weight_decay_end={self.weight_decay_end}; use a decay >= 0 or None for a constant one")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every}; use a positive number of steps")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"max_grad_norm={self.max_grad_norm}; use a positive norm or None for no clipping")
        if self.max_grad_value is not None and self.max_grad_value <= 0:
            raise ConfigError(f"max_grad_value={self.max_grad_value}; use a positive value or None for no clamping")
        if self.lr_scales is not None and not all(math.isfinite(scale) and scale > 0
                                                  for scale in self.lr_scales.values()):
            raise ConfigError(f"lr_scales={self.lr_scales}; give each parameter prefix a positive, finite multiplier")
        if self.time_limit is not None and self.time_limit < 0:
            raise ConfigError(f"time_limit={self.time_limit}; use seconds >= 0 or None to train to the end")
        try:
            device = torch.device(self.device)
        except RuntimeError as err:
            raise ConfigError(f"device={self.device!r} is not a torch device ({err}); use 'cpu' or 'cuda'") from err
        if device.type == "cuda" and not torch.cuda.is_available():  # before a run writes anything
            raise ConfigError(f"device={self.device!r}, but torch sees no CUDA device here; use 'cpu'")
        if self.bf16 and device.type != "cuda":
            raise ConfigError(f"bf16=True is autocast for CUDA devices, not device={self.device!r}; train without it "
                              "on CPU")

    def check_finite(self) -> None:
        """Every number a finite one: a NaN passes each range check below (every comparison with it
        is false) and would surface steps later as a NaN loss blamed on the learning rate."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            for number in value if isinstance(value, tuple) else (value,):
                if isinstance(number, float) and not math.isfinite(number):
                    raise ConfigError(f"{field.name}={value}; give a finite number")

    def deadline(self) -> Optional[float]:
        """The `time.monotonic()` at which the time limit, counted from now, runs out (None without
        one), for a command whose work before training counts against its limit too, as MERT's
        teachers' pass and k-means and HuBERT's features' pass do: a slice of a lent machine is one limit for
        the whole command (`left_before`)."""
        return None if self.time_limit is None else time.monotonic() + self.time_limit

    def left_before(self, deadline: Optional[float]) -> "TrainConfig":
        """These settings with the time left before `deadline` as their limit (down to 0: training then
        stops after one step); unchanged for None."""
        if deadline is None:
            return self
        return dataclasses.replace(self, time_limit=max(0.0, deadline - time.monotonic()))


class TimeLimitReached(BaseException):
    """A command's time limit passed before its training began, in work that a rerun goes on with
    (MERT's teachers' pass and k-means, HuBERT's features' pass). A BaseException, as KeyboardInterrupt is: a
    stop, not a failure, so that code removing what a failed step wrote (`except Exception`) keeps
    it for the rerun."""


#: the size `zoo pretrain` builds without --variant
DEFAULT_VARIANT = "tiny"


def encoder_to_pretrain(args: argparse.Namespace, encoder_class: type, build: Callable[[], Any]) -> Any:
    """The encoder a `zoo pretrain` run starts from: `build()` (a random init of --variant), or
    the float32 weights `--init` names, whose architecture and processor are kept."""
    if not args.init:
        args.variant = args.variant or DEFAULT_VARIANT  # as run: a rerun that names the default resumes
        return build()
    if args.variant is not None or args.overrides:
        raise ConfigError(f"--init {args.init} brings its own architecture; drop --variant and --set")
    from zoo.hub import load_trained

    encoder = load_trained(args.init, "--init")
    if type(encoder) is not encoder_class:
        raise InputError(f"--init {args.init!r} holds a {type(encoder).__name__}, not a {encoder_class.__name__}")
    return encoder.float().train()


@contextmanager
def naming_options(options: dict[str, str]) -> Iterator[None]:
    """A TrainConfig made inside whose refusal of a field in `options` ends with the command line's
    spelling of it (`{"warmup_steps": "--steps N or --warmup-steps N"}`): TrainConfig names its
    fields (its messages start `field=`), as a Python caller has no command line, and each command
    spells them its own way; one hint for all sent HuBERT's users to a `--set warmup_steps=N` it refuses."""
    try:
        yield
    except ConfigError as err:
        option = options.get(str(err).partition("=")[0])
        if option is None:
            raise
        raise type(err)(f"{err} ({option})") from err


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of `add_optimization_arguments`' options."""
    warmup = round(args.warmup_share * args.steps) if args.warmup_steps is None else args.warmup_steps
    with naming_options({"warmup_steps": "--steps N or --warmup-steps N", "bf16": "drop --bf16"}):
        return TrainConfig(
            steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=warmup, lr_decay=args.lr_decay,
            decay_every_parameter=args.decay_every_parameter,
            max_grad_norm=args.max_grad_norm, checkpoint_every=args.checkpoint_every, seed=args.seed,
            device=args.device, bf16=args.bf16, progress=not args.no_progress, time_limit=args.time_limit,
            activation_checkpointing=args.activation_checkpointing,
        )


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float, decay: str = "cosine") -> float:
    """Multiplier of the peak lr at 0-based `step`: linear warmup, then a cosine (or a straight
    line, `decay="linear"`) to `min_lr_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    remaining = 1.0 - progress if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * remaining


def weight_decay_at(step: int, start: float, end: float, total_steps: int) -> float:
    """Weight decay at 0-based `step`: a cosine from `start` (step 0) towards `end` (DINO's
    `cosine_scheduler` without warmup: it reaches `end` one step after the last)."""
    progress = min(1.0, step / max(1, total_steps))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW that decays weight matrices only (decaying norms and biases only hurts) or, where a
    recipe was tuned so (`decay_every_parameter`), every parameter; or Adam with L2 decay of every
    parameter where a recipe was tuned with it. Parameters `config.lr_scales` names get their own lr."""
    if config.optimizer == "adam":
        params = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.Adam(lr_scaled(module, [{"params": params, "scheduled_decay": True}], config),
                                lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
    decayed = (lambda p: True) if config.decay_every_parameter else (lambda p: p.dim() >= 2)
    decay = [p for p in module.parameters() if p.requires_grad and decayed(p)]
    no_decay = [p for p in module.parameters() if p.requires_grad and not decayed(p)]
    groups = [{"params": decay, "weight_decay": config.weight_decay, "scheduled_decay": True},
              {"params": no_decay, "weight_decay": 0.0, "scheduled_decay": False}]
    return torch.optim.AdamW(lr_scaled(module, groups, config), lr=config.lr, betas=config.betas, eps=config.eps)


def lr_scaled(module: nn.Module, groups: list[dict[str, Any]], config: TrainConfig) -> list[dict[str, Any]]:
    """`groups` split by `config.lr_scales`, each part at `config.lr` times its scale (kept as
    "lr_scale", so that the log shows the unscaled lr), the unscaled part first; as they are
    without scales."""
    if not config.lr_scales:
        return groups
    scale_of = {id(p): next((scale for prefix, scale in config.lr_scales.items() if name.startswith(prefix)), 1.0)
                for name, p in module.named_parameters()}
    return [{**group, "params": [p for p in group["params"] if scale_of[id(p)] == scale], "lr": config.lr * scale,
             "lr_scale": scale}
            for group in groups for scale in sorted({scale_of[id(p)] for p in group["params"]}, reverse=True)]


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) dict/list/tuple batch moved to `device`; anything else as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(value, device) for value in batch)
    return batch


def named_recipe(family: str, recipe: Optional[str], dataset: str) -> Any:
    """The hub_config entry whose recipe a run follows: --recipe's, else --dataset's. One that does not
    exist is named with the option that chose it, and a dataset without a recipe gets the fix."""
    from zoo import registry

    option, name = ("--recipe", recipe) if recipe else ("--dataset", dataset)
    try:
        return registry.recipe(family, name)
    except UnknownModelError as err:
        fix = "; to train on another set, borrow the recipe of a similar one with --recipe NAME" \
            if option == "--dataset" else ""
        raise UnknownModelError(f"{option} {name}: {err}{fix}") from err


#: what a recipe records of itself, which `--set` cannot change: the set it was made for and how its
#: encoder is probed (accepted by `--set` once, and silently ignored)
RECIPE_RECORDS = {"dataset": "pass --dataset NAME (and --recipe NAME to borrow another set's recipe)",
                  "probe": "pass the probe's options to `zoo probe`"}


def refuse_recipe_records(overrides: dict[str, Any]) -> None:
    """Refuse `--set` of a recipe's record of itself, naming the option that does what was meant."""
    records = sorted(set(overrides) & set(RECIPE_RECORDS))
    if records:
        key = records[0]
        raise ConfigError(f"--set {key}=...: '{key}' records what the recipe was made for, not a training "
                          f"setting; {RECIPE_RECORDS[key]}")


def check_recipe_batch_size(recipe: dict[str, Any]) -> None:
    """A recipe's batch size after `--set`: at least one (0 was a ZeroDivisionError mid-run)."""
    if recipe.get("batch_size", 1) < 1:
        raise ConfigError(f"batch_size={recipe['batch_size']}; use a positive batch size (--set batch_size=N)")


class ErrorsAsValues(torch.utils.data.Dataset):
    """A map-style dataset for DataLoader workers whose zoo errors come back as values: the main
    process raises them (`raise_if_error`) with their own message, where DataLoader would raise a
    new one whose message is the worker's traceback."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except ZooError as err:
            return err


def raise_if_error(item: Any) -> Any:
    """`item`, unless it is an error an `ErrorsAsValues` worker returned: then raise it."""
    if isinstance(item, ZooError):
        raise item
    return item


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's RNGs: a fresh run draws its masks, crops and init from all three."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The states of every RNG a step may draw from (masks, dropout, crops), as plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved, so that a resumed run draws what the uninterrupted one would have;
    CUDA states are skipped on a machine without CUDA (a run moved from a GPU to a CPU)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])


class Trainer:
    """State of one run: the objective, its optimizer and schedule, and the output files."""

    def __init__(self, objective: nn.Module, batches: Iterable[Any], out_dir: Path, config: TrainConfig) -> None:
        self.objective = objective
        self.batches = batches
        self.out_dir = out_dir
        self.config = config
        self.device = torch.device(config.device)
        model_to(self.objective, self.device, None)  # a device this machine lacks is a ConfigError
        if config.activation_checkpointing:
            set_checkpointing(objective, Checkpointing())
        self.optimizer = make_optimizer(objective, config)
        schedule = partial(lr_factor, warmup_steps=config.warmup_steps, total_steps=config.steps,
                           min_lr_ratio=config.min_lr_ratio, decay=config.lr_decay)
        every = config.schedule_every
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: schedule(step - step % every))
        self.step = 0
        self.elapsed = 0.0
        self.saved_step: Optional[int] = None
        self.plotted_at: Optional[float] = None
        self.stop_signal: Optional[int] = None
        self.saving = False

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_FILE

    def save_checkpoint(self, last: bool = False) -> None:
        """Write checkpoint.pt, and redraw loss.png from the whole log at the `last` checkpoint of
        this call, or if `PLOT_INTERVAL` seconds have passed since it was drawn: drawn at every
        checkpoint, a 20,000-step run spent 61 s of CPU on it (0.45 s a drawing by its end)."""
        weights = self.objective.state_dict()
        broken = non_finite_weight(weights)
        if broken is not None:  # a BatchNorm's running_var went infinite under a loss that stayed finite
            raise self.diverged(f"after step {self.step} the weights hold NaN or infinite values ({broken})")
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "objective": weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "batches": self.batches.state_dict() if hasattr(self.batches, "state_dict") else None,
            "config": dataclasses.asdict(self.config),
        }
        atomic_torch_save(self.checkpoint_path, state)
        self.saved_step = self.step
        now = time.monotonic()
        if last or self.plotted_at is None or now - self.plotted_at >= PLOT_INTERVAL:
            plot_losses(read_log(self.log_path), self.out_dir / PLOT_FILE)
            self.plotted_at = now

    def resume(self) -> None:
        """Load `checkpoint.pt` and drop log records of steps after it (they are redone)."""
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch.load raises several unrelated types for corrupt files
            raise CheckpointError(
                f"cannot read {self.checkpoint_path} ({err}); delete it to start over or use another output folder"
            ) from err
        check_same_run(state["config"], dataclasses.asdict(self.config), self.checkpoint_path)
        try:
            self.objective.load_state_dict(state["objective"])
        except RuntimeError as err:
            raise CheckpointError(
                f"{self.checkpoint_path} was written for a different model ({err}); "
                "use another output folder or delete the checkpoint to start over"
            ) from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        if state["batches"] is not None and hasattr(self.batches, "load_state_dict"):
            self.batches.load_state_dict(state["batches"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.saved_step = self.step
        kept = [record for record in read_log(self.log_path) if record["step"] <= self.step]
        atomic_write_text(self.log_path, "".join(json.dumps(record) + "\n" for record in kept))
        left = "nothing left to train" if self.finished else "going on"  # a run its patience ended, too
        print(f"resuming from {self.checkpoint_path} at step {self.step} of {self.config.steps} ({left})",
              file=sys.stderr, flush=True)

    def start(self) -> None:
        """Resume from the folder's checkpoint, or seed the RNGs and start a fresh log."""
        make_run_folder(self.out_dir)
        if self.checkpoint_path.is_file():
            self.resume()
        else:
            seed_everything(self.config.seed)
            atomic_write_text(self.log_path, "")

    def train_step(self, batch: Any) -> dict[str, Any]:
        """One optimizer step; returns the step's log record."""
        autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)
        with autocast:
            output: PretrainOutput = self.objective(move_to(batch, self.device))
        loss = output.loss
        if not torch.isfinite(loss):
            raise self.diverged(f"the loss is {loss.item()} at step {self.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_value is not None:
            torch.nn.utils.clip_grad_value_(self.objective.parameters(), self.config.max_grad_value)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.objective.parameters(), max_norm)
        if not torch.isfinite(grad_norm):  # the step would write NaN into every weight it clips
            raise self.diverged(f"the gradient norm is {grad_norm.item()} at step {self.step + 1}")
        first = self.optimizer.param_groups[0]
        lr = first["lr"] / first.get("lr_scale", 1.0)
        decay = self.schedule_weight_decay()
        self.optimizer_step()
        self.scheduler.step()
        after = self.after_step()
        decay_log = {} if decay is None else {"weight_decay": decay}
        return {"loss": loss.item(), "lr": lr, "grad_norm": grad_norm.item(), **decay_log, **output.logs,
                **(after or {})}

    def after_step(self) -> Optional[dict[str, Any]]:
        """The objective's `after_step`, if it has one (an EMA update, a validation score). After a
        step that blew the weights up, a validation's `embed` refuses the NaN features it gets
        as a bad checkpoint's, naming a validation item: said here as the divergence it is."""
        if not hasattr(self.objective, "after_step"):
            return None
        try:
            return self.objective.after_step()
        except ZooError as err:
            broken, largest = non_finite_weight(self.objective.state_dict()), largest_weight(self.objective)
            if broken is None and largest < DIVERGED_WEIGHT:
                raise
            what = f"hold NaN or infinite values ({broken})" if broken is not None else f"reach {largest:.3g}"
            raise self.diverged(f"after step {self.step + 1} the weights {what}") from err

    def optimizer_step(self) -> None:
        """`optimizer.step()`, whose float32 overflow of AdamW's step size (lr divided by its bias
        correction: lr=1e38 at step 1) ends the run as a divergence does, with the fix, not as
        torch's bare RuntimeError."""
        try:
            self.optimizer.step()
        except RuntimeError as err:
            if "overflow" not in str(err):
                raise
            raise self.diverged(f"the optimizer's step at step {self.step + 1} overflows float32 ({err})") from err

    def diverged(self, what: str) -> ConfigError:
        """The error that ends a run whose numbers went NaN or infinite. Its checkpoint (weights
        checked finite before each is written) resumes only the same settings, which would diverge
        again, so the way on is a new run with a lower learning rate."""
        kept = (f"{self.checkpoint_path} keeps step {self.saved_step}, but resumes only these settings"
                if self.saved_step is not None else f"no checkpoint was saved in {self.out_dir}")
        return ConfigError(f"training diverged: {what}; rerun in a new output folder with a lower learning rate "
                           f"(lr={self.config.lr}) or harder gradient clipping ({kept})")

    @property
    def finished(self) -> bool:
        """Whether the run is done: all its steps taken, or ended early by its objective."""
        return self.step >= self.config.steps or bool(getattr(self.objective, "finished", False))

    def schedule_weight_decay(self) -> Optional[float]:
        """Set this step's decay on the decayed parameter groups; None when it is constant."""
        if self.config.weight_decay_end is None:
            return None
        decay = weight_decay_at(self.step, self.config.weight_decay, self.config.weight_decay_end, self.config.steps)
        for group in self.optimizer.param_groups:
            if group.get("scheduled_decay"):
                group["weight_decay"] = decay
        return decay

    def batch_stream(self) -> Iterator[Any]:
        """Batches without end: a finite source (a DataLoader) is iterated again for each epoch."""
        while True:
            empty = True
            for batch in self.batches:
                empty = False
                yield batch
            if empty:
                raise ConfigError("the batch source yielded no batches; check the data folder and the batch size")

    def run(self) -> list[dict[str, Any]]:
        """Train to `config.steps` (or the time limit); a scheduler's SIGTERM or SIGUSR1 stops it
        after the step it is in, with a checkpoint of that step (`stopping_on_signals`). On Ctrl-C
        or such a stop, say which step the kept checkpoint holds before the interrupt goes on up."""
        self.start()
        try:
            with stopping_on_signals(self):
                return self.run_steps()
        except (KeyboardInterrupt, Stopped) as stop:
            print(self.interrupted(f"stopped by {stop}" if isinstance(stop, Stopped) else "interrupted"),
                  file=sys.stderr, flush=True)
            raise

    def interrupted(self, how: str) -> str:
        """What an interrupted run left: the checkpoint it holds, and where the interrupt came."""
        if self.saving:
            kept = f"the one of step {self.saved_step} is kept" if self.saved_step is not None else "none was before"
            return f"training {how} while writing the checkpoint of step {self.step}; {kept}"
        when = f"after step {self.step}" if self.saved_step == self.step else f"during step {self.step + 1}"
        first = min(self.config.checkpoint_every, self.config.steps)
        kept = (f"{self.checkpoint_path} holds step {self.saved_step}" if self.saved_step is not None
                else f"no checkpoint yet (the first comes at step {first})")
        return f"training {how} {when}; {kept}"

    def run_steps(self) -> list[dict[str, Any]]:
        self.objective.train()
        stream = self.batch_stream()
        begun = time.monotonic()
        with self.log_path.open("a", encoding="utf-8") as log, progress_bar(
            total=self.config.steps, initial=self.step, progress=self.config.progress, desc="train",
            unit="step", dynamic_ncols=True,
        ) as bar:
            while not self.finished:
                started = time.monotonic()
                record = self.train_step(next(stream))
                self.step += 1
                self.elapsed += time.monotonic() - started
                log.write(json.dumps({"step": self.step, **record, "elapsed": round(self.elapsed, 3)}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                bar.update()
                out_of_time = self.config.time_limit is not None and time.monotonic() - begun >= self.config.time_limit
                stop = self.stop_signal
                last = out_of_time or stop is not None or self.finished
                if last or self.step % self.config.checkpoint_every == 0:
                    self.saving = True
                    self.save_checkpoint(last)
                    self.saving = False
                if stop is not None:
                    raise Stopped(stop)
                if out_of_time:
                    break
        return read_log(self.log_path)


@contextmanager
def stopping_on_signals(trainer: Trainer) -> Iterator[None]:
    """While `trainer` steps, a SIGTERM or SIGUSR1 asks it to stop once the step it is in is done
    and checkpointed: they ended the process at once, and the steps since its last checkpoint were
    lost (90 of 190 at the default --checkpoint-every). A second one stops it at once. Python takes
    signals in the main thread only; a run in another thread keeps the defaults."""

    def asked(signum: int, frame: Any) -> None:
        if trainer.stop_signal is not None:
            raise Stopped(signum)
        trainer.stop_signal = signum

    with on_stop_signals(asked):
        yield


def train(objective: nn.Module, batches: Iterable[Any], out_dir: str | Path,
          config: TrainConfig) -> list[dict[str, Any]]:
    """Pretrain `objective` for `config.steps` steps, resuming from `out_dir/checkpoint.pt` if present.

    Args:
        objective: an `nn.Module` whose `forward(batch)` returns a `PretrainOutput`; it owns
            the encoder, so its state dict is what the checkpoint saves.
        batches: an iterable of batches (dicts, lists or tensors; moved to `config.device`).
            A finite one is iterated again when it runs out. If it has `state_dict()` and
            `load_state_dict()` (as torchdata's `StatefulDataLoader`), its state is
            checkpointed too, so that a resumed run sees the batches it would have seen;
            otherwise it restarts from its beginning on resume.
        out_dir: folder for checkpoint.pt, log.jsonl and loss.png.
        config: the optimization settings.

    Returns:
        The log records of steps 1..`config.steps`, or of the steps done so far when
        `config.time_limit` stopped the run or the objective ended it (`finished`): `step`,
        `loss`, `lr`, `grad_norm`, `elapsed`, and the objective's logs.
    """
    return Trainer(objective, batches, Path(out_dir), config).run()


def train_and_save(objective: nn.Module, batches: Iterable[Any], out_dir: str | Path, config: TrainConfig,
                   model: Any, folder: str, settings: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """A `zoo pretrain` run: write `settings` to args.json, `train`, save `model` to `out_dir/folder`
    with its card and report it (`save_trained`).

    When the time limit stops a run, the encoder of the step reached is saved too, so that it
    can be probed before the run goes on."""
    out = Path(out_dir)
    write_run_settings(out, settings)
    records = train(objective, batches, out, config)
    save_trained(model, out, folder, records, config, settings, tag)
    return records


def save_trained(model: Any, out: Path, folder: str, records: list[dict[str, Any]], config: TrainConfig,
                 settings: dict[str, Any], tag: str) -> None:
    """Save a run's model to `out/folder` with a card saying how it was pretrained and showing its
    loss curve (copied beside it, so that `zoo publish` sends it), and report the run."""
    from zoo.run_cards import run_card, shown_path, with_base_model

    curve = loss_curve(out)
    init = settings.get("init")
    how = f"Pretrained with `zoo pretrain {getattr(model, 'encoder', model).family}`"
    card = run_card(model, records, config, settings, PLOT_FILE if curve else None,
                    f"{how} from the weights of `{shown_path(init)}`" if init else how)
    if init:
        card = with_base_model(card, init)
    model.save_pretrained(out / folder, model_card=card, extra_files=curve)
    report_run(tag, records, config, out / folder)


def say(tag: str, message: str) -> None:
    """Print one line of a command's progress to stderr as `[tag] message`, flushed at once so that it
    lands in order among the progress bars (which also write to stderr)."""
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def report_run(tag: str, records: list[dict[str, Any]], config: TrainConfig, saved: Path) -> None:
    """Print how a `zoo pretrain` run ended: steps, seconds, the loss at the start and the end
    (means of the first and last 10 % of the steps, at most 50) and where the encoder went;
    when the time limit stopped it, how to go on."""
    from zoo.run_cards import averaged, loss_summary

    window, first, last = loss_summary(records)
    done = records[-1]["step"]
    status = "done" if done == config.steps else f"time limit reached at step {done} of {config.steps}"
    say(tag, f"{status}: {done} steps in {records[-1]['elapsed']:.0f} s, loss {first:.4g} -> {last:.4g} "
        f"({averaged(window)}); saved {saved}")
    if done < config.steps:
        say(tag, f"rerun the same command to continue from {saved.parent / CHECKPOINT_FILE}")
