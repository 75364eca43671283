"""Downstream models of the T-JEPA paper, trained on representations or on raw features.

- "mlp": the official MLP (a linear layer, then blocks of linear, ReLU, dropout and
  BatchNorm, then a linear head) with the hyperparameters the authors tuned for Adult.
  On T-JEPA tokens (B, T, D) it first maps each token to one number with its own linear
  map (the official `linear_per_feature` input); on raw features it takes min-max
  scaled numerics and one-hot categories, as the official baseline does.
- "xgboost": gradient-boosted trees on the raw features (the paper's GBDT baseline; needs
  the `xgboost` package).

Training: AdamW with a cosine schedule over the epoch budget, batches of 512, early
stopping on the validation loss (patience 16), and the weights of the best validation
loss kept for testing. Classification uses cross-entropy (a logit for binary targets);
regression the MSE of standardised targets, reported as RMSE in the target's own units.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from zoo.errors import ConfigError

#: the official MLP settings tuned for Adult (src/benchmark/tuned_config/adult/mlp_adult_tuned.json)
MLP_ADULT = {"n_hidden": 13, "hidden_dim": 162, "dropout": 0.23113033780480563, "lr": 0.00013468660065330446,
             "weight_decay": 0.0006426475062812694, "batch_size": 512, "max_epochs": 200, "patience": 16}
#: the official XGBoost baseline settings (src/benchmark/model_configs/gbd_configs/xgboost_adult.json)
XGBOOST_ADULT = {"n_estimators": 1000, "max_depth": 5, "learning_rate": 0.1}


@dataclasses.dataclass
class Task:
    """What the model predicts: "binary", "multiclass" (num_classes) or "regression"."""

    kind: str
    num_classes: int = 2

    @property
    def outputs(self) -> int:
        return 1 if self.kind in ("binary", "regression") else self.num_classes

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "multiclass":
            return nn.functional.cross_entropy(logits, target)
        if self.kind == "binary":
            return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), target.float())
        return nn.functional.mse_loss(logits.squeeze(1), target)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "multiclass":
            return logits.argmax(dim=1)
        if self.kind == "binary":
            return (logits.squeeze(1) > 0).long()
        return logits.squeeze(1)


class PerTokenLinear(nn.Module):
    """(B, T, D) tokens -> (B, T): one linear map to a number per token position."""

    def __init__(self, tokens: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(tokens, width))
        self.bias = nn.Parameter(torch.empty(tokens))
        bound = 1.0 / width ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens * self.weight).sum(dim=-1) + self.bias


def build_mlp(input_shape: tuple[int, ...], outputs: int, n_hidden: int, hidden_dim: int, dropout: float) -> nn.Module:
    """The official MLP; `input_shape` (T, D) for tokens or (F,) for a feature vector."""
    stem = [PerTokenLinear(*input_shape)] if len(input_shape) == 2 else []
    blocks = [nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                            nn.BatchNorm1d(hidden_dim)) for _ in range(n_hidden - 1)]
    return nn.Sequential(*stem, nn.Linear(input_shape[0], hidden_dim), *blocks, nn.Linear(hidden_dim, outputs))


def fit_mlp(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], task: Task,
            seed: int, settings: Optional[dict[str, Any]] = None) -> nn.Module:
    """Train the MLP with early stopping on `val`; returns it with its best-validation weights, in eval mode."""
    settings = {**MLP_ADULT, **(settings or {})}
    torch.manual_seed(seed)
    inputs, targets = train
    model = build_mlp(tuple(inputs.shape[1:]), task.outputs, settings["n_hidden"], settings["hidden_dim"],
                      settings["dropout"])
    batches = -(-len(inputs) // settings["batch_size"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings["max_epochs"] * batches)
    generator = torch.Generator().manual_seed(seed)
    best, best_loss, waited = copy.deepcopy(model.state_dict()), float("inf"), 0
    for _ in range(settings["max_epochs"]):
        model.train()
        for index in torch.randperm(len(inputs), generator=generator).split(settings["batch_size"]):
            if len(index) < 2:  # BatchNorm needs two rows
                continue
            loss = task.loss(model(inputs[index]), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        val_loss = evaluate_loss(model, val, task)
        if val_loss < best_loss:
            best, best_loss, waited = copy.deepcopy(model.state_dict()), val_loss, 0
        else:
            waited += 1
            if waited >= settings["patience"]:
                break
    model.load_state_dict(best)
    return model.eval()


@torch.no_grad()
def evaluate_loss(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], task: Task) -> float:
    model.eval()
    return task.loss(predict_logits(model, data[0]), data[1]).item()


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(part) for part in inputs.split(batch_size)])


def score(predicted: np.ndarray, target: np.ndarray, task: Task) -> float:
    """Accuracy for classification; RMSE for regression."""
    if task.kind == "regression":
        return float(np.sqrt(np.mean((predicted - target) ** 2)))
    return float(np.mean(predicted == target))


def fit_xgboost(train: tuple[np.ndarray, np.ndarray], task: Task, seed: int,
                settings: Optional[dict[str, Any]] = None) -> Any:
    """The official XGBoost baseline (fixed number of trees, no early stopping)."""
    try:
        import xgboost
    except ImportError as err:
        raise ConfigError("the GBDT baseline needs xgboost: pip install 'ssl-zoo[bench]' (or xgboost-cpu)") from err
    settings = {**XGBOOST_ADULT, **(settings or {})}
    model_class = xgboost.XGBRegressor if task.kind == "regression" else xgboost.XGBClassifier
    model = model_class(**settings, random_state=seed, n_jobs=torch.get_num_threads())
    model.fit(*train)
    return model
