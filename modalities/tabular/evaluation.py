"""The T-JEPA paper's downstream protocol on a named table, for `zoo probe --dataset`.

A downstream model is trained on the frozen encoder's tokens (all of a row's tokens,
(T, D), as the official benchmark does) or on the raw features, and scored on the
set's test split: accuracy for classification, RMSE for regression. The zoo holds out
10 % of the training split (stratified, by seed) for early stopping and tests on the
official test split; the official code tests on a random 10 % of train + test and
stops on that same split, so its numbers are not strictly comparable.

Protocols: "mlp" and "resnet" (the official MLP and ResNet, tuned for Adult) on the
encoder's tokens; "mlp-raw", "resnet-raw" and "xgboost" on the raw features (the
baselines; the encoder is not used).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from modalities.tabular.datasets import TableSplits, load_dataset, table_splits
from modalities.tabular.downstream import Task, fit_network, fit_xgboost, predict_logits, score
from modalities.tabular.processing import TableProcessor
from zoo.errors import ConfigError, warn

PROTOCOLS = ("mlp", "resnet", "mlp-raw", "resnet-raw", "xgboost")
#: the protocols trained on the encoder's tokens (the others, baselines, on the raw features)
ENCODER_PROTOCOLS = ("mlp", "resnet")
VALIDATION_SHARE = 0.1


def task_of(splits: TableSplits) -> Task:
    """The splits' task; its classes are counted in the training split, as `TableSplits.labels`
    numbers them."""
    return Task(splits.task, num_classes=int(splits.train[splits.target].nunique()))


def validation_split(labels: np.ndarray, task: Task, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation rows: 10 % held out, stratified for classes."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    stratify = labels if task.kind != "regression" else None
    train, val = train_test_split(rows, test_size=VALIDATION_SHARE, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def raw_features(processor: TableProcessor, frame: pd.DataFrame) -> torch.Tensor:
    """Min-max scaled numerics and one-hot categories (unknown bucket included): the baselines' input."""
    batch = processor.transform(frame)
    one_hot = [torch.nn.functional.one_hot(batch["categorical"][:, i], size).float()
               for i, size in enumerate(processor.cardinalities)]
    return torch.cat([batch["numeric"], *one_hot], dim=1)


def encoder_tokens(encoder: Any, frame: pd.DataFrame, device: Optional[str] = None) -> torch.Tensor:
    """(N, T, D) last-layer tokens of every row."""
    return encoder.embed(frame, pool="none", device=device, progress=False)


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale every token channel to zero mean and unit variance over the training rows.

    JEPA targets end in a LayerNorm, and T-JEPA's tokens vary little from row to row
    around a per-position mean (std ~0.006 for tjepa-adult); the MLP then sees almost
    constant inputs and predicts the majority class. A fixed affine map fitted on the
    training rows restores the scale without using labels or test rows."""
    mean, std = train.mean(dim=0), train.std(dim=0).clamp(min=1e-12)
    return (train - mean) / std, (test - mean) / std


def protocol_inputs(protocol: str, splits: TableSplits, encoder: Any = None,
                    device: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and test inputs of a protocol: the encoder's standardised tokens for "mlp"
    and "resnet", the raw features (the encoder unused) for the baselines."""
    if protocol in ENCODER_PROTOCOLS:
        frames = (frame.drop(columns=[splits.target]) for frame in (splits.train, splits.test))
        return standardise(*(encoder_tokens(encoder, frame, device) for frame in frames))
    processor = raw_processor(splits, encoder)
    return raw_features(processor, splits.train), raw_features(processor, splits.test)


def raw_processor(splits: TableSplits, encoder: Any = None) -> TableProcessor:
    """The baselines' schema, fitted on the training split without the columns the encoder does not
    read, so that a baseline reads the columns the encoder reads. Those its schema leaves out (ids,
    timestamps: `zoo pretrain tjepa --ignore`) were read as features, and an ignored date column was
    refused; one it never saw (which its own protocols refuse) gave a baseline a column the encoder
    lacked: a column leaking the target scored 1.0. The second are named in a warning."""
    processor = getattr(encoder, "processor", None)
    columns = [name for name in splits.train.columns if name != splits.target]
    reads = processor.token_names if processor is not None and processor.is_fitted else columns
    left_out = [name for name in columns if name not in reads]
    unseen = [name for name in left_out if name not in processor.ignored]
    if unseen:
        warn(f"the raw baselines leave out columns {unseen[:10]}, which the encoder never saw, so that they read "
             "the encoder's columns")
    return TableProcessor.fit(splits.train, target=splits.target, categorical=splits.categorical, ignore=left_out)


