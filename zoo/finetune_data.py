"""What a `zoo finetune` run trains on and is scored on (`LabelledSplit`): the labelled files of
`--data`, a graph or table encoder's named `--dataset` (its modality's `datasets.finetune_data`:
a node dataset's nodes, a TU set's graphs on one of the svm-10fold probe's folds, a table's
rows), or a table encoder's `--table` (`datasets.finetune_table`). Labels are class names, or
numbers for a table's numeric target (regression)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from zoo import registry
from zoo.errors import ConfigError
from zoo.finetune_options import DEFAULT_VALIDATION_SHARE
from zoo.options import check_table_source
from zoo.heads import IGNORE_INDEX
from zoo.io import name_bytes
from zoo.probe_job import file_suffixes, labelled_files
from zoo.run_folders import data_record

@dataclasses.dataclass
class LabelledSplit:
    """What a run trains on and is scored on: training examples ({"input", "label"}), the test
    inputs and their class indices (or targets); for a node dataset (`test_nodes` set) the one
    example is its graph with a label per training node, and the test inputs are that graph. A
    regression split (`target_scale` set: the training targets' mean and std) has no class names
    and trains on standardised targets. A split with a validation part (`val_labels` set: class
    indices, or targets in their own units) picks the epoch whose weights are kept; a node
    dataset's are its validation nodes (`val_nodes`) of the graph."""

    names: list[str]
    train: list[dict[str, Any]]
    test_inputs: Any
    test_labels: np.ndarray
    #: the data's name in the card's evaluation result
    source: str
    #: what an item is, in the report's sentences
    unit: str = "items"
    test_nodes: Optional[torch.Tensor] = None
    target_scale: Optional[tuple[float, float]] = None
    val_inputs: Any = None
    val_labels: Optional[np.ndarray] = None
    val_nodes: Optional[torch.Tensor] = None

    @property
    def regression(self) -> bool:
        return self.target_scale is not None

    @property
    def train_count(self) -> int:
        return len(self.train) if self.test_nodes is None else int((self.train[0]["label"] != IGNORE_INDEX).sum())


def rows_split(rows: list[tuple[Any, Any, bool]], source: str, unit: str, validation: Optional[float] = None,
               seed: int = 0) -> LabelledSplit:
    """A split of (input, label, is_test) rows: labels are class names (the classes, sorted), or
    numbers for a regression target; with `validation`, that share of the training rows is held
    out (seeded, by class) to pick the epoch kept."""
    rows, val = hold_out_validation(rows, validation, seed, unit)
    if rows and not isinstance(rows[0][1], str):
        split = regression_split(rows, source, unit)
        labels = np.array([label for _, label in val], dtype=np.float64)
    else:
        names = sorted({label for _, label, _ in rows})
        split = LabelledSplit(names, [{"input": value, "label": label} for value, label, test in rows if not test],
                              [value for value, _, test in rows if test],
                              np.array([names.index(label) for _, label, test in rows if test]), source, unit)
        labels = np.array([names.index(label) for _, label in val])
    if validation is not None:
        split.val_inputs, split.val_labels = [value for value, _ in val], labels
    return split


def hold_out_validation(rows: list[tuple[Any, Any, bool]], share: Optional[float], seed: int,
                        unit: str) -> tuple[list[tuple[Any, Any, bool]], list[tuple[Any, Any]]]:
    """The rows less a validation `share` of the training rows, and those (input, label) rows:
    drawn by class for class labels (sklearn's stratified split, seeded), so that each class is
    scored."""
    if share is None:
        return rows, []
    from sklearn.model_selection import train_test_split

    training = [index for index, (_, _, test) in enumerate(rows) if not test]
    classes = None if rows and not isinstance(rows[0][1], str) else [rows[index][1] for index in training]
    try:
        _, held = train_test_split(training, test_size=share, random_state=seed, stratify=classes)
    except ValueError as err:  # a class too small to split, or fewer held-out or kept items than classes
        kept = len(training) - math.ceil(share * len(training))
        size = "smaller" if classes is not None and kept < len(set(classes)) else "larger"
        raise ConfigError(f"--validation {share} cannot hold out {unit} of every class from the "
                          f"{len(training):,} training {unit} ({err}); give a {size} share, or more {unit} "
                          "of the rare classes") from None
    held = set(held)
    return ([row for index, row in enumerate(rows) if index not in held],
            [rows[index][:2] for index in sorted(held)])


def regression_split(rows: list[tuple[Any, float, bool]], source: str, unit: str) -> LabelledSplit:
    """A split of (input, target, is_test) rows whose training targets are standardised: a head
    then starts near the targets' scale whatever their units (`unscale_head` undoes it)."""
    targets = np.array([label for _, label, test in rows if not test], dtype=np.float64)
    mean, std = float(targets.mean()), float(targets.std()) or 1.0
    train = [{"input": value, "label": (label - mean) / std} for value, label, test in rows if not test]
    return LabelledSplit([], train, [value for value, _, test in rows if test],
                         np.array([label for _, label, test in rows if test], dtype=np.float64), source, unit,
                         target_scale=(mean, std))


def node_split(data: Any, source: str, validation: bool = False) -> LabelledSplit:
    """A node dataset's split: trained on its training nodes' labels, scored on its test nodes;
    with `validation`, its validation nodes pick the epoch kept."""
    names = [str(index) for index in range(int(data.y.max()) + 1)]
    labels = torch.where(data.train_mask, data.y, IGNORE_INDEX)
    split = LabelledSplit(names, [{"input": data, "label": labels}], data, data.y[data.test_mask].numpy(), source,
                          "nodes", data.test_mask)
    if validation:
        split.val_inputs, split.val_labels, split.val_nodes = data, data.y[data.val_mask].numpy(), data.val_mask
    return split


def read_split(encoder: nn.Module, args: argparse.Namespace) -> LabelledSplit:
    """The labelled files of `--data`, the named `--dataset` of a graph or table encoder, or the
    `--table` of a table encoder."""
    table_options = [option for option, value in (("--test-table", args.test_table), ("--target", args.target),
                                                  ("--task", args.task)) if value is not None]
    if args.table is None and table_options:
        raise ConfigError(f"{' and '.join(table_options)}: only with --table FILE (a labelled table of your own)")
    if args.fold and args.dataset is None:
        raise ConfigError(f"--fold {args.fold} is for --dataset sets of graphs; --data files are split by "
                          "--test-regex or a test/ folder, --table rows by --test-table")
    if args.table is not None:
        return table_split(encoder, args)
    if args.dataset is None:
        if args.data is None:
            raise ConfigError("pass --data DIR (a labelled folder of files), --dataset NAME (a graph or table "
                              "dataset, e.g. cora, mutag or adult) or --table FILE --target COLUMN (table encoders)")
        rows = labelled_files(Path(args.data), args.label_regex, args.test_regex,
                              file_suffixes(encoder, args.name, "finetune", labelled=True),
                              encoder.processor.dataset_feature)
        return rows_split(limit_training(rows, args.train_limit, args.seed), Path(args.data).resolve().name, "items",
                          validation_share(args), args.seed)
    if args.label_regex or args.test_regex:
        raise ConfigError(f"--label-regex and --test-regex are for --data folders; --dataset {args.dataset} has its "
                          "own labels and split")
    finetune_data = registry.modality_part(encoder.modality, "datasets", "finetune_data")
    if finetune_data is None:
        raise ConfigError(f"--dataset names graph and table datasets; {args.name} reads {encoder.modality} files: "
                          "pass their folder as --data")
    data = finetune_data(args.dataset, args.data, fold=args.fold or 0)
    if isinstance(data, list):
        unit = "rows" if encoder.modality == "tabular" else "graphs"
        return rows_split(limit_training(data, args.train_limit, args.seed), args.dataset, unit,
                          validation_share(args), args.seed)
    if args.train_limit is not None:
        raise ConfigError(f"--train-limit is for sets of items; {args.dataset} trains on its own training nodes")
    if not isinstance(args.validation, bool):
        raise ConfigError(f"--validation {args.validation}: {args.dataset} has its own validation nodes; give "
                          "--validation without a share to pick the epoch by them")
    return node_split(data, args.dataset, validation=args.validation)


def table_split(encoder: nn.Module, args: argparse.Namespace) -> LabelledSplit:
    """The rows of `--table` labelled by its `--target` column, tested on `--test-table` or on a
    held-out share of the table (the modality's `datasets.finetune_table`)."""
    check_table_source(args, {"--data": args.data, "--dataset": args.dataset})
    finetune_table = registry.modality_part(encoder.modality, "datasets", "finetune_table")
    if finetune_table is None:
        raise ConfigError(f"--table is for table encoders; {args.name} reads {encoder.modality} inputs")
    encoder.processor.check_target(args.target)
    encoder.processor.leave_out(args.target)  # saved with the head: predict takes tables that hold the target
    rows = finetune_table(args.table, args.target, args.test_table, encoder.processor, args.task)
    return rows_split(limit_training(rows, args.train_limit, args.seed), Path(args.table).stem, "rows",
                      validation_share(args), args.seed)


def validation_share(args: argparse.Namespace) -> Optional[float]:
    """The share of the training items held out to pick the epoch kept: `--validation`'s, its
    default when the flag came alone, None without it."""
    if args.validation is False:
        return None
    return DEFAULT_VALIDATION_SHARE if args.validation is True else args.validation


def limit_training(rows: list[tuple[Any, str, bool]], limit: Optional[int], seed: int) -> list[tuple[Any, str, bool]]:
    """The test rows and, per class, a seeded `limit // classes` of the training rows (all when
    `limit` is None; for a numeric target, a seeded `limit` of them): a quicker run on the same
    test split."""
    if limit is None:
        return rows
    if rows and not isinstance(rows[0][1], str):  # a regression target: a seeded `limit` of the training rows
        training = [index for index, (_, _, test) in enumerate(rows) if not test]
        chosen = set(np.random.default_rng(seed).permutation(training)[:limit].tolist())
        return [row for index, row in enumerate(rows) if row[2] or index in chosen]
    labels = sorted({label for _, label, _ in rows})
    quota = max(1, limit // len(labels))
    order = np.random.default_rng(seed).permutation(len(rows))
    taken = dict.fromkeys(labels, 0)
    kept = []
    for index in sorted(order, key=lambda i: rows[i][2]):  # training rows first, each class in seeded order
        value, label, test = rows[index]
        if test or taken[label] < quota:
            taken[label] += not test
            kept.append(rows[index])
    return kept


def split_digest(split: LabelledSplit, data_root: Optional[str | Path] = None) -> str:
    """What a run trains and is scored on, wherever its data lies: each training item (a file by
    its path under `data_root` and its size; a record, table row or graph by its content) with
    its label, and the validation and test labels. A resumed run must train on the same data:
    `--data` and `--table` may move, but a rerun on other data would mix the two into one run."""
    digest = hashlib.sha256()
    root = Path(data_root).resolve() if data_root is not None else None
    for example in split.train:
        digest.update(name_bytes(item_key(example["input"], root)))
        digest.update(repr(as_plain(example["label"])).encode())
    for labels in (split.val_labels, split.test_labels):
        digest.update(repr(as_plain(labels)).encode())
    return data_record(split.train_count, f"training {split.unit}", digest)


def item_key(item: Any, root: Optional[Path]) -> str:
    """One training item as text for `split_digest`."""
    if isinstance(item, (str, Path)):
        path = Path(item).resolve()
        name = path.relative_to(root).as_posix() if root is not None and path.is_relative_to(root) else path.name
        return f"{name}:{path.stat().st_size}"
    if isinstance(item, dict) and isinstance(item.get("bytes"), bytes):
        return hashlib.sha256(item["bytes"]).hexdigest()
    if isinstance(item, dict):
        return repr(sorted((str(key), repr(value)) for key, value in item.items()))
    tensors = sorted((key, value) for key, value in getattr(item, "items", lambda: [])() if torch.is_tensor(value))
    if tensors:  # a graph
        return "".join(f"{key}{hashlib.sha256(value.cpu().numpy().tobytes()).hexdigest()}" for key, value in tensors)
    return repr(item)


def as_plain(value: Any) -> Any:
    """Arrays and tensors as lists, so that `split_digest` hashes every value (a long array's repr
    elides them with "...") and the same labels alike in any container."""
    return value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else value
