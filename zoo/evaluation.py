"""Frozen-feature evaluation for any modality: linear probe, k-NN and RankMe.

Every function takes per-item embeddings as numpy arrays or torch tensors of shape
(N, D) (N items, D features) and labels of shape (N,), so it serves speech, images,
graphs and tables alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zoo.errors import InputError

#: test items compared with the training set at once in `knn_accuracy`
KNN_CHUNK = 1024


def as_features(values: Any, name: str) -> np.ndarray:
    """(N, D) float64 numpy array from a numpy array, a tensor or nested lists."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise InputError(f"{name} has shape {array.shape}; pass (N, D) embeddings with N >= 1")
    if not np.isfinite(array).all():
        raise InputError(f"{name} holds NaN or infinite values; check the encoder's output")
    return array


def as_labels(values: Any, count: int, name: str) -> np.ndarray:
    """(N,) labels matching `count` items."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    labels = np.asarray(values)
    if labels.shape != (count,):
        raise InputError(f"{name} has shape {labels.shape}; expected one label per item, ({count},)")
    return labels


def probe_inputs(train_x, train_y, test_x, test_y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = as_features(train_x, "train_x")
    test = as_features(test_x, "test_x")
    if train.shape[1] != test.shape[1]:
        raise InputError(
            f"train_x has {train.shape[1]} features but test_x has {test.shape[1]}; embed both the same way")
    return train, as_labels(train_y, len(train), "train_y"), test, as_labels(test_y, len(test), "test_y")


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
        train_y / test_y: (N,) class labels (ints or strings).
        seed: random state of the solver.
        max_iter: L-BFGS iterations; the default converges on standardised features.
        C: inverse L2 strength (default: 1.0, scikit-learn's).

    Returns:
        Test accuracy in [0, 1].
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, train_labels, test, test_labels = probe_inputs(train_x, train_y, test_x, test_y)
    if len(np.unique(train_labels)) < 2:
        raise InputError("train_y holds a single class; a probe needs at least two")
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
        train_y / test_y: (N,) class labels.
        k: neighbours; at most the number of training items.

    Returns:
        Test accuracy in [0, 1].
    """
    train, train_labels, test, test_labels = probe_inputs(train_x, train_y, test_x, test_y)
    if not 1 <= k <= len(train):
        raise InputError(f"k={k} must lie in [1, {len(train)}] (the number of training items)")
    classes, train_codes = np.unique(train_labels, return_inverse=True)
    train_unit = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    test_unit = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    predictions = []
    for start in range(0, len(test_unit), KNN_CHUNK):
        similarity = test_unit[start : start + KNN_CHUNK] @ train_unit.T
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
    equal and the rest are zero; a higher value means less dimensional collapse.

    Args:
        embeddings: (N, D) per-item embeddings.
        eps: the paper's smoothing constant.
    """
    matrix = torch.from_numpy(as_features(embeddings, "embeddings"))
    singular = torch.linalg.svdvals(matrix)
    if float(singular.sum()) == 0.0:
        raise InputError("embeddings are all zero; RankMe is undefined for a zero matrix")
    p = singular / singular.sum() + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))