def run_protocol(protocol: str, splits: TableSplits, seed: int, train_inputs: torch.Tensor,
                 test_inputs: torch.Tensor, settings: Optional[dict[str, Any]] = None) -> float:
    """Train one downstream model with `seed` and return its test score."""
    task = task_of(splits)
    labels, test_labels = splits.labels(splits.train), splits.labels(splits.test)
    train_rows, val_rows = validation_split(labels, task, seed)
    if protocol == "xgboost":
        model = fit_xgboost((train_inputs.numpy(), labels), task, seed, settings)
        return score(model.predict(test_inputs.numpy()), test_labels, task)
    mean, std = (labels.mean(), labels.std()) if task.kind == "regression" else (0, 1)
    targets = torch.from_numpy((labels - mean) / std if task.kind == "regression" else labels)  # classes stay ints
    train, val = ((train_inputs[rows], targets[rows]) for rows in (train_rows, val_rows))
    model = fit_network(protocol.removesuffix("-raw"), train, val, task, seed, settings)
    predicted = task.predict(predict_logits(model, test_inputs)).numpy()
    if task.kind == "regression":
        predicted = predicted * std + mean
    return score(predicted, test_labels, task)


def probe_dataset(encoder: Any, dataset: str, data_root: Optional[str], seeds: Sequence[int] = (0,),
                  device: Optional[str] = None, settings: Optional[dict[str, Any]] = None,
                  protocol: Optional[str] = None) -> dict[str, Any]:
    """The paper's downstream protocol on `dataset`; scores per seed and their mean and std."""
    check_protocol(protocol)
    return probe_splits(encoder, load_dataset(dataset, data_root), seeds, device, settings, protocol)


def probe_table(encoder: Any, table: str, target: str, test_table: Optional[str] = None, task: Optional[str] = None,
                seeds: Sequence[int] = (0,), device: Optional[str] = None, protocol: Optional[str] = None
                ) -> dict[str, Any]:
    """The downstream protocol on a labelled table of your own (`datasets.table_splits`), with
    the protocol's default settings (Adult's)."""
    check_protocol(protocol)
    reads = (protocol or "mlp") in ENCODER_PROTOCOLS
    if reads:
        encoder.processor.check_target(target)
    splits = table_splits(table, target, test_table, task, encoder.processor if reads else None)
    report = probe_splits(encoder, splits, seeds, device, None, protocol)
    return {**report, "task": splits.task, "train_rows": len(splits.train), "test_rows": len(splits.test)}


def check_protocol(protocol: Optional[str]) -> None:
    """Refuse a protocol that is none of `PROTOCOLS` before any table is read or embedded; None
    is the default ("mlp")."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of {PROTOCOLS}")


def probe_splits(encoder: Any, splits: TableSplits, seeds: Sequence[int], device: Optional[str],
                 settings: Optional[dict[str, Any]], protocol: Optional[str]) -> dict[str, Any]:
    """Train the protocol's downstream model once per seed on the encoder's features of the
    training split; its test scores, their mean and std."""
    protocol = protocol or "mlp"
    train_inputs, test_inputs = protocol_inputs(protocol, splits, encoder, device)
    chosen = {**splits.downstream.get(protocol, {}), **(settings or {}).get(protocol, {})}
    scores = [run_protocol(protocol, splits, seed, train_inputs, test_inputs, chosen) for seed in seeds]
    metric = "rmse" if splits.task == "regression" else "accuracy"
    return {"dataset": splits.name, "protocol": protocol, "metric": metric, "seeds": list(seeds), "scores": scores,
            "mean": float(np.mean(scores)), "std": float(np.std(scores))}
