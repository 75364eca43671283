"""`zoo pretrain paretognn --dataset cora -o OUT`: multi-task pretraining with a hub_config recipe.

The recipe (hub_config `pretraining`) gives steps, AdamW settings, warmup, the tasks,
the gradient normaliser and the predictor width; `--no-pareto` runs the paper's ablation
(equal task weights) and `--set key=value` overrides any recipe or architecture setting.
The run resumes from `OUT/checkpoint.pt` and saves the encoder to `OUT/encoder`.
"""

from __future__ import annotations

import argparse
from typing import Any

from modalities.graphs.paretognn.model import ParetoGNNConfig, ParetoGNNEncoder
from modalities.graphs.paretognn.objective import ParetoGNNPretraining
from modalities.graphs.pretraining import GraphBatches, run_and_save, start_run
from zoo.training import TrainConfig

RECIPE_KEYS = ("steps", "lr", "weight_decay", "warmup_steps", "max_grad_norm", "tasks", "grad_norm",
               "predictor_dim", "task_settings")


def train_config(recipe: dict[str, Any], args: argparse.Namespace) -> TrainConfig:
    """The recipe's AdamW at a constant lr after its warmup; it decays every parameter, as
    upstream's `torch.optim.AdamW(model.parameters(), ...)` does."""
    return TrainConfig(
        steps=recipe["steps"], lr=recipe["lr"], weight_decay=recipe["weight_decay"], decay_every_parameter=True,
        warmup_steps=recipe["warmup_steps"], min_lr_ratio=1.0, max_grad_norm=recipe["max_grad_norm"],
        betas=(0.9, 0.999), eps=1e-8, checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device,
        progress=not args.no_progress, time_limit=args.time_limit,
    )


def run(args: argparse.Namespace) -> None:
    """Pretrain ParetoGNN on a dataset with its recipe; save `OUTPUT/encoder`."""
    config, processor, recipe, graphs = start_run(args, "paretognn", ParetoGNNConfig, RECIPE_KEYS, "steps", args.steps)
    encoder = ParetoGNNEncoder(config, processor)
    objective = ParetoGNNPretraining(encoder, recipe["tasks"], use_pareto=not args.no_pareto,
                                     grad_norm=recipe["grad_norm"], predictor_dim=recipe["predictor_dim"],
                                     task_settings=recipe.get("task_settings"))
    recipe = {**recipe, "use_pareto": not args.no_pareto}
    run_and_save(objective, encoder, GraphBatches(graphs, 1, args.seed), train_config(recipe, args), args, recipe)
