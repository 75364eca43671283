"""T-JEPA's pretraining objective: predict the target encoder's feature tokens from a context.

Per batch: the target encoder (an EMA copy of the context encoder, never trained by
gradients) encodes the full rows; the context encoder encodes only the regularization
tokens and the context features; the predictor predicts, for each of `num_preds` target
subsets, the target encoder's tokens at those features; the loss is their mean squared
error. After each optimizer step the target encoder moves towards the context encoder
with a momentum rising linearly from `ema_start` to `ema_end` over the run, as the
official momentum scheduler. The encoder a run publishes is the target encoder (the
official code embeds and probes with it).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from modalities.tabular.tjepa.masking import MaskSampler
from modalities.tabular.tjepa.model import TJEPAEncoder
from modalities.tabular.tjepa.predictor import TJEPAPredictor
from zoo.errors import ConfigError
from zoo.outputs import PretrainOutput

MASK_SCOPES = ("features", "official")


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tokens (B, T, D) at positions index (B, n) -> (B, n, D)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class TJEPAPretraining(nn.Module):
    """Context encoder + EMA target encoder + predictor; `forward(batch)` gives the JEPA loss."""

    def __init__(self, encoder: TJEPAEncoder, masks: MaskSampler, predictor: dict[str, Any], total_steps: int,
                 ema_start: float = 0.996, ema_end: float = 1.0, mask_scope: str = "features") -> None:
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.predictor = TJEPAPredictor(config.num_tokens, config.hidden_dim, activation=config.activation,
                                        eps=config.layer_norm_eps, **predictor)
        if mask_scope not in MASK_SCOPES:
            raise ConfigError(f"mask_scope={mask_scope!r} is not one of {MASK_SCOPES}")
        self.masks, self.mask_scope = masks, mask_scope
        self.total_steps = total_steps
        self.ema_start, self.ema_end = ema_start, ema_end
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def token_positions(self, context: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature indices -> token positions. "features": past the regularization tokens,
        which every context keeps; "official": the indices taken as token positions, as the
        official code does (so the first regularization token can be context or target and
        the last feature is never masked)."""
        if self.mask_scope == "official":
            return context, targets
        reg = self.encoder.config.num_reg_tokens
        reg_index = torch.arange(reg, device=context.device).expand(context.shape[0], -1)
        return torch.cat([reg_index, context + reg], dim=1), targets + reg

    def momentum(self, step: int) -> float:
        return self.ema_start + step * (self.ema_end - self.ema_start) / self.total_steps

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        numeric, categorical = batch["numeric"], batch["categorical"]
        masks = self.masks(numeric.shape[0])
        context, targets = self.token_positions(masks.context.to(numeric.device), masks.targets.to(numeric.device))
        with torch.no_grad():
            full = self.target_encoder.transformer(self.target_encoder.embed_tokens(numeric, categorical))[-1]
            wanted = torch.cat([gather_tokens(full, subset) for subset in targets])
        tokens = gather_tokens(self.encoder.embed_tokens(numeric, categorical), context)
        encoded = self.encoder.transformer(tokens)[-1]
        predicted = self.predictor(encoded, context, targets)
        loss = nn.functional.mse_loss(predicted, wanted)
        return PretrainOutput(loss=loss, logs={"context": masks.context.shape[1], "target": masks.targets.shape[2]})

    @torch.no_grad()
    def after_step(self) -> None:
        """EMA update of the target encoder, with the momentum of the step just taken."""
        momentum = self.momentum(int(self.steps_done))
        for target, online in zip(self.target_encoder.parameters(), self.encoder.parameters()):
            target.mul_(momentum).add_(online.detach(), alpha=1.0 - momentum)
        self.steps_done += 1
