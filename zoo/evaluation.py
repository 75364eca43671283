"""Frozen-feature evaluation for any modality: linear probe, k-NN and RankMe.

Every function takes per-item embeddings as numpy arrays or torch tensors of shape
(N, D) (N items, D features) and labels of shape (N,), so it serves speech, images,
graphs and tables alike.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError, InputError

#: bytes of one block of float64 test-against-training similarities in `knn_accuracy`: its
#: test rows are as many as fit (1,024 rows against 50,000 training items were 410 MB, about
#: 1.7 GB with their negated copy and indices)
KNN_BLOCK_BYTES = 64 * 2**20


def as_features(values: Any, name: str) -> np.ndarray:
    """(N, D) float64 numpy array from a numpy array, a tensor or nested lists."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise InputError(f"{name} has shape {array.shape}; pass (N, D) embeddings with N >= 1")
    bad = non_finite_rows(array)
    if len(bad):
        raise InputError(f"{name} holds NaN or infinite values in {len(bad)} of its {len(array)} items, the first "
                         f"at item {bad[0]}; check the encoder's output for that input")
    return array


def non_finite_rows(array: np.ndarray) -> np.ndarray:
    """The indices of the rows of an (N, D) array that hold a NaN or an infinite value."""
    return np.flatnonzero(~np.isfinite(array).all(axis=1))


def as_labels(values: Any, count: int, name: str) -> np.ndarray:
    """(N,) labels matching `count` items."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    labels = np.asarray(values)
    if labels.shape != (count,):
        raise InputError(f"{name} has shape {labels.shape}; expected one label per item, ({count},)")
    return labels


def label_kind(labels: np.ndarray, name: str) -> str:
    """"text" or "number": what class labels hold. Labels a classifier cannot take are refused
    by name: None (an item without a label), continuous values (a regression target), a mix
    of text and numbers."""
    if labels.dtype.kind in "US":
        return "text"
    if labels.dtype.kind == "O":
        missing = next((index for index, value in enumerate(labels) if value is None), None)
        if missing is not None:
            raise InputError(f"{name} has no label (None) at item {missing}; label every item or leave it out")
        kinds = {"text" if isinstance(value, (str, bytes)) else "number" for value in labels}
        if len(kinds) > 1:
            raise InputError(f"{name} holds both text and numbers; a label 1 and a label '1' would be two classes: "
                             "give every label the same type")
        if kinds == {"text"}:
            return "text"
        labels = labels.astype(np.float64)
    if labels.dtype.kind == "f":
        fractional = np.flatnonzero(labels != np.round(labels))  # NaN too: it equals nothing
        if len(fractional):
            raise InputError(f"{name} holds continuous values, such as {labels[fractional[0]].item()!r} at item "
                             f"{fractional[0]}; the probes classify: pass class labels (a regression target "
                             "needs a regression protocol)")
    return "number"


def check_labels(train_labels: np.ndarray, test_labels: np.ndarray) -> None:
    """Labels both probes can score, checked the same way for both: of one kind in the two splits
    (train labels '1' never equal test labels 1, so every test item would be scored wrong), at
    least two training classes, and no test label that no training item has (no classifier can
    predict it, so the accuracy would count it wrong rather than measure the features)."""
    train_kind, test_kind = label_kind(train_labels, "train_y"), label_kind(test_labels, "test_y")
    if train_kind != test_kind:
        train_example, test_example = train_labels[:1].tolist()[0], test_labels[:1].tolist()[0]
        raise InputError(f"train_y holds {train_kind} labels (such as {train_example!r}) but test_y holds {test_kind} "
                         f"labels (such as {test_example!r}); no test label can equal a training label: read both "
                         "splits' labels the same way")
    classes = np.unique(train_labels)
    if len(classes) < 2:
        raise InputError(f"train_y holds a single class, {classes[:1].tolist()[0]!r}; a probe needs at least two")
    unseen = np.setdiff1d(np.unique(test_labels), classes)
    if len(unseen):
        count = int(np.isin(test_labels, unseen).sum())
        raise InputError(f"test_y holds labels that no training item has: {unseen[:10].tolist()} ({count} test "
                         f"items); no probe can predict them: leave those items out or add training items of them")


def probe_inputs(train_x, train_y, test_x, test_y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embeddings and labels of a probe, checked (`as_features`, `as_labels`, `check_labels`)."""
    train = as_features(train_x, "train_x")
    test = as_features(test_x, "test_x")
    if train.shape[1] != test.shape[1]:
        raise InputError(
            f"train_x has {train.shape[1]} features but test_x has {test.shape[1]}; embed both the same way")
    train_labels, test_labels = as_labels(train_y, len(train), "train_y"), as_labels(test_y, len(test), "test_y")
    check_labels(train_labels, test_labels)
    return train, train_labels, test, test_labels


