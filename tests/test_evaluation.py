"""Linear probe, k-NN and RankMe on synthetic embeddings with known answers."""

import numpy as np
import pytest
import torch

from zoo.errors import ConfigError, InputError
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


def test_the_linear_probe_standardises_features_before_fitting():
    """The one informative feature has scale 1e-3, four noise features scale 1: standardised, the
    probe scores 0.995-1.0 (seeds 0-3); fitted on raw features, the L2 penalty keeps the tiny
    feature's weight small and it scores 0.50-0.55."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    x = np.column_stack([(2 * y - 1 + 0.3 * rng.normal(size=400)) * 1e-3, rng.normal(size=(400, 4))])
    assert linear_probe(x[:200], y[:200], x[200:], y[200:]) >= 0.9


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
    with pytest.raises(ConfigError, match="k=0; use a whole number of neighbours"):  # was an InputError
        knn_accuracy(train_x, train_y, np.array([[1.0, 0.2]]), np.array([0]), k=0)
    with pytest.raises(ConfigError, match="k=2.5"):
        knn_accuracy(train_x, train_y, np.array([[1.0, 0.2]]), np.array([0]), k=2.5)
    with pytest.raises(InputError, match=r"k=3 must lie in \[1, 2\] \(the number of training items\)"):
        knn_accuracy(train_x, train_y, np.array([[1.0, 0.2]]), np.array([0]), k=3)


def test_rankme_of_equal_singular_values_is_the_rank():
    rng = np.random.default_rng(3)
    left, _ = np.linalg.qr(rng.normal(size=(200, 5)))
    right, _ = np.linalg.qr(rng.normal(size=(64, 5)))
    assert rankme(left @ right.T) == pytest.approx(5.0, abs=1e-3)


def test_rankme_of_an_uneven_spectrum_weighs_singular_values_not_their_squares():
    """Singular values (4, 2, 1, 0.5): p_k = s_k / sum(s) gives RankMe 3.117 (the paper's formula);
    p_k from the squared values (the variance spectrum) would give 2.063. Equal values cannot tell
    the two apart."""
    rng = np.random.default_rng(5)
    singular = np.array([4.0, 2.0, 1.0, 0.5])
    left, _ = np.linalg.qr(rng.normal(size=(50, 4)))
    right, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # D = 4: no further (zero) singular values
    p = singular / singular.sum() + 1e-7
    expected = float(np.exp(-(p * np.log(p)).sum()))
    assert expected == pytest.approx(3.117, abs=1e-3)
    assert rankme(left @ np.diag(singular) @ right.T) == pytest.approx(expected, abs=1e-9)  # equal here (float64)


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


def test_a_non_finite_embedding_is_named_by_its_item():
    """Was "train_x holds NaN or infinite values", with no word of which of the items."""
    x, y = blobs(10, 2, 4, 0.5, seed=5)
    x[5, 1] = np.nan
    x[8, 0] = np.inf
    with pytest.raises(InputError, match="NaN or infinite values in 2 of its 20 items, the first at item 5"):
        linear_probe(x, y, x[:4] * 0 + 1, y[:4])


def test_rankme_of_all_zero_embeddings_is_zero_and_the_probes_still_score():
    """Was an InputError that aborted a whole probe: a zero matrix's rank is 0 (full collapse)."""
    zeros = np.zeros((12, 4))
    y = np.arange(12) % 2
    assert rankme(zeros) == 0.0
    assert linear_probe(zeros, y, zeros, y) == 0.5 and knn_accuracy(zeros, y, zeros, y, k=3) == 0.5


@pytest.mark.parametrize("train_y, test_y, message", [
    (np.array(["0", "1"] * 10), np.array([0, 1] * 5), r"train_y holds text labels \(such as '0'\) but test_y holds "
     "number labels"),  # was 0.0 from both probes
    (np.array([0, 1] * 10), np.array([0, 1, 7, 9, 7] * 2), r"labels that no training item has: \[7, 9\] \(6 test "
     r"items\)"),  # was scored, the unseen items counted wrong
    (np.linspace(0, 1, 20), np.linspace(0, 1, 10), r"continuous values, such as 0.0526"),  # was sklearn's ValueError
    (np.array([None, "a"] * 10, dtype=object), np.array(["a"] * 10, dtype=object),
     r"train_y has no label \(None\) at item 0"),  # was a TypeError from np.unique
    (np.array([1, "1"] * 10, dtype=object), np.array([1] * 10, dtype=object), "both text and numbers"),
    (np.zeros(20, dtype=int), np.zeros(10, dtype=int), "single class, 0; a probe needs at least two"),  # knn scored it
])
def test_labels_the_probes_cannot_score_are_refused_by_both(train_y, test_y, message):
    x, _ = blobs(10, 2, 4, 0.5, seed=6)
    for probe in (linear_probe, knn_accuracy):
        with pytest.raises(InputError, match=message):
            probe(x, train_y, x[:10], test_y)


def test_integer_valued_float_labels_are_classes():
    """Labels read as floats (1.0, 2.0) are classes still, and equal to the same ints."""
    x, y = blobs(10, 2, 4, 0.1, seed=7)
    assert linear_probe(x, y.astype(float), x, y) == 1.0 and knn_accuracy(x, y, x, y.astype(float), k=3) == 1.0


def test_knn_compares_test_rows_in_blocks_of_bounded_size(monkeypatch):
    """A block of test-against-training similarities stays under KNN_BLOCK_BYTES whatever the
    training set (1,024 test rows against 50,000 items were 410 MB, 1.7 GB with their copies),
    and the accuracy is the same as in one block."""
    import zoo.evaluation

    train_x, train_y = blobs(200, 3, 8, 1.0, seed=4)
    test_x, test_y = blobs(90, 3, 8, 1.0, seed=5)
    whole = knn_accuracy(train_x, train_y, test_x, test_y, k=5)
    shapes = []
    original = np.argpartition
    monkeypatch.setattr(zoo.evaluation.np, "argpartition", lambda a, *args, **kwargs: shapes.append(a.shape)
                        or original(a, *args, **kwargs))
    monkeypatch.setattr(zoo.evaluation, "KNN_BLOCK_BYTES", 8 * len(train_x) * 7, raising=False)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=5) == whole
    assert max(rows for rows, _ in shapes) == 7 and sum(rows for rows, _ in shapes) == len(test_x)
