"""`zoo pretrain paretognn --dataset cora -o OUT`: multi-task pretraining with a hub_config recipe.

The recipe (hub_config `pretraining`) gives steps, AdamW settings, warmup, the tasks,
the gradient normaliser and the predictor width; `--no-pareto` runs the paper's ablation
(equal task weights) and `--set key=value` overrides any recipe or architecture setting.
The run resumes from `OUT/checkpoint.pt` and saves the encoder to `OUT/encoder`.

No gradient clipping, as upstream (its `clip_grad_norm_` line is commented out), so the first
step's gradient norm is huge: 5.9e10 on Cora at seed 0, then 9.7 and 5.1. It is p_recon's: its
decoder bias starts at zero, so each masked node that no unmasked node feeds (519 of 1354)
decodes as exactly 0, which `F.normalize` divides by its 1e-12 floor. jumxglhf/ParetoGNN's own
code does the same, run on Cora on the CPU with this recipe's settings at seeds 0, 1 and 2345:
4.1e10-5.3e10 with DGL 0.9.0's in-place DropEdge (its README's pin, which the zoo follows),
1.7e10-3.0e10 with DGL 2.1's, which returns a copy that upstream's collator discards. Only that
bias gets it (every other gradient is below 4; MGDA sees the encoder's alone), and AdamW's
second moment then holds the 1272 of its 1433 entries it reached still for about 40,000 steps:
over steps 2-101 they moved 3.4e-3, what step 1's momentum alone carries (to 2e-9), 0.035 of
the summed learning rate where the other parameters' median is 0.099.
"""

from __future__ import annotations

import argparse
from typing import Any

from modalities.graphs.paretognn.model import ParetoGNNConfig, ParetoGNNEncoder
from modalities.graphs.paretognn.objective import ParetoGNNPretraining
from modalities.graphs.pretraining import GraphBatches, run_and_save, start_run
from zoo.training import TrainConfig, naming_options

RECIPE_KEYS = ("steps", "lr", "weight_decay", "warmup_steps", "max_grad_norm", "tasks", "grad_norm",
               "predictor_dim", "task_settings")


def train_config(recipe: dict[str, Any], args: argparse.Namespace) -> TrainConfig:
    """The recipe's AdamW at a constant lr after its warmup; it decays every parameter, as
    upstream's `torch.optim.AdamW(model.parameters(), ...)` does. Its warmup is the recipe's, so a
    --steps below it (10 steps on Cora) is refused naming `--set warmup_steps`."""
    with naming_options({"warmup_steps": "--steps N or --set warmup_steps=N"}):
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
