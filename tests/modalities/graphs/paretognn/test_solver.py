"""ParetoGNN's MGDA solver against analytic min-norm points, and its gradient normalisers."""

import pytest
import torch
from scipy.optimize import minimize

from modalities.graphs.paretognn.solver import (
    NEAR_ONE,
    NEAR_ZERO,
    gram_matrix,
    min_norm_weights,
    min_norm_weights_from_gram,
    normalize_gradients,
)


def random_grads(n: int, dim: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(dim, generator=generator, dtype=torch.float64) for _ in range(n)]


def squared_norm(weights: torch.Tensor, grads: list[torch.Tensor]) -> float:
    return float(weights @ gram_matrix(grads) @ weights)


def exact_min_norm(grads: list[torch.Tensor]) -> float:
    """The min-norm value over the simplex by SLSQP, as an independent reference."""
    gram = gram_matrix(grads).numpy()
    n = len(grads)
    result = minimize(
        lambda w: w @ gram @ w,
        x0=[1.0 / n] * n,
        jac=lambda w: 2 * gram @ w,
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return float(result.fun)


def test_two_tasks_closed_form():
    g1, g2 = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64), torch.tensor([0.2, 1.5, 0.0], dtype=torch.float64)
    v11, v12, v22 = g1 @ g1, g1 @ g2, g2 @ g2
    gamma = float((v22 - v12) / (v11 + v22 - 2 * v12))
    weights = min_norm_weights([g1, g2])
    assert torch.allclose(weights, torch.tensor([gamma, 1 - gamma], dtype=torch.float64), atol=1e-12)
    point = weights[0] * g1 + weights[1] * g2
    # the min-norm point of a segment is orthogonal to it
    assert abs(float(point @ (g1 - g2))) < 1e-12


def test_two_tasks_dominated_pair_uses_upstream_clamp():
    """When one gradient is the min-norm point of the segment, upstream returns 0.999 / 0.001."""
    short, long = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0])  # <short, long> = 2 >= |short|^2 = 1
    assert min_norm_weights([short, long]).tolist() == [NEAR_ONE, 1 - NEAR_ONE]
    assert min_norm_weights([long, short]).tolist() == [NEAR_ZERO, 1 - NEAR_ZERO]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_orthogonal_equal_norm_gradients_get_equal_weights(n):
    """Exact up to Frank–Wolfe's stop criterion: near the optimum upstream's clamped line search
    (0.999) can still take steps of L1 size above STOP_CRIT = 1e-5, depending on rounding."""
    grads = [3.0 * row for row in torch.eye(n + 2)[:n]]
    assert torch.allclose(min_norm_weights(grads), torch.full((n,), 1.0 / n, dtype=torch.float64), atol=2e-5)


def test_gradient_that_is_already_the_min_norm_point_takes_the_weight():
    """g0 = u and g_j = u + v_j with v_j ⟂ u: every combination has norm² |u|² + |Σ c_j v_j|²."""
    generator = torch.Generator().manual_seed(0)
    u = torch.zeros(10, dtype=torch.float64)
    u[0] = 0.3
    others = [u + torch.cat([torch.zeros(1), torch.randn(9, generator=generator)]).double() for _ in range(3)]
    weights = min_norm_weights([u, *others])
    # not exactly 1: upstream's pair start and line search stop at 0.999 and creep towards the vertex
    assert weights[0] > 0.99
    assert squared_norm(weights, [u, *others]) == pytest.approx(0.09, rel=1e-3)


@pytest.mark.parametrize("seed", range(6))
def test_weights_lie_on_the_simplex_and_beat_every_vertex(seed):
    grads = random_grads(2 + seed % 5, 50, seed)
    weights = min_norm_weights(grads)
    assert weights.dtype == torch.float64 and weights.shape == (len(grads),)
    assert (weights >= 0).all() and (weights <= 1).all()
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)
    value = squared_norm(weights, grads)
    assert value <= float(gram_matrix(grads).diagonal().min()) + 1e-12
    assert value == pytest.approx(exact_min_norm(grads), rel=1e-3, abs=1e-9)


def test_correlated_gradients_reach_the_reference_minimum():
    base = random_grads(1, 200, 7)[0]
    grads = [base + 0.3 * noise for noise in random_grads(5, 200, 8)]
    assert squared_norm(min_norm_weights(grads), grads) == pytest.approx(exact_min_norm(grads), rel=1e-3)


def test_single_task_and_bad_input():
    assert min_norm_weights([torch.ones(3)]).tolist() == [1.0]
    with pytest.raises(ValueError, match="at least one"):
        min_norm_weights([])
    with pytest.raises(ValueError, match="NaN"):
        min_norm_weights_from_gram(torch.full((3, 3), float("nan")))


def test_normalizers_follow_upstream():
    grads = [torch.tensor([3.0, 4.0]), torch.tensor([0.0, 2.0])]
    losses = [torch.tensor(2.0), 0.5]
    l2 = normalize_gradients(grads, losses, "l2")
    assert torch.allclose(l2[0], torch.tensor([0.6, 0.8])) and torch.allclose(l2[1], torch.tensor([0.0, 1.0]))
    by_loss = normalize_gradients(grads, losses, "loss")
    assert torch.allclose(by_loss[0], torch.tensor([1.5, 2.0])) and torch.allclose(by_loss[1], torch.tensor([0.0, 4.0]))
    both = normalize_gradients(grads, losses, "loss+")
    assert torch.allclose(both[0], torch.tensor([0.3, 0.4])) and torch.allclose(both[1], torch.tensor([0.0, 2.0]))
    assert all(torch.equal(a, b) for a, b in zip(normalize_gradients(grads, losses, "none"), grads))


def test_normalizers_reject_bad_input_and_keep_zero_gradients_finite():
    with pytest.raises(ValueError, match="l2"):
        normalize_gradients([torch.ones(2)], [1.0], "max")
    with pytest.raises(ValueError, match="one loss per task"):
        normalize_gradients([torch.ones(2)], [1.0, 2.0])
    assert torch.equal(normalize_gradients([torch.zeros(2)], [1.0])[0], torch.zeros(2))


def test_two_l2_normalised_gradients_are_weighted_equally():
    """Two quadratics' gradients at (1, -1): (2, -2) and (-4, 0). At unit length, the min-norm point
    of their chord is its middle, whatever their norms and losses were."""
    grads = [torch.tensor([2.0, -2.0], dtype=torch.float64), torch.tensor([-4.0, 0.0], dtype=torch.float64)]
    weights = min_norm_weights(normalize_gradients(grads, [2.0, 5.0]))
    assert torch.allclose(weights, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-12)
