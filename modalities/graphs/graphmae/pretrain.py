"""`zoo pretrain graphmae --dataset cora -o OUT`: the paper's recipe for a dataset, from hub_configs.

The hub_config whose `pretraining.dataset` is the dataset gives the encoder architecture,
the processor settings and the recipe (epochs, Adam with L2 decay, cosine schedule or
none, mask/replace rates, alpha); `--set key=value` overrides any of them. The run
resumes from `OUT/checkpoint.pt` and saves the encoder to `OUT/encoder`.
"""

from __future__ import annotations

import argparse
from typing import Any

from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.graphmae.objective import GraphMAEPretraining
from modalities.graphs.pretraining import GraphBatches, run_and_save, start_run
from zoo.errors import ConfigError
from zoo.training import TrainConfig

OBJECTIVE_KEYS = ("mask_rate", "replace_rate", "alpha_l", "drop_edge_rate")
RECIPE_KEYS = ("epochs", "lr", "weight_decay", "optimizer", "scheduler", "batch_size",
               *OBJECTIVE_KEYS)


def train_config(recipe: dict[str, Any], epochs: int, epoch_steps: int, args: argparse.Namespace) -> TrainConfig:
    """The recipe's Adam and schedule; a cosine moves once an epoch, as upstream steps its
    scheduler after each epoch (on a mini-batch recipe such as COLLAB's 20 epochs, a cosine over
    batches lowered the lr by up to 7.9 % of its peak where upstream's had not yet moved)."""
    if recipe["scheduler"] not in ("cosine", "none"):
        raise ConfigError(f"scheduler={recipe['scheduler']!r} is not 'cosine' or 'none'")
    return TrainConfig(
        steps=epochs * epoch_steps, schedule_every=epoch_steps, lr=recipe["lr"], weight_decay=recipe["weight_decay"],
        optimizer=recipe["optimizer"],
        betas=(0.9, 0.999), eps=1e-8, min_lr_ratio=0.0 if recipe["scheduler"] == "cosine" else 1.0,
        max_grad_norm=None, checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device,
        progress=not args.no_progress, time_limit=args.time_limit,
    )


def run(args: argparse.Namespace) -> None:
    """Pretrain GraphMAE on a dataset with its recipe; save `OUTPUT/encoder`."""
    config, processor, recipe, graphs = start_run(args, "graphmae", GraphMAEConfig, RECIPE_KEYS, "epochs", args.epochs)
    batches = GraphBatches(graphs, recipe.get("batch_size") or 1, args.seed)
    encoder = GraphMAEEncoder(config, processor)
    objective = GraphMAEPretraining(encoder, **{key: recipe[key] for key in OBJECTIVE_KEYS})
    run_and_save(objective, encoder, batches, train_config(recipe, recipe["epochs"], len(batches), args), args, recipe)
