"""Linear probe, k-NN and RankMe on synthetic embeddings with known answers."""

import numpy as np
import pytest
import torch

from zoo.errors import InputError
from zoo.evaluation import knn_accuracy, linear_probe, rankme


def blobs(n_per_class: int, classes: int, dim: int, spread: float, seed: int):
    """Gaussian blobs around random unit-scale centres: separable when `spread` is small."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_separable_classes_are_found_by_both_classifiers():
    train_x, train_y = blobs(40, 5, 16, 0.5, seed=0)
    test_x, test_y = blobs(20, 5, 16, 0.5, seed=0)
    test_x = test_x + 0.01  # not the training points themselves
    assert linear_probe(train_x, train_y, test_x, test_y) == 1.0
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=5) == 1.0


def test_random_labels_stay_near_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 8))
    y = rng.integers(0, 4, size=600)
    assert linear_probe(x[:400], y[:400], x[400:], y[400:]) < 0.4
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:], k=20) < 0.4


def test_accepts_torch_tensors_and_string_labels():
    train_x, train_y = blobs(30, 3, 8, 0.3, seed=2)
    names = np.array(["a", "b", "c"])[train_y]
    tensor = torch.from_numpy(train_x).float()
    assert linear_probe(tensor, names, tensor, names) == 1.0
    assert knn_accuracy(tensor, names, tensor, names, k=3) == 1.0


def test_knn_uses_cosine_similarity_and_breaks_ties_by_similarity():
    train_x = np.array([[1.0, 0.0], [0.0, 1.0]])
    train_y = np.array([0, 1])
    # far along class 0's direction: cosine says class 0 although it is closer to class 1 in L2
    assert knn_accuracy(train_x, train_y, np.array([[10.0, 1.0]]), np.array([0]), k=1) == 1.0
    # k=2: one vote each; the tie goes to the more similar neighbour
    assert knn_accuracy(train_x, train_y, np.array([[0.2, 1.0]]), np.array([1]), k=2) == 1.0
    assert knn_accuracy(train_x, train_y, np.array([[1.0, 0.2]]), np.array([0]), k=2) == 1.0


def test_rankme_of_equal_singular_values_is_the_rank():
    rng = np.random.default_rng(3)
    left, _ = np.linalg.qr(rng.normal(size=(200, 5)))
    right, _ = np.linalg.qr(rng.normal(size=(64, 5)))
    assert rankme(left @ right.T) == pytest.approx(5.0, abs=1e-3)


def test_rankme_of_rank_deficient_data_is_close_to_its_rank():
    rng = np.random.default_rng(4)
    low_rank = rng.normal(size=(1000, 5)) @ rng.normal(size=(5, 64))
    assert 4.0 < rankme(low_rank) <= 5.0 + 1e-3
    isotropic = rng.normal(size=(4000, 32))
    assert rankme(isotropic) > 30.0
    collapsed = np.outer(rng.normal(size=300), rng.normal(size=16))
    assert rankme(collapsed) == pytest.approx(1.0, abs=1e-3)


def test_bad_inputs_name_the_problem():
    x = np.zeros((10, 4))
    y = np.arange(10) % 2
    with pytest.raises(InputError, match="train_x has 4 features but test_x has 3"):
        linear_probe(x, y, np.zeros((5, 3)), y[:5])
    with pytest.raises(InputError, match="train_y has shape"):
        knn_accuracy(x, y[:9], x, y)
    with pytest.raises(InputError, match="k=11"):
        knn_accuracy(x, y, x, y, k=11)
    with pytest.raises(InputError, match="single class"):
        linear_probe(x, np.zeros(10), x, np.zeros(10))
    with pytest.raises(InputError, match="NaN"):
        rankme(np.full((3, 3), np.nan))
    with pytest.raises(InputError, match="all zero"):
        rankme(np.zeros((3, 3)))
