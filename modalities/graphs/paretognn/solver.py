"""Pareto task weights for ParetoGNN: the MGDA min-norm point of per-task gradients.

Each step ParetoGNN takes the gradient of every pretext loss with respect to the shared
encoder, rescales it (`normalize_gradients`), and weights the losses by the convex
combination of those gradients with the smallest norm (Sener & Koltun, NeurIPS 2018).
That point is a common descent direction for every task, so no task is sacrificed.

The min-norm point is found as upstream's `MinNormSolver.find_min_norm_element_FW` does:
start from the best pair of gradients, then Frank–Wolfe steps towards the vertex with the
smallest directional derivative, with an exact line search between two points. Upstream's
quirks are kept on purpose so that the weights match it: the two-point line search never
returns an endpoint exactly (it clamps to 0.999 / 0.001), and on convergence the previous
iterate is returned. Only the Gram matrix of the gradients is needed, computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from zoo.errors import ConfigError

#: Frank–Wolfe iteration cap and L1 step-size stop criterion (upstream's MinNormSolver).
MAX_ITER = 250
STOP_CRIT = 1e-5
#: upstream's line search clamps to these instead of the segment's endpoints
NEAR_ONE, NEAR_ZERO = 0.999, 0.001
#: gradient normalisers offered by upstream's `--grad_norm` (default "l2")
NORMALIZATIONS = ("l2", "loss", "loss+", "none")
#: floor for a normaliser, so that a zero gradient stays zero instead of becoming NaN
MIN_SCALE = 1e-12


def gram_matrix(grads: Sequence[Tensor]) -> Tensor:
    """Inner products of the flattened gradients, in float64 on the CPU."""
    stacked = torch.stack([grad.detach().reshape(-1).double() for grad in grads])
    return (stacked @ stacked.T).cpu()


def _segment_min_norm(v1v1: float, v1v2: float, v2v2: float) -> tuple[float, float]:
    """Weight c on x1 minimising |c x1 + (1 - c) x2|^2, and that squared norm."""
    if v1v2 >= v1v1:
        return NEAR_ONE, v1v1
    if v1v2 >= v2v2:
        return NEAR_ZERO, v2v2
    gamma = -(v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2)
    return gamma, v2v2 + gamma * (v1v2 - v2v2)


def _best_pair(gram: Tensor) -> Tensor:
    """Start point: the min-norm point of the best pair (first pair wins ties)."""
    n = gram.shape[0]
    best_cost, weights = float("inf"), None
    for i in range(n):
        for j in range(i + 1, n):
            gamma, cost = _segment_min_norm(gram[i, i].item(), gram[i, j].item(), gram[j, j].item())
            if cost < best_cost:
                best_cost, weights = cost, torch.zeros(n, dtype=torch.float64)
                weights[i], weights[j] = gamma, 1 - gamma
    if weights is None:
        raise ValueError(f"the gradients' Gram matrix is not finite: {gram.tolist()}; check the task losses for NaN")
    return weights


def min_norm_weights_from_gram(gram: Tensor) -> Tensor:
    """Simplex weights of the min-norm point, given the (n, n) Gram matrix of n gradients."""
    gram = gram.double().cpu()
    n = gram.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    weights = _best_pair(gram)
    if n == 2:
        return weights
    for _ in range(MAX_ITER):
        directional = gram @ weights
        vertex = int(torch.argmin(directional))
        gamma, _ = _segment_min_norm(
            float(weights @ directional), float(directional[vertex]), gram[vertex, vertex].item()
        )
        stepped = gamma * weights
        stepped[vertex] += 1 - gamma
        if (stepped - weights).abs().sum().item() < STOP_CRIT:
            return weights
        weights = stepped
    return weights


def min_norm_weights(grads: Sequence[Tensor]) -> Tensor:
    """Simplex weights (float64, one per task) of the min-norm convex combination of `grads`.

    `grads` are the flattened gradients of each task loss w.r.t. the shared encoder.
    """
    if len(grads) == 0:
        raise ValueError("min_norm_weights needs at least one gradient, got none")
    return min_norm_weights_from_gram(gram_matrix(grads))


def normalize_gradients(grads: Sequence[Tensor], losses: Sequence[Tensor | float], kind: str = "l2") -> list[Tensor]:
    """Rescale each task's gradient as upstream's `gradient_normalizers` does before MGDA.

    "l2" divides by the gradient's norm (all tasks count equally), "loss" by the loss value,
    "loss+" by both, "none" leaves the gradients as they are.
    """
    if kind not in NORMALIZATIONS:
        raise ConfigError(f"unknown gradient normalisation {kind!r}; choose one of {NORMALIZATIONS}")
    if len(grads) != len(losses):
        raise ValueError(f"got {len(grads)} gradients but {len(losses)} losses; pass one loss per task")
    return [grad / _scale(grad, loss, kind) for grad, loss in zip(grads, losses)]


def _scale(grad: Tensor, loss: Tensor | float, kind: str) -> float:
    """The divisor of one task's gradient."""
    scale = 1.0
    if kind in ("l2", "loss+"):
        scale *= grad.detach().double().norm().item()
    if kind in ("loss", "loss+"):
        scale *= float(loss)
    return max(scale, MIN_SCALE)
