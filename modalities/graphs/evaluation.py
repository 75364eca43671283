"""GraphMAE's protocols on frozen embeddings (`zoo probe NAME --dataset D`).

Node classification (`graphmae/evaluation.py`): a linear layer is trained full-batch on
the training nodes with Adam (lr `lr_f`, L2 decay `weight_decay_f`) for `max_epoch_f`
epochs. Two test accuracies are reported, as upstream: at the last epoch ("final") and at
the epoch with the best validation accuracy, later epochs winning ties ("early-stopped").

Graph classification (`main_graph.py`, "svm-10fold"): one readout row per graph, 10-fold
stratified cross-validation (shuffled, random_state 0); in each fold an RBF SVM whose C
is chosen from {1e-3, ..., 10} by an inner 5-fold grid search; accuracy mean ± std over folds.
"""

from __future__ import annotations

import statistics
from typing import Any, Optional

import torch
from torch import nn

from zoo import registry
from zoo.errors import ConfigError, InputError

#: GraphMAE's probe settings for Cora (lr_f, weight_decay_f, max_epoch_f)
PROBE_DEFAULTS = {"lr": 0.01, "weight_decay": 1e-4, "epochs": 300}
#: `zoo probe --protocol`: node datasets take the linear probe, sets of graphs the SVM
PROTOCOLS = ("linear-probe", "svm-10fold")
SVM_C_GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose highest logit is their label, in [0, 1] (NaN for no rows);
    `probe_dataset` reports it in %."""
    return (logits.argmax(dim=1) == labels).float().mean().item()


def node_probe(embeddings: torch.Tensor, labels: torch.Tensor, train_mask: torch.Tensor, val_mask: torch.Tensor,
               test_mask: torch.Tensor, lr: float = 0.01, weight_decay: float = 1e-4, epochs: int = 300,
               seed: int = 0) -> dict[str, float]:
    """Train a linear classifier on frozen node embeddings; accuracies in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(embeddings.shape[1], int(labels.max()) + 1)
    with torch.no_grad():
        bound = 1 / embeddings.shape[1] ** 0.5
        classifier.weight.uniform_(-bound, bound, generator=generator)
        classifier.bias.uniform_(-bound, bound, generator=generator)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    best = {"val": -1.0, "epoch": -1, "test": 0.0}
    for epoch in range(epochs):
        loss = nn.functional.cross_entropy(classifier(embeddings[train_mask]), labels[train_mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logits = classifier(embeddings)
        val, test = accuracy(logits[val_mask], labels[val_mask]), accuracy(logits[test_mask], labels[test_mask])
        if val >= best["val"]:
            best = {"val": val, "epoch": epoch, "test": test}
    return {"final_acc": test, "early_stopped_acc": best["test"], "best_val_acc": best["val"],
            "best_epoch": best["epoch"]}


def svm_10fold(embeddings: Any, labels: Any, jobs: int = 1) -> dict[str, Any]:
    """Upstream's graph-classification score: accuracy (%) mean and std over 10 stratified folds.

    `jobs` runs each fold's grid search in that many processes; the scores do not depend on it
    (NCI1's 4,110 graphs take 4-6 CPU-minutes per scoring, hence the option)."""
    import numpy as np
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    x, y = np.asarray(embeddings, dtype=np.float64), np.asarray(labels)
    folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=0)
    scores = []
    for train, test in folds.split(x, y):
        search = GridSearchCV(SVC(random_state=42), {"C": SVM_C_GRID}, n_jobs=jobs).fit(x[train], y[train])
        scores.append(100 * float((search.predict(x[test]) == y[test]).mean()))
    return {"accuracy": round(float(np.mean(scores)), 2), "accuracy_std": round(float(np.std(scores)), 2),
            "folds": [round(score, 2) for score in scores]}


def probe_graphs(encoder: Any, graphs: list[Any], dataset: str, device: Optional[str],
                 jobs: int = 1) -> dict[str, Any]:
    """The svm-10fold protocol on a set of labelled graphs, read out as the checkpoint was trained."""
    if any(getattr(graph, "y", None) is None for graph in graphs):
        raise InputError(f"dataset {dataset!r} has graphs without a label y; the graph probe needs one per graph")
    pool = "mean" if encoder.config.pooling == "none" else encoder.config.pooling
    rows = encoder.embed(graphs, pool=pool, device=device, progress=False).float()
    labels = torch.cat([graph.y.view(-1) for graph in graphs])
    return {"dataset": dataset, "protocol": "svm-10fold (GraphMAE)", "pool": pool, "graphs": len(graphs),
            **svm_10fold(rows.numpy(), labels.numpy(), jobs)}


def check_split(data: Any, name: str) -> None:
    """Refuse a node dataset without the labels `y` and the train/val/test masks the linear
    probe reads, naming those it lacks."""
    missing = [key for key in ("y", "train_mask", "val_mask", "test_mask") if getattr(data, key, None) is None]
    if missing:
        raise InputError(f"dataset {name!r} has no {missing}; the node probe needs labels and a train/val/test split")


def probe_dataset(encoder: Any, dataset: str, data_root: Optional[str] = None, seeds: tuple[int, ...] = (0,),
                  device: Optional[str] = None, settings: Optional[dict[str, Any]] = None,
                  protocol: Optional[str] = None) -> dict[str, Any]:
    """Embed a dataset's nodes once and probe them with each seed; accuracies in %.

    `settings` overrides `PROBE_DEFAULTS` (lr, weight_decay, epochs); by default the encoder's
    family's recipe for `dataset` gives them, when there is one (`registry.probe_settings`). A
    set of graphs (the TU sets) is scored with the svm-10fold protocol instead, whose folds and
    SVMs are fixed as GraphMAE's: other `seeds` than (0,) are refused there, since they would
    name runs that are one. `protocol`, when given, must be the dataset's own (one of `PROTOCOLS`).
    """
    from modalities.graphs.datasets import load_dataset

    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
    data = load_dataset(dataset, data_root)
    own = "svm-10fold" if isinstance(data, list) else "linear-probe"
    if protocol not in (None, own):
        raise ConfigError(f"dataset {dataset!r} is scored with GraphMAE's {own} protocol, not {protocol!r}; "
                         f"drop --protocol or pass --protocol {own}")
    if isinstance(data, list):
        if tuple(seeds) != (0,):
            raise ConfigError(f"seeds {list(seeds)}: dataset {dataset!r} is scored with GraphMAE's svm-10fold "
                             "protocol, whose folds and SVMs are fixed (random_state 0 and 42, as upstream's), so "
                             "every seed gives the same run; drop --seeds")
        return probe_graphs(encoder, data, dataset, device)
    check_split(data, dataset)
    options = {**PROBE_DEFAULTS, **(registry.probe_settings(encoder.family, dataset) if settings is None else settings)}
    options.pop("protocol", None)
    embeddings = encoder.embed(data, pool="none", device=device, progress=False).float()
    runs = [node_probe(embeddings, data.y, data.train_mask, data.val_mask, data.test_mask, seed=seed, **options)
            for seed in seeds]
    summary = {"dataset": dataset, "protocol": "linear probe (GraphMAE)", "seeds": list(seeds), **options}
    for key in ("final_acc", "early_stopped_acc"):
        values = [100 * run[key] for run in runs]
        summary[key] = round(statistics.mean(values), 2)
        summary[f"{key}_std"] = round(statistics.pstdev(values), 2)
        summary[f"{key}_runs"] = [round(value, 2) for value in values]
    return summary
