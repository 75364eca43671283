"""`zoo finetune`: a classification head (a regression head, for a table's numeric target)
trained on a labelled set as a resumable `zoo.training` run, saved, loaded back and scored on the
set's test split.

The data (`zoo.finetune_data`) are labelled files read as `zoo probe --data` reads them, a
graph or table encoder's named `--dataset` (a node dataset trains a class per node, one
full-graph step an epoch), or a table encoder's `--table`. Three ways of training (`--mode`):

- `linear`: a linear head on the frozen encoder's last layer (mean of its tokens);
- `weighted`: a linear head on a learned softmax mix of every layer, encoder frozen
  (MERT's and SUPERB's recommended use of a frozen encoder);
- `full`: the head and the whole encoder trained together.

Training uses AdamW, a linear warmup over the first 10 % of the steps then a cosine to 0,
and clips the gradient norm at 1. An encoder that must move far slower than its head says so
(`finetune_lr_scale`, a T-JEPA with a standardised output's 1e-4): `full` then trains the head at
the head-alone lr, the encoder at that times its scale, without clipping (its gradients, scaled
up with its output, set every step's clip factor and starved the head). It writes checkpoint.pt
every epoch (a node dataset: every 50 steps), log.jsonl and loss.png, and a rerun of an
interrupted command continues where its checkpoint left off: the batches of an epoch are a
seeded shuffle of the training split, checkpointed with the run. The saved weights are those
of the last epoch, or with `--validation` those of the epoch that scored best on a held-out
share of the training items (a node dataset's validation nodes), kept in the checkpoint as the
run goes; `--patience` ends the run early. The accuracy (or RMSE) reported is that of the saved
folder, loaded back with `zoo.load`; the folder's card says how it was trained, picked and
scored, and shows the loss curve.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

import zoo
from zoo.encoder import Encoder
from zoo.errors import ConfigError
from zoo.finetune_data import LabelledSplit, read_split, split_digest
from zoo.finetune_objectives import (
    ClassifierObjective, ValidatedObjective, metric_value, validation_report, validation_sentence,
)
from zoo.heads import default_pool
from zoo.hub import CARD_FILE
from zoo.io import atomic_write_text
from zoo.run_cards import run_card, shown_path, with_base_model, with_eval_result
from zoo.finetune_options import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_NODE_EPOCHS, DEFAULT_NODE_LR
from zoo.run_folders import PLOT_FILE, command_settings, loss_curve, undone_if_refused, write_run_settings
from zoo.training import TrainConfig, naming_options, train

#: a node dataset's run saves its checkpoint every this many steps (other runs: every epoch)
NODE_CHECKPOINT_EVERY = 50
#: arguments of the scoring after training, left out of args.json (those of where and how the
#: training runs, such as --threads and --time-limit, are zoo.run_folders.RUN_LOCAL_SETTINGS)
SCORING_ARGS = ("json", "eval_batch_size")
#: the run folder's subfolder that holds the trained classifier
CLASSIFIER_FOLDER = "classifier"
#: the names of the encoder's parameters in a run's objective (`ClassifierObjective.classifier.encoder`)
ENCODER_PARAMETERS = "classifier.encoder."


class ShuffledBatches:
    """Collated batches of `examples`, a fresh seeded shuffle each epoch (the last, short batch
    of an epoch is dropped). Its state (epoch, batch) goes into the run's checkpoint."""

    def __init__(self, examples: Sequence[dict[str, Any]], batch_size: int, collate: Any, seed: int) -> None:
        self.examples, self.batch_size, self.collate, self.seed = examples, batch_size, collate, seed
        self.epoch, self.batch = 0, 0

    def __len__(self) -> int:
        return len(self.examples) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.batch >= len(self):  # a checkpoint written after an epoch's last batch
            self.epoch, self.batch = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.examples))
        while self.batch < len(self):
            chosen = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
            self.batch += 1
            yield self.collate([self.examples[index] for index in chosen])
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = state["epoch"], state["batch"]


@torch.no_grad()
def unscale_head(regressor: nn.Module, mean: float, std: float) -> None:
    """Fold the target standardisation into the head's last layer, so that the saved model
    predicts in the target's own units."""
    regressor.head.weight.mul_(std)
    regressor.head.bias.mul_(std).add_(mean)


