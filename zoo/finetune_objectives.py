"""What a `zoo finetune` run optimises, and how `--validation` picks the epoch it keeps: the
head's loss on a batch (`ClassifierObjective`), and the same scored on a validation split after
every epoch, the best epoch's weights kept in the objective's state so that the run's checkpoint
holds them (`ValidatedObjective`)."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from zoo.finetune_data import LabelledSplit
from zoo.heads import IGNORE_INDEX
from zoo.outputs import PretrainOutput


class ClassifierObjective(nn.Module):
    """The head's loss on one collated batch (cross-entropy, or a regressor's squared error), with
    a classifier's accuracy on the batch logged (over its labelled nodes, for a node dataset)."""

    #: whether the run is done before its last step (`ValidatedObjective`'s patience)
    finished = False

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        output = self.classifier(**batch)
        if batch["labels"].is_floating_point():
            return PretrainOutput(loss=output.loss, logs={})
        labels = batch["labels"].to(output.logits.device)
        labelled = labels != IGNORE_INDEX
        accuracy = (output.logits.argmax(-1)[labelled] == labels[labelled]).float().mean().item()
        return PretrainOutput(loss=output.loss, logs={"accuracy": accuracy})


class ValidatedObjective(ClassifierObjective):
    """`ClassifierObjective` that scores the split's validation part after every epoch and keeps
    the weights of the best epoch so far: in its state, so that a checkpoint holds them and a
    resumed run keeps what an uninterrupted one would. After `patience` epochs without a better
    score it ends the run (`finished`)."""

    def __init__(self, classifier: nn.Module, split: LabelledSplit, steps_per_epoch: int, patience: Optional[int],
                 batch_size: int) -> None:
        super().__init__(classifier)
        self.split, self.steps_per_epoch, self.patience, self.batch_size = split, steps_per_epoch, patience, batch_size
        self.steps_done, self.best_epoch, self.best_score = 0, 0, math.nan
        self.best_state: Optional[dict[str, torch.Tensor]] = None

    @property
    def metric(self) -> str:
        return "rmse" if self.split.regression else "accuracy"

    @property
    def epochs_done(self) -> int:
        return self.steps_done // self.steps_per_epoch

    def after_step(self) -> dict[str, float]:
        """At an epoch's end: its validation score (logged), kept weights if it is the best."""
        self.steps_done += 1
        if self.steps_done % self.steps_per_epoch:
            return {}
        score = validation_score(self.classifier, self.split, self.batch_size)
        better = score < self.best_score if self.split.regression else score > self.best_score
        if self.best_state is None or better:
            self.best_epoch, self.best_score = self.epochs_done, score
            self.best_state = {key: value.detach().clone() for key, value in self.classifier.state_dict().items()}
        self.finished = self.patience is not None and self.epochs_done - self.best_epoch >= self.patience
        return {f"val_{self.metric}": score}

    def keep_best(self) -> None:
        """Load the best epoch's weights into the classifier."""
        self.classifier.load_state_dict(self.best_state)

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "finished": self.finished, "best_state": self.best_state}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.steps_done, self.best_epoch = state["steps_done"], state["best_epoch"]
        self.best_score, self.finished, self.best_state = state["best_score"], state["finished"], state["best_state"]


def validation_score(classifier: nn.Module, split: LabelledSplit, batch_size: int) -> float:
    """The classifier's score on the split's validation part, in the test's metric and units (a
    regressor trained on standardised targets is scored in the targets' own)."""
    outputs = classifier.logits(split.val_inputs, batch_size=batch_size)
    if split.val_nodes is not None:
        outputs = outputs[split.val_nodes]
    if split.regression:
        mean, std = split.target_scale
        outputs = outputs * std + mean
    return metric_value(outputs, split.val_labels, split.regression)


def metric_value(outputs: torch.Tensor, labels: np.ndarray, regression: bool) -> float:
    """The root mean squared error of a regressor's (N, 1) outputs, or a classifier's accuracy."""
    if regression:
        return float(np.sqrt(np.mean((outputs[:, 0].double().numpy() - labels) ** 2)))
    return float((outputs.argmax(-1).numpy() == labels).mean())


def validation_report(objective: ClassifierObjective, split: LabelledSplit) -> Optional[dict[str, Any]]:
    """The epoch kept and why, for the report (None for a run without `--validation`)."""
    if not isinstance(objective, ValidatedObjective):
        return None
    return {"items": len(split.val_labels), "nodes": split.val_nodes is not None, "metric": objective.metric,
            "best_epoch": objective.best_epoch, f"best_{objective.metric}": objective.best_score,
            "epochs_run": objective.epochs_done, "stopped_early": objective.finished, "patience": objective.patience}


def validation_sentence(validation: dict[str, Any], unit: str, epochs: int) -> str:
    """The card's sentence on the epoch kept."""
    metric = validation["metric"]
    score = validation[f"best_{metric}"]
    value = f"{100 * score:.1f} %" if metric == "accuracy" else f"{score:.4g}"
    run = (f"{validation['epochs_run']} run (of {epochs}; stopped after {validation['patience']} epochs without a "
           "better score)" if validation["stopped_early"] else f"{epochs}")
    where = (f"the dataset's {validation['items']:,} validation nodes" if validation["nodes"] else
             f"{validation['items']:,} {unit} held out of the training ones")
    return (f" The weights are those of epoch {validation['best_epoch']} of {run}: the best validation "
            f"{'RMSE' if metric == 'rmse' else metric}, {value} on {where}.")
