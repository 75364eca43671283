"""`zoo pretrain tjepa --dataset adult --data DIR -o OUT`: T-JEPA on a table, with a hub_config recipe.

The hub_config whose `pretraining.dataset` names the recipe gives the architecture and
the recipe (epochs, batch size, AdamW with warmup and cosine decay, gradient clamping,
mask shares, predictor, EMA momentum); `--set key=value` overrides any of them. The table
is a named set's training split (`--dataset`), or any CSV/Parquet file (`--table`, with
`--target` naming the label column to leave out). The processor is fitted on that table,
so the encoder's columns follow it. The run resumes from `OUT/checkpoint.pt` and saves
the target encoder, with its fitted processor, to `OUT/encoder`, its output standardised
over the training rows (`standardize_output`; training itself runs on the raw tokens).

Against the official run.py / train.py, fed the same batches and masks (`mask_scope:
"official"`), the losses and the target encoder agree to 2e-7 over 60 steps once the lr
schedules agree. They differ in: the lr (the official scheduler sets the lr after each
step, so its first step runs at AdamW's default 1e-3 and its warmup lags ours by a step);
the gradient clamp, which here covers the predictor too (the official hooks clamp the
context encoder only; in tjepa-adult's recipe no element reached 1: predictor 0.23,
encoder 3e-4); constant weight decay, on every matrix (the official decay follows a cosine
and spares `tokenizer.bias`; both recipes use 0); rows shuffled each epoch (the official
loader keeps their order); and independently drawn attention input projections (the
official layers are copies of one layer, so they start equal). The recipes mask with
`mask_scope: "features"`: every context keeps the regularization token and every feature can be
context or target, where the official code indexes the tokens with feature indices, so that the
regularization token is in a quarter of the contexts and the last feature is never masked
(`masking.py`; "official" does the same).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from modalities.tabular.processing import TableProcessor
from modalities.tabular.tjepa.masking import MaskSampler
from modalities.tabular.tjepa.model import TJEPAConfig, TJEPAEncoder, with_output_scale
from modalities.tabular.tjepa.objective import TJEPAPretraining
from zoo.config import check_override_types, parse_overrides
from zoo.errors import ConfigError, InputError
from zoo.registry import ModelEntry
from zoo.run_folders import command_settings, data_record, write_run_settings
from zoo.training import (
    TrainConfig, check_recipe_batch_size, named_recipe, naming_options, refuse_recipe_records, save_trained, say,
    train,
)

ENCODER_FOLDER = "encoder"
MASK_KEYS = ("min_context_share", "max_context_share", "min_target_share", "max_target_share", "num_preds")
RECIPE_KEYS = ("epochs", "batch_size", "lr", "warmup_epochs", "weight_decay", "max_grad_value",
               "ema_start", "ema_end", "mask_scope", "predictor", *MASK_KEYS)
#: architecture fields that come from the fitted table, never from a recipe
TABLE_KEYS = ("num_numeric", "cardinalities")


def resolve_recipe(entry: ModelEntry, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture settings, recipe) of a tjepa hub_config's recipe, with overrides applied."""
    refuse_recipe_records(overrides)
    arch_keys = {f.name for f in dataclasses.fields(TJEPAConfig)} - set(TABLE_KEYS)
    unknown = sorted(set(overrides) - arch_keys - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(f"--set names unknown settings {unknown}; valid: {sorted(arch_keys | set(RECIPE_KEYS))}")
    architecture = {k: v for k, v in entry.architecture.items() if k not in TABLE_KEYS}
    architecture.update({k: v for k, v in overrides.items() if k in arch_keys})
    recipe_overrides = {k: v for k, v in overrides.items() if k in RECIPE_KEYS}
    check_override_types(entry.pretraining, recipe_overrides, "--set")
    recipe = {**entry.pretraining, **recipe_overrides}
    if "predictor" in recipe_overrides:  # a part of it (--set 'predictor={"depth": 4}') replaced it whole
        known = entry.pretraining["predictor"]
        unknown = sorted(set(recipe_overrides["predictor"]) - set(known))
        if unknown:
            raise ConfigError(f"--set predictor names unknown settings {unknown}; valid: {sorted(known)}")
        recipe["predictor"] = {**known, **recipe_overrides["predictor"]}
    return architecture, recipe


def training_table(args: argparse.Namespace) -> tuple[pd.DataFrame, TableProcessor]:
    """The rows to pretrain on (a named set's training split, or --table) and the processor fitted on them."""
    from modalities.tabular.datasets import load_dataset
    from modalities.tabular.tables import read_table

    if bool(args.dataset) == bool(args.table):
        raise InputError("pass exactly one of --dataset NAME or --table FILE")
    if args.table:
        frame = read_table(args.table)
        return frame, TableProcessor.fit(frame, target=args.target, categorical=args.categorical, ignore=args.ignore)
    if args.ignore or args.categorical or args.target:
        raise InputError(f"--target, --ignore and --categorical go with --table; {args.dataset}'s columns are set by "
                         "the zoo")
    splits = load_dataset(args.dataset, args.data)
    return splits.train, TableProcessor.fit(splits.train, target=splits.target, categorical=splits.categorical)


def check_rows_differ(inputs: dict[str, torch.Tensor], source: str) -> None:
    """T-JEPA learns from how rows differ, and the saved encoder's output is scaled by their spread:
    a table whose rows were all the same in its features trained, then scaled every other row's
    tokens by about 1e12 (a single row trained a step and failed on the scale)."""
    features = torch.cat([inputs["numeric"].double(), inputs["categorical"].double()], dim=1)
    distinct = len(torch.unique(features, dim=0))  # rows and features are at least one: fit refuses fewer
    if distinct < 2:
        raise InputError(f"{source} has {len(features)} row(s) and {distinct} different in the encoder's features; "
                         "pretraining needs at least 2 rows that differ (the encoder learns from their differences "
                         "and its output is scaled by their spread)")


def table_digest(frame: pd.DataFrame) -> str:
    """The rows a run trains on, whatever file holds them: a rerun on other rows or values went on
    from the checkpoint without a word (--table may move, as --data may)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return data_record(len(frame), "rows", digest)


def check_recipe(recipe: dict[str, Any]) -> None:
    """Recipe values torch would take and train badly on: an EMA momentum past 1 diverged (the loss
    went from 1.0 to 440 in 5 epochs) without a word."""
    for key in ("ema_start", "ema_end"):
        if not 0 <= recipe[key] <= 1:
            raise ConfigError(f"{key}={recipe[key]}; the target encoder's EMA momentum is in [0, 1] (e.g. 0.996)")
    if recipe["warmup_epochs"] < 0:  # was named as the other recipes' warmup_steps, which this one refuses
        raise ConfigError(f"warmup_epochs={recipe['warmup_epochs']}; warm up for 0 or more epochs")
    sizes = {key: recipe["predictor"][key] for key in ("width", "depth", "heads", "feedforward")}
    if any(size < 1 for size in sizes.values()):
        raise ConfigError(f"predictor {sizes}: each must be at least 1")


class TableBatches:
    """Shuffled mini-batches of a table's rows, resumable mid-epoch (epoch and position are checkpointed)."""

    def __init__(self, inputs: dict[str, torch.Tensor], batch_size: int, seed: int) -> None:
        self.inputs, self.batch_size, self.seed = inputs, batch_size, seed
        self.rows = len(inputs["numeric"])
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of the current epoch, or the next epoch when the current one is done."""
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        order = torch.from_numpy(np.random.default_rng([self.seed, self.epoch]).permutation(self.rows))
        while self.position < len(self):
            index = order[self.position * self.batch_size : (self.position + 1) * self.batch_size]
            self.position += 1
            yield {key: value[index] for key, value in self.inputs.items()}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def train_config(recipe: dict[str, Any], steps_per_epoch: int, args: argparse.Namespace) -> TrainConfig:
    """The recipe's epochs as optimizer steps: AdamW warmed up over `warmup_epochs` (at most the
    whole run), then a cosine to 0; gradients clamped element-wise at `max_grad_value`, norms unclipped."""
    steps = recipe["epochs"] * steps_per_epoch
    with naming_options({"bf16": "drop --bf16"}):
        return TrainConfig(
            steps=steps, lr=recipe["lr"], weight_decay=recipe["weight_decay"], betas=(0.9, 0.999), eps=1e-8,
            warmup_steps=min(steps, round(recipe["warmup_epochs"] * steps_per_epoch)), max_grad_norm=None,
            max_grad_value=recipe["max_grad_value"], checkpoint_every=args.checkpoint_every, seed=args.seed,
            device=args.device, bf16=args.bf16, progress=not args.no_progress, time_limit=args.time_limit,
        )


def run(args: argparse.Namespace) -> None:
    """Pretrain T-JEPA with a recipe; save `OUTPUT/encoder` (the EMA target encoder)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    architecture, recipe = resolve_recipe(named_recipe("tjepa", args.recipe, args.dataset or "adult"), overrides)
    if recipe["epochs"] < 1:
        raise ConfigError(f"epochs={recipe['epochs']}; train for at least one epoch (--epochs N)")
    check_recipe_batch_size(recipe)
    check_recipe(recipe)
    frame, processor = training_table(args)
    torch.manual_seed(args.seed)
    architecture = {**architecture, "standardize_output": False}
    encoder = TJEPAEncoder(TJEPAConfig.for_table(processor, **architecture), processor)
    inputs = processor.transform(frame)
    check_rows_differ(inputs, f"--table {args.table!r}" if args.table else f"{args.dataset}'s training split")
    batches = TableBatches(inputs, recipe["batch_size"], args.seed)
    config = train_config(recipe, len(batches), args)
    masks = MaskSampler(encoder.config.num_features, **{key: recipe[key] for key in MASK_KEYS})
    objective = TJEPAPretraining(encoder, masks, recipe["predictor"], config.steps, recipe["ema_start"],
                                 recipe["ema_end"], recipe.get("mask_scope", "features"))
    out = Path(args.output)
    settings = {"args": command_settings(args), "recipe": recipe,
                "architecture": encoder.config.to_dict(), "training_data": table_digest(frame)}
    write_run_settings(out, settings)
    say("tjepa pretrain", f"{len(frame)} rows, {encoder.config.num_features} features; {config.steps} steps")
    records = train(objective, batches, out, config)
    save_trained(with_output_scale(objective.target_encoder, frame), out, ENCODER_FOLDER, records, config, settings,
                 "tjepa pretrain")