def linear_probe(train_x: Any, train_y: Any, test_x: Any, test_y: Any, seed: int = 0,
                 max_iter: int = 5000, C: float = 1.0) -> float:
    """Accuracy of a linear classifier on frozen features.

    What it is: each feature is standardised with the training set's mean and standard
    deviation, then a multinomial logistic regression (scikit-learn's
    `LogisticRegression`, L-BFGS, L2 penalty of strength 1/C, up to `max_iter`
    iterations) is fitted on the training items and scored on the test items. No
    hyper-parameter search, so numbers compare encoders rather than tuning effort.

    Args:
        train_x / test_x: (N, D) embeddings.
        train_y / test_y: (N,) class labels, ints or strings, of one kind in both; every test
            label also a training label (`check_labels`).
        seed: random_state of the solver; L-BFGS draws nothing, so the probe is deterministic
            and the seed changes no result.
        max_iter: L-BFGS iterations; the default converges on standardised features.
        C: inverse L2 strength (default: 1.0, scikit-learn's).

    Returns:
        Test accuracy in [0, 1].
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, train_labels, test, test_labels = probe_inputs(train_x, train_y, test_x, test_y)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    model.fit(train, train_labels)
    return float((model.predict(test) == test_labels).mean())


def knn_accuracy(train_x: Any, train_y: Any, test_x: Any, test_y: Any, k: int = 20) -> float:
    """Accuracy of a k-nearest-neighbour classifier under cosine similarity.

    Each test item takes the majority label of its `k` most similar training items
    (embeddings are L2-normalised, no standardisation); a tie goes to the tied class
    whose neighbours have the larger summed similarity.

    Args:
        train_x / test_x: (N, D) embeddings.
        train_y / test_y: (N,) class labels, checked as `linear_probe`'s (`check_labels`).
        k: neighbours; at most the number of training items.

    Returns:
        Test accuracy in [0, 1].
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:  # a setting, as `zoo probe --k` refuses
        raise ConfigError(f"k={k!r}; use a whole number of neighbours, 1 or more")
    train, train_labels, test, test_labels = probe_inputs(train_x, train_y, test_x, test_y)
    if k > len(train):
        raise InputError(f"k={k} must lie in [1, {len(train)}] (the number of training items); pass a smaller k")
    classes, train_codes = np.unique(train_labels, return_inverse=True)
    train_unit = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    test_unit = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    predictions = []
    block = max(1, KNN_BLOCK_BYTES // (8 * len(train_unit)))
    for start in range(0, len(test_unit), block):
        similarity = test_unit[start : start + block] @ train_unit.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        nearest_similarity = np.take_along_axis(similarity, nearest, axis=1)
        votes = np.zeros((len(nearest), len(classes)))
        summed = np.zeros((len(nearest), len(classes)))
        rows = np.repeat(np.arange(len(nearest)), k)
        np.add.at(votes, (rows, train_codes[nearest].ravel()), 1.0)
        np.add.at(summed, (rows, train_codes[nearest].ravel()), nearest_similarity.ravel())
        # summed lies in [-k, k], so the tie-break term stays below one vote
        predictions.append(classes[np.argmax(votes + (summed + k) / (2 * k + 1), axis=1)])
    return float((np.concatenate(predictions) == test_labels).mean())


def rankme(embeddings: Any, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023, https://arxiv.org/abs/2210.02885): the effective rank of embeddings.

    With singular values s_k of the (N, D) embedding matrix (not centred, as in the
    paper) and p_k = s_k / sum(s) + eps, RankMe = exp(-sum_k p_k log p_k). It ranges from
    1 (collapsed to one direction) to min(N, D), and equals r when r singular values are
    equal and the rest are zero; a higher value means less dimensional collapse. All-zero
    embeddings (fully collapsed) have no direction at all: 0, the rank of a zero matrix.

    Args:
        embeddings: (N, D) per-item embeddings.
        eps: the paper's smoothing constant.
    """
    matrix = torch.from_numpy(as_features(embeddings, "embeddings"))
    singular = torch.linalg.svdvals(matrix)
    if float(singular.sum()) == 0.0:  # p would be 0/0; the rank of a zero matrix is 0
        return 0.0
    p = singular / singular.sum() + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))