def head_pool(encoder: nn.Module, args: argparse.Namespace, split: LabelledSplit) -> Optional[str]:
    """What the head reads: `--pool`, else a graph encoder's own readout (the one its checkpoint was
    trained and probed with), else the mean of the tokens; None for a node dataset's head."""
    if split.test_nodes is not None:
        if args.pool is not None:
            raise ConfigError(f"--pool {args.pool}: a node dataset's head classifies each node, it pools nothing")
        return None
    return args.pool or default_pool(encoder)


def build_classifier(encoder: nn.Module, args: argparse.Namespace, split: LabelledSplit,
                     pool: Optional[str]) -> nn.Module:
    """`zoo.for_classification` on the encoder as `args` say: its mode, the layer and `pool` the
    head reads, and whether the conv front end stays frozen; a class per node for a node dataset,
    a regressor for a numeric target."""
    torch.manual_seed(args.seed)
    layer = "weighted" if args.mode == "weighted" else args.layer
    freeze = args.mode != "full"
    if split.test_nodes is not None:
        classifier = zoo.for_token_classification(encoder, labels=split.names, layer=layer, freeze=freeze)
    elif split.regression:
        classifier = zoo.for_regression(encoder, 1, pool=pool, layer=layer, freeze=freeze)
    else:
        classifier = zoo.for_classification(encoder, labels=split.names, layer=layer, pool=pool, freeze=freeze)
    if args.freeze_feature_encoder:
        classifier.freeze_feature_encoder()
    return classifier


def epochs_and_batch_size(args: argparse.Namespace, split: LabelledSplit) -> tuple[int, int]:
    """The run's epochs and batch size: as given, else the defaults (a default batch no larger
    than the training items: 20 clips were refused, as an epoch drops its last short batch); a
    node dataset's one example is its whole graph, so its batch is that graph and an epoch is
    one step."""
    if split.test_nodes is None:
        return (DEFAULT_EPOCHS if args.epochs is None else args.epochs,
                min(DEFAULT_BATCH_SIZE, len(split.train)) if args.batch_size is None else args.batch_size)
    if args.batch_size not in (None, 1):
        raise ConfigError(f"--batch-size {args.batch_size}: {split.source} trains on its whole graph each step; "
                          "drop --batch-size")
    return DEFAULT_NODE_EPOCHS if args.epochs is None else args.epochs, 1


def test_score(model: nn.Module, split: LabelledSplit, args: argparse.Namespace) -> tuple[str, float, str]:
    """The saved model's score on the test split: (metric, value, a sentence for its card), the
    accuracy of a classifier or the root mean squared error of a regressor."""
    outputs = model.logits(split.test_inputs, batch_size=args.eval_batch_size, progress=not args.no_progress)
    if split.test_nodes is not None:
        outputs = outputs[split.test_nodes]
    score = metric_value(outputs, split.test_labels, split.regression)
    held_out = f"{len(split.test_labels):,} held-out {split.unit}"
    if split.regression:
        return "rmse", score, (f"Test RMSE: {score:.4g} on {held_out} (their targets' std: "
                               f"{split.test_labels.std():.4g}); trained on {split.train_count:,} {split.unit}, "
                               "their targets standardised (the loss above is in those units).")
    return "accuracy", score, (f"Test accuracy: {100 * score:.1f} % on {held_out}; trained on "
                               f"{split.train_count:,} {split.unit} of {len(split.names)} classes.")


