"""`zoo pretrain graphmae --dataset cora -o OUT`: the paper's recipe for a dataset, from hub_configs.

The hub_config whose `pretraining.dataset` is the dataset gives the encoder architecture,
the processor settings and the recipe (epochs, Adam with L2 decay, cosine schedule or
none, mask/replace rates, alpha); `--set key=value` overrides any of them. One step is
one full-batch epoch on a single graph (transductive sets), or one mini-batch of graphs
(PPI). The run resumes from `OUT/checkpoint.pt` and saves the encoder to `OUT/encoder`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from modalities.graphs.datasets import load_dataset
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.graphmae.objective import GraphMAEPretraining
from modalities.graphs.processing import GraphProcessor
from zoo import registry
from zoo.errors import ConfigError, InputError
from zoo.io import atomic_write_text
from zoo.training import TrainConfig, train

ENCODER_FOLDER = "encoder"
OBJECTIVE_KEYS = ("mask_rate", "replace_rate", "alpha_l", "drop_edge_rate")
RECIPE_KEYS = ("dataset", "epochs", "lr", "weight_decay", "optimizer", "scheduler", "batch_size", "probe",
               *OBJECTIVE_KEYS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="a dataset with a recipe in hub_configs, e.g. cora")
    parser.add_argument("--data", help="folder holding the dataset as PyG lays it out (e.g. ROOT/Cora/raw); "
                                       "default: the zoo's dataset cache, downloading where possible")
    parser.add_argument("-o", "--output", required=True, help="run folder (checkpoint, log, encoder/)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe or architecture setting, e.g. --set mask_rate=0.6")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def resolve(dataset: str, overrides: dict[str, Any]) -> tuple[GraphMAEConfig, GraphProcessor, dict[str, Any]]:
    """The encoder config, processor and recipe for `dataset`, with `--set` overrides applied."""
    entry = registry.recipe("graphmae", dataset)
    arch_keys = {f.name for f in dataclasses.fields(GraphMAEConfig)}
    unknown = sorted(set(overrides) - arch_keys - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(f"--set names unknown settings {unknown}; valid: {sorted(arch_keys | set(RECIPE_KEYS))}")
    architecture = {**entry.architecture, **{k: v for k, v in overrides.items() if k in arch_keys}}
    recipe = {**entry.pretraining, **{k: v for k, v in overrides.items() if k in RECIPE_KEYS}}
    config = GraphMAEConfig.from_dict(architecture)
    processor = GraphProcessor.from_dict({**entry.preprocessing, "in_dim": config.in_dim})
    return config, processor, recipe


class GraphBatches:
    """Prepared graphs as training batches: the one graph every step, or shuffled mini-batches of graphs."""

    def __init__(self, graphs: Sequence[Any], batch_size: int, seed: int) -> None:
        self.graphs, self.batch_size, self.seed, self.epoch = list(graphs), batch_size, seed, 0

    def __len__(self) -> int:
        return -(-len(self.graphs) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from torch_geometric.data import Batch

        order = list(range(len(self.graphs)))
        if len(order) > 1:
            random.Random(self.seed + self.epoch).shuffle(order)
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            batch = Batch.from_data_list([self.graphs[i] for i in order[start: start + self.batch_size]])
            yield {"x": batch.x, "edge_index": batch.edge_index}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]


def prepare_graphs(data: Any, processor: GraphProcessor, dataset: str) -> list[Any]:
    graphs = data if isinstance(data, list) else [data]
    width = graphs[0].x.shape[1]
    if width != processor.in_dim:
        raise InputError(
            f"dataset {dataset!r} has {width} node features but the recipe's encoder takes in_dim={processor.in_dim}; "
            f"pass --set in_dim={width}"
        )
    return [processor.prepare(graph) for graph in graphs]


def train_config(recipe: dict[str, Any], steps: int, args: argparse.Namespace) -> TrainConfig:
    if recipe["scheduler"] not in ("cosine", "none"):
        raise ConfigError(f"scheduler={recipe['scheduler']!r} is not 'cosine' or 'none'")
    return TrainConfig(
        steps=steps, lr=recipe["lr"], weight_decay=recipe["weight_decay"], optimizer=recipe["optimizer"],
        betas=(0.9, 0.999), eps=1e-8, min_lr_ratio=0.0 if recipe["scheduler"] == "cosine" else 1.0,
        max_grad_norm=None, checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device,
        progress=not args.no_progress,
    )


def log(message: str) -> None:
    print(f"[graphmae pretrain] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> None:
    """Pretrain GraphMAE on a dataset with its recipe; save `OUTPUT/encoder`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config, processor, recipe = resolve(args.dataset, overrides)
    graphs = prepare_graphs(load_dataset(args.dataset, args.data), processor, args.dataset)
    batches = GraphBatches(graphs, recipe.get("batch_size") or 1, args.seed)
    torch.manual_seed(args.seed)
    encoder = GraphMAEEncoder(config, processor)
    objective = GraphMAEPretraining(encoder, **{key: recipe[key] for key in OBJECTIVE_KEYS})
    out = Path(args.output)
    settings = {"args": {k: v for k, v in vars(args).items() if not callable(v)}, "recipe": recipe,
                "architecture": config.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "args.json", json.dumps(settings, indent=2) + "\n")
    steps = recipe["epochs"] * len(batches)
    log(f"{args.dataset}: {len(graphs)} graph(s), {sum(g.num_nodes for g in graphs)} nodes; {steps} steps")
    records = train(objective, batches, out, train_config(recipe, steps, args))
    encoder.save_pretrained(out / ENCODER_FOLDER)
    log(f"done: {len(records)} steps in {records[-1]['elapsed']:.0f} s, loss {records[0]['loss']:.4f} -> "
        f"{records[-1]['loss']:.4f}; encoder saved to {out / ENCODER_FOLDER}")
