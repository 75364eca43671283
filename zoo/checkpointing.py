"""Activation checkpointing: blocks that recompute their activations in the backward pass
instead of keeping them, so that fine-tuning a large encoder on long inputs fits in memory.

The switches are transformers' (`activation_checkpointing_enable`, its older name
`gradient_checkpointing_enable`, and what the `Trainer` passes them), so a zoo model takes
`TrainingArguments(activation_checkpointing=True)` (`gradient_checkpointing=True` on
transformers 4) as a transformers model does. Encoders and head models get them from
`ActivationCheckpointing`; a module that runs a stack of blocks mixes in
`CheckpointedBlocks` and calls each block through `run_block`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from zoo.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """How blocks are checkpointed: every `every_n_layers`-th block of each stack (1: all),
    with the tensors kept for the recompute held in host memory if `offload`, and
    `torch.utils.checkpoint.checkpoint` called with `checkpoint_kwargs`."""

    every_n_layers: int = 1
    offload: bool = False
    checkpoint_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.every_n_layers, int) or self.every_n_layers < 1:
            raise ConfigError(f"every_n_layers={self.every_n_layers!r}; use a positive integer (1: every block)")
        if self.checkpoint_kwargs.get("use_reentrant", False):
            raise ConfigError("use_reentrant=True loses the gradients of blocks whose inputs need none (a frozen "
                              "front end's output); the zoo checkpoints with use_reentrant=False: drop the option")

    def run(self, index: int, block: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`block(*args, **kwargs)`, checkpointed if `index` is one of the chosen blocks."""
        if index % self.every_n_layers:
            return block(*args, **kwargs)
        settings = {**self.checkpoint_kwargs, "use_reentrant": False}
        if not self.offload:
            return checkpoint(block, *args, **settings, **kwargs)
        with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
            return checkpoint(block, *args, **settings, **kwargs)


class CheckpointedBlocks:
    """Mixed into an `nn.Module` that runs a stack of blocks; `checkpointing` is set by the
    encoder's `activation_checkpointing_enable` and is active only while training with
    gradients on, so `embed` and evaluation run as before."""

    checkpointing: Optional[Checkpointing] = None

    def run_block(self, index: int, block: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.checkpointing is None or not self.training or not torch.is_grad_enabled():
            return block(*args, **kwargs)
        return self.checkpointing.run(index, block, *args, **kwargs)


def set_checkpointing(model: nn.Module, checkpointing: Optional[Checkpointing]) -> None:
    """Give every block stack in `model` the setting (None: off). A stack holding a batch
    norm is refused: a recompute in training mode would update its running statistics twice."""
    stacks = [module for module in model.modules() if isinstance(module, CheckpointedBlocks)]
    if checkpointing is not None:
        if not stacks:
            raise ConfigError(f"{model_name(model)} runs no stack of blocks that could be checkpointed")
        normed = sorted({type(stack).__name__ for stack in stacks for module in stack.modules()
                         if isinstance(module, nn.modules.batchnorm._BatchNorm)})
        if normed:
            raise ConfigError(f"{model_name(model)} has batch norms in its blocks ({', '.join(normed)}), whose "
                              "running statistics a checkpointed recompute would update twice; train it without "
                              "activation checkpointing (smaller batches or NeighborLoader mini-batches save memory)")
    for stack in stacks:
        stack.checkpointing = checkpointing


def model_name(model: nn.Module) -> str:
    """The model a user knows: the encoder (it has a `family`) inside a training objective."""
    return type(next((module for module in model.modules() if hasattr(module, "family")), model)).__name__


class ActivationCheckpointing:
    """transformers' checkpointing switches, for an `nn.Module` holding block stacks (an
    encoder, or a head model whose encoder holds them)."""

    #: read by libraries (PEFT, accelerate) before they turn checkpointing on
    supports_gradient_checkpointing = True

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: Optional[dict[str, Any]] = None,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """Recompute the activations of the encoder's blocks in the backward pass instead of
        keeping them: training takes less memory for about one more forward pass. Inference
        and `embed` are unchanged, and so are the outputs and gradients.

        Args:
            activation_checkpointing_kwargs: passed to `torch.utils.checkpoint.checkpoint`
                (always with use_reentrant=False).
            every_n_layers: checkpoint only every n-th block of each stack (1: all).
            offload: keep the tensors saved for the recompute in host memory.
        """
        set_checkpointing(self, Checkpointing(every_n_layers, offload, dict(activation_checkpointing_kwargs or {})))

    def activation_checkpointing_disable(self) -> None:
        """Keep the blocks' activations again (the default): faster training, more memory."""
        set_checkpointing(self, None)

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(isinstance(module, CheckpointedBlocks) and module.checkpointing is not None
                   for module in self.modules())

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict[str, Any]] = None,
                                      **kwargs: Any) -> None:
        """The name transformers 4 and its `Trainer(gradient_checkpointing=True)` use."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_disable(self) -> None:
        """transformers' name of `activation_checkpointing_disable`."""
        self.activation_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.is_activation_checkpointing