def random_init_seed(args: argparse.Namespace) -> Optional[int]:
    """The seed of a `--random-init` encoder (`--seed` where the flag came alone), or None for
    the checkpoint's weights."""
    if args.random_init is False:
        return None
    return args.seed if args.random_init is True else args.random_init


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that contradict each other before anything loads."""
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}; train for at least one epoch")
    if args.patience is not None and args.validation is False:
        raise ConfigError(f"--patience {args.patience} counts epochs without a better validation score; "
                          "add --validation")
    if args.freeze_feature_encoder and args.mode != "full":
        raise ConfigError(f"--freeze-feature-encoder is for --mode full; --mode {args.mode} trains the head alone, "
                          "the whole encoder stays as it is")
    if args.layer is not None and args.mode == "weighted":
        raise ConfigError(f"--layer {args.layer} is for --mode linear or full; --mode weighted mixes every layer")


def encoder_lr_scale(encoder: Encoder, mode: str) -> float:
    """The share of the head's lr the encoder trains at: with `--mode full`, its own
    (`Encoder.finetune_lr_scale`), else 1."""
    return encoder.finetune_lr_scale if mode == "full" else 1.0


def train_config(args: argparse.Namespace, split: LabelledSplit, steps: int, epoch_steps: int,
                 encoder_scale: float) -> TrainConfig:
    """The run's schedule: AdamW at the mode's peak lr (a node dataset's own),
    10 % warmup, gradient norm clipped at 1, a checkpoint every epoch (a node dataset: every
    `NODE_CHECKPOINT_EVERY` steps). An `encoder_scale` other than 1 (`encoder_lr_scale`) gives the
    head the head-alone lr and the encoder that times the scale, unclipped: at its own lr the encoder
    needs no clipping, and its scaled-up gradients would set the head's clip factor."""
    defaults = DEFAULT_LR if split.test_nodes is None else DEFAULT_NODE_LR
    scaled = encoder_scale != 1.0
    mode = "linear" if scaled else args.mode
    lr = defaults[mode] if args.lr is None else args.lr  # --lr 0 is refused when parsed, not replaced
    checkpoint_every = epoch_steps if split.test_nodes is None else NODE_CHECKPOINT_EVERY
    with naming_options({"bf16": "drop --bf16"}):
        return TrainConfig(steps=steps, lr=lr, weight_decay=args.weight_decay,
                           betas=(0.9, 0.999), eps=1e-8, warmup_steps=math.ceil(0.1 * steps),
                           max_grad_norm=None if scaled else 1.0,
                           lr_scales={ENCODER_PARAMETERS: encoder_scale} if scaled else None,
                           checkpoint_every=checkpoint_every, seed=args.seed, progress=not args.no_progress,
                           time_limit=args.time_limit, device=args.device, bf16=args.bf16,
                           activation_checkpointing=args.activation_checkpointing)


@dataclasses.dataclass
class FinetuneJob:
    """A `zoo finetune` run once its options, model and data are read and checked (`prepare_job`):
    what its training, its saved folder and its report share."""

    args: argparse.Namespace
    #: the seed of a --random-init encoder's weights; None for the pretrained ones
    init_seed: Optional[int]
    encoder: nn.Module
    split: LabelledSplit
    pool: Optional[str]
    classifier: nn.Module
    epochs: int
    batch_size: int
    batches: ShuffledBatches
    config: TrainConfig
    #: args.json's settings: the command's, less the scoring's, with the values that defaults stood in for
    settings: dict[str, Any]


def prepare_job(args: argparse.Namespace) -> FinetuneJob:
    """Load the encoder (pretrained, or a seeded random init), read the labelled split and build the
    classifier, its batches and its schedule: everything checked before the run writes a file."""
    check_options(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    init_seed = random_init_seed(args)
    torch.manual_seed(args.seed if init_seed is None else init_seed)  # the weights of a --random-init encoder
    encoder = zoo.load(args.name, revision=args.revision, pretrained=init_seed is None)
    split = read_split(encoder, args)
    if init_seed is not None and hasattr(encoder, "fitted_to"):  # statistics pretraining fits (T-JEPA's scale)
        encoder = encoder.fitted_to([example["input"] for example in split.train])
    pool = head_pool(encoder, args, split)
    classifier = build_classifier(encoder, args, split, pool)
    epochs, batch_size = epochs_and_batch_size(args, split)
    batches = ShuffledBatches(split.train, batch_size, classifier.training_collate, args.seed)
    if len(batches) == 0:
        raise ConfigError(f"--batch-size {batch_size} is more than the {len(split.train)} training items, "
                          "and an epoch drops its last short batch; use a smaller batch size")
    scale = encoder_lr_scale(encoder, args.mode)
    config = train_config(args, split, epochs * len(batches), len(batches), scale)
    settings = {key: value for key, value in command_settings(args).items() if key not in SCORING_ARGS}
    settings.update(epochs=epochs, batch_size=batch_size, pool=pool, lr=config.lr,  # as run, where defaults stood in
                    encoder_lr=encoder_lr(config), training_data=split_digest(split, args.data))
    return FinetuneJob(args, init_seed, encoder, split, pool, classifier, epochs, batch_size, batches, config,
                       settings)


def run_finetune(args: argparse.Namespace) -> dict[str, Any]:
    """Train, save and score the run `args` describe (`add_finetune_arguments`, plus `name`
    and `output`); returns its report, or the steps done when `--time-limit` stopped it."""
    job = prepare_job(args)
    output, started = Path(args.output), time.monotonic()
    objective = (ClassifierObjective(job.classifier) if job.split.val_labels is None else
                 ValidatedObjective(job.classifier, job.split, len(job.batches), args.patience, args.eval_batch_size))
    with undone_if_refused(output):  # refused before training (a device it cannot use): args.json is removed
        write_run_settings(output, job.settings)
        records = train(objective, job.batches, output, job.config)
    steps = job.config.steps
    if records[-1]["step"] < steps and not objective.finished:
        print(f"time limit reached at step {records[-1]['step']} of {steps}; rerun the command to continue",
              file=sys.stderr)
        return {"steps_done": records[-1]["step"], "steps": steps}
    validation = validation_report(objective, job.split)
    metric, score = save_and_score(job, objective, records, validation)
    return job_report(job, records, validation, metric, score, time.monotonic() - started)


def save_and_score(job: FinetuneJob, objective: nn.Module, records: list[dict[str, Any]],
                   validation: Optional[dict[str, Any]]) -> tuple[str, float]:
    """Save the trained classifier (the best epoch's weights where `validation` picked one; a
    regression head in the target's own units) with its card, load it back and score it on the
    test split, as a user loading the folder would: (metric, score)."""
    output = Path(job.args.output)
    if validation is not None:
        objective.keep_best()
    if job.split.regression:
        unscale_head(job.classifier, *job.split.target_scale)
    curve = loss_curve(output)
    job.classifier.save_pretrained(output / CLASSIFIER_FOLDER, extra_files=curve)
    loaded = zoo.load(output / CLASSIFIER_FOLDER, device=job.args.device)
    metric, score, results = test_score(loaded, job.split, job.args)
    if validation is not None:
        results += validation_sentence(validation, job.split.unit, job.epochs)
    card = run_card(job.classifier, records, job.config, job.settings, PLOT_FILE if curve else None,
                    f"Fine-tuned from {origin(job.args.name, job.init_seed)} with `zoo finetune --mode "
                    f"{job.args.mode}`", "Fine-tuning", results, stopped_early=objective.finished)
    card = with_eval_result(card, output.resolve().name, job.classifier.pipeline_tags[job.encoder.modality],
                            job.split.source, score, metric)
    if job.init_seed is None:
        card = with_base_model(card, job.args.name)
    atomic_write_text(output / CLASSIFIER_FOLDER / CARD_FILE, card)
    return metric, score


def job_report(job: FinetuneJob, records: list[dict[str, Any]], validation: Optional[dict[str, Any]],
               metric: str, score: float, wall_seconds: float) -> dict[str, Any]:
    """What `zoo finetune` prints (and `--json` keeps) of a finished run: its settings as run, the
    training's steps, time and losses, and the test score."""
    args, split, window = job.args, job.split, max(1, len(job.batches))
    return {
        "checkpoint": args.name,
        "revision": args.revision,
        "dataset": args.dataset,
        "fold": (args.fold or 0) if split.unit == "graphs" else None,
        "init": "pretrained" if job.init_seed is None else "random",
        "random_init_seed": job.init_seed,
        "mode": args.mode,
        "layer": args.layer,
        "pool": job.pool,
        "freeze_feature_encoder": args.freeze_feature_encoder,
        "trained_parameters": sum(p.numel() for p in job.classifier.parameters() if p.requires_grad),
        "train_items": split.train_count,
        "test_items": len(split.test_labels),
        "classes": None if split.regression else len(split.names),
        "epochs": job.epochs,
        "steps": job.config.steps,
        "steps_run": records[-1]["step"],
        "validation": validation,
        "batch_size": job.batch_size,
        "lr": job.config.lr,
        "encoder_lr": encoder_lr(job.config),
        "train_seconds": round(records[-1]["elapsed"], 1),
        "wall_seconds_this_call": round(wall_seconds, 1),
        "loss_first_epoch": float(np.mean([r["loss"] for r in records[:window]])),
        "loss_last_epoch": float(np.mean([r["loss"] for r in records[-window:]])),
        **({} if split.regression else
           {"train_accuracy_last_epoch": float(np.mean([r["accuracy"] for r in records[-window:]]))}),
        f"test_{metric}": score,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def encoder_lr(config: TrainConfig) -> Optional[float]:
    """The encoder's own peak lr where it differs from the head's (`encoder_lr_scale`), else None."""
    return None if config.lr_scales is None else float(f"{config.lr * config.lr_scales[ENCODER_PARAMETERS]:.6g}")


def origin(name: str, init_seed: Optional[int]) -> str:
    """Where the card says the run started: the checkpoint, or a random init of its architecture."""
    base = shown_path(name)
    return f"`{base}`" if init_seed is None else f"a random-init `{base}` (seed {init_seed})"
