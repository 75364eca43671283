"""What the graph families' `zoo pretrain` commands share: recipes, overrides and batches (their
options are `modalities.graphs.pretrain_options`, which imports no torch).

A recipe lives in the `pretraining` section of a hub_config; `--set key=value` overrides
any recipe or architecture setting. One step is one full-batch epoch on a single graph
(transductive sets), or one mini-batch of graphs (PPI, TU sets).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from modalities.graphs.processing import GraphProcessor
from zoo.config import check_override_types, parse_overrides
from zoo.errors import ConfigError, InputError
from zoo.finetune_data import item_key
from zoo.registry import ModelEntry
from zoo.run_folders import command_settings, data_record, write_run_settings
from zoo.training import (
    TrainConfig, check_recipe_batch_size, named_recipe, refuse_recipe_records, save_trained, say, train,
)

ENCODER_FOLDER = "encoder"


def resolve_recipe(entry: ModelEntry, config_class: type, overrides: dict[str, Any],
                   recipe_keys: Sequence[str]) -> tuple[Any, GraphProcessor, dict[str, Any]]:
    """The encoder config, processor and recipe of a hub_config's recipe, with `--set` overrides applied."""
    refuse_recipe_records(overrides)
    arch_keys = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - arch_keys - set(recipe_keys))
    if unknown:
        raise ConfigError(f"--set names unknown settings {unknown}; valid: {sorted(arch_keys | set(recipe_keys))}")
    architecture = {**entry.architecture, **{k: v for k, v in overrides.items() if k in arch_keys}}
    recipe_overrides = {k: v for k, v in overrides.items() if k in recipe_keys}
    check_override_types(entry.pretraining, recipe_overrides, "--set")
    recipe = {**entry.pretraining, **recipe_overrides}
    config = config_class.from_dict(architecture)
    processor = GraphProcessor.from_dict({**entry.preprocessing, "in_dim": config.in_dim})
    return config, processor, recipe


def start_run(args: argparse.Namespace, family: str, config_class: type, recipe_keys: Sequence[str],
              length_key: str, length: int | None) -> tuple[Any, GraphProcessor, dict[str, Any], list[Any]]:
    """What every `zoo pretrain` run of a graph family does first: threads, `--set` overrides
    (and `--epochs`/`--steps` as `length_key`), the recipe, the prepared graphs; then it seeds torch.

    `--recipe NAME` trains on `--dataset` with the recipe of the set NAME; the input width
    then follows the dataset (its features, or one-hot degrees when it has none)."""
    from modalities.graphs.datasets import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    if length is not None:
        overrides[length_key] = length
    config, processor, recipe = resolve_recipe(named_recipe(family, args.recipe, args.dataset), config_class,
                                               overrides, recipe_keys)
    if recipe[length_key] < 1:
        raise ConfigError(f"{length_key}={recipe[length_key]}; train for at least one (--{length_key} N)")
    check_recipe_batch_size(recipe)
    data = load_dataset(args.dataset, args.data)
    if not isinstance(data, list):
        refuse_graph_set_settings(overrides, args.dataset)
    if args.recipe and args.recipe.lower() != args.dataset.lower() and "in_dim" not in overrides:
        config, processor = fit_to_dataset(config, processor, data, args.dataset, args.data)
    processor, graphs = prepare_graphs(data, processor, args.dataset)
    torch.manual_seed(args.seed)
    return config, processor, recipe, graphs


def refuse_graph_set_settings(overrides: dict[str, Any], dataset: str) -> None:
    """Refuse a `--set` of what only a set of graphs uses on a dataset of one graph (Cora), where
    `--set batch_size=4` was accepted and changed nothing. A borrowed recipe's own batch size
    (`--recipe mutag`) is not the user's, so it is left to go unused."""
    if "batch_size" in overrides:
        raise ConfigError(f"--set batch_size={overrides['batch_size']}: dataset {dataset!r} is one graph, which "
                          "every step trains on whole; batch_size counts the graphs of a mini-batch in a set of "
                          "graphs (e.g. mutag, ppi): drop it")


def fit_to_dataset(config: Any, processor: GraphProcessor, data: Any, dataset: str,
                   data_root: Optional[str]) -> tuple[Any, GraphProcessor]:
    """A borrowed recipe's config and processor with the input width of `dataset`."""
    from modalities.graphs.datasets import has_node_features

    width = (data[0] if isinstance(data, list) else data).x.shape[1]
    node_features = "x" if has_node_features(dataset, data_root) else "degree"
    return (dataclasses.replace(config, in_dim=width),
            dataclasses.replace(processor, in_dim=width, node_features=node_features))


class GraphBatches:
    """Prepared graphs as training batches: the one graph every step, or shuffled mini-batches of
    graphs, resumable mid-epoch (the epoch and the batches taken of it are checkpointed)."""

    def __init__(self, graphs: Sequence[Any], batch_size: int, seed: int) -> None:
        self.graphs, self.batch_size, self.seed = list(graphs), batch_size, seed
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        return -(-len(self.graphs) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of the current epoch, or the next epoch when the current one is done."""
        from torch_geometric.data import Batch

        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        order = list(range(len(self.graphs)))
        if len(order) > 1:
            random.Random(self.seed + self.epoch).shuffle(order)
        while self.position < len(self):
            start = self.position * self.batch_size
            self.position += 1
            batch = Batch.from_data_list([self.graphs[i] for i in order[start: start + self.batch_size]])
            yield {"x": batch.x, "edge_index": batch.edge_index}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Also a checkpoint of before mid-epoch resumption, whose "epoch" counted the epochs begun."""
        self.epoch, self.position = state["epoch"], state.get("position", 0)


def prepare_graphs(data: Any, processor: GraphProcessor, dataset: str) -> tuple[GraphProcessor, list[Any]]:
    """The processor fitted to the dataset (its feature statistics, where it standardises, as
    GraphMAE's StandardScaler over the whole graph), and the dataset's graph(s), checked against
    the encoder's input width and normalised by it."""
    graphs = data if isinstance(data, list) else [data]
    width = graphs[0].x.shape[1]
    if width != processor.in_dim:
        raise InputError(
            f"dataset {dataset!r} has {width} node features but the recipe's encoder takes in_dim={processor.in_dim}; "
            f"pass --set in_dim={width}"
        )
    processor = processor.fitted(graphs)
    return processor, [processor.prepare(graph) for graph in graphs]


def graphs_digest(graphs: list[Any]) -> str:
    """What a run trains on, wherever its --data lies: every tensor of its graphs, as prepared. A
    resumed run on another root's graphs (the same dataset name) mixed the two into one run."""
    digest = hashlib.sha256()
    for graph in graphs:
        digest.update(item_key(graph, None).encode())
    return data_record(len(graphs), "graph(s)", digest)


def run_and_save(objective: nn.Module, encoder: Any, batches: GraphBatches, config: TrainConfig,
                 args: argparse.Namespace, recipe: dict[str, Any]) -> None:
    """Write the run's settings, train (resuming from the folder's checkpoint) and save `OUTPUT/encoder`."""
    out = Path(args.output)
    graphs = batches.graphs
    settings = {"args": command_settings(args), "recipe": recipe,
                "architecture": encoder.config.to_dict(), "training_data": graphs_digest(graphs)}
    write_run_settings(out, settings)
    tag = f"{encoder.family} pretrain"
    say(tag, f"{args.dataset}: {len(graphs)} graph(s), {sum(g.num_nodes for g in graphs)} nodes; {config.steps} steps")
    records = train(objective, batches, out, config)
    save_trained(encoder, out, ENCODER_FOLDER, records, config, settings, tag)
