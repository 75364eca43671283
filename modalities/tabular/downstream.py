"""Downstream models of the T-JEPA paper, trained on representations or on raw features.

- "mlp": the official MLP (a linear layer, then blocks of linear, ReLU, dropout and
  BatchNorm, then a linear head) with the hyperparameters the authors tuned for Adult.
  On T-JEPA tokens (B, T, D) it first maps each token to one number with its own linear
  map (the official `linear_per_feature` input); on raw features it takes min-max
  scaled numerics and one-hot categories, as the official baseline does.
- "resnet": the tabular ResNet of Gorishniy et al. (rtdl_revisiting_models' `ResNet`, which
  the official benchmark wraps), with the same per-token input and the authors' Adult
  settings: blocks of BatchNorm, linear, ReLU, dropout, linear, dropout around a residual,
  a 128-wide output layer, then a linear head.
- "xgboost": gradient-boosted trees on the raw features (the paper's GBDT baseline; needs
  the `xgboost` package).

Training: AdamW with a cosine schedule, batches of 512, early stopping on the validation
loss (patience 16), and the weights of the best validation loss kept for testing. The MLP's
cosine spans the epoch budget; the official ResNet never passes its step count to the
schedule, which keeps its default period of 10 steps (`cosine_steps`): the learning rate
falls to 0 and rises again every 20 steps, and the zoo does the same to reproduce it.
Classification uses cross-entropy (a logit for binary targets); regression the MSE of
standardised targets, reported as RMSE in the target's own units.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Optional

import numpy as np
import torch
from rtdl_revisiting_models import ResNet
from torch import nn
from tqdm.auto import tqdm

from zoo.errors import ConfigError

#: the official MLP settings tuned for Adult (src/benchmark/tuned_config/adult/mlp_adult_tuned.json)
MLP_ADULT = {"n_hidden": 13, "hidden_dim": 162, "dropout": 0.23113033780480563, "lr": 0.00013468660065330446,
             "weight_decay": 0.0006426475062812694, "batch_size": 512, "max_epochs": 200, "patience": 16}
#: the official ResNet settings tuned for Adult (src/benchmark/tuned_config/adult/resnet_adult_tuned.json; d_out is
#: the benchmark's default, cosine_steps the default T_max its BaseModel keeps)
RESNET_ADULT = {"n_blocks": 5, "d_block": 440, "d_hidden_multiplier": 4, "dropout1": 0.04165710202295963,
                "dropout2": 0.13671269877601985, "d_out": 128, "lr": 0.0008902636479552213,
                "weight_decay": 0.00007961456456803551, "batch_size": 512, "max_epochs": 200, "patience": 16,
                "cosine_steps": 10}
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


def token_stem(input_shape: tuple[int, ...]) -> list[nn.Module]:
    """Tokens (T, D) are mapped to T numbers first; a feature vector (F,) goes in as it is."""
    return [PerTokenLinear(*input_shape)] if len(input_shape) == 2 else []


def build_mlp(input_shape: tuple[int, ...], outputs: int, settings: dict[str, Any]) -> nn.Module:
    """The official MLP; `input_shape` (T, D) for tokens or (F,) for a feature vector."""
    width = settings["hidden_dim"]
    blocks = [nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(settings["dropout"]),
                            nn.BatchNorm1d(width)) for _ in range(settings["n_hidden"] - 1)]
    return nn.Sequential(*token_stem(input_shape), nn.Linear(input_shape[0], width), *blocks,
                         nn.Linear(width, outputs))


def build_resnet(input_shape: tuple[int, ...], outputs: int, settings: dict[str, Any]) -> nn.Module:
    """The official ResNet: rtdl's ResNet with a `d_out`-wide output, then a linear head."""
    body = ResNet(d_in=input_shape[0], d_out=settings["d_out"], n_blocks=settings["n_blocks"],
                  d_block=settings["d_block"], d_hidden_multiplier=settings["d_hidden_multiplier"],
                  dropout1=settings["dropout1"], dropout2=settings["dropout2"])
    return nn.Sequential(*token_stem(input_shape), body, nn.Linear(settings["d_out"], outputs))


def cosine_schedule(optimizer: torch.optim.Optimizer, settings: dict[str, Any],
                    batches: int) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Stepped once per batch: over `cosine_steps` when set (the official ResNet's cycling
    schedule), else over the whole epoch budget."""
    period = settings.get("cosine_steps") or settings["max_epochs"] * batches
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=period)


#: network name -> (builder, the authors' settings for Adult)
NETWORKS = {"mlp": (build_mlp, MLP_ADULT), "resnet": (build_resnet, RESNET_ADULT)}


def fit_network(name: str, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                task: Task, seed: int, settings: Optional[dict[str, Any]] = None) -> nn.Module:
    """Train network `name` with early stopping on `val`; returns it with its best-validation weights, in eval mode."""
    build, defaults = NETWORKS[name]
    settings = {**defaults, **(settings or {})}
    torch.manual_seed(seed)
    inputs, targets = train
    model = build(tuple(inputs.shape[1:]), task.outputs, settings)
    batches = -(-len(inputs) // settings["batch_size"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    schedule = cosine_schedule(optimizer, settings, batches)
    generator = torch.Generator().manual_seed(seed)
    best, best_loss, waited = copy.deepcopy(model.state_dict()), float("inf"), 0
    epochs = tqdm(range(settings["max_epochs"]), desc=f"{name} (seed {seed})", unit="epoch", disable=None,
                  leave=False)
    for _ in epochs:
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
        epochs.set_postfix(val_loss=f"{val_loss:.4f}", best=f"{min(val_loss, best_loss):.4f}")
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
    """`task`'s loss over a whole split (standardised targets for regression): what early stopping
    compares. Leaves `model` in eval mode."""
    model.eval()
    return task.loss(predict_logits(model, data[0]), data[1]).item()


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(N, outputs) logits of `model` in eval mode, `batch_size` rows at a time; leaves it in eval mode."""
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
        raise ConfigError("the GBDT baseline needs xgboost: `pip install -e '.[bench]'` in the checkout, or pip "
                          "install xgboost-cpu") from err
    settings = {**XGBOOST_ADULT, **(settings or {})}
    model_class = xgboost.XGBRegressor if task.kind == "regression" else xgboost.XGBClassifier
    model = model_class(**settings, random_state=seed, n_jobs=torch.get_num_threads())
    model.fit(*train)
    return model
