"""Output containers shared by every family.

Shapes: B items, T tokens (frames, patches, nodes, features), D embedding width.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator, Optional

import torch


@dataclass
class EncoderOutput:
    """What every `Encoder.forward` returns.

    Attributes:
        last_hidden_state: (B, T, D) token features of the last layer.
        mask: (B, T) bool, True where a token is real (not padding).
        pooled: (B, D) the family's canonical per-item embedding.
        hidden_states: tuple of L+1 tensors (B, T, D), layer 0 = input embeddings (for
            graphs, the input node features: their width, not D); filled only when
            `output_hidden_states=True`. The last entry equals `last_hidden_state`.
    """

    last_hidden_state: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    hidden_states: Optional[tuple[torch.Tensor, ...]] = None

    def __getitem__(self, key: str | int | slice) -> Any:
        """`out["pooled"]`, or `out[0]` over the fields that are set, as transformers' ModelOutput
        reads: code written for transformers' outputs runs on the zoo's."""
        if isinstance(key, str):
            if key not in self.field_names():
                raise KeyError(f"EncoderOutput has no {key!r}; its fields are {', '.join(self.field_names())}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def items(self) -> list[tuple[str, Any]]:
        """The fields that are set (hidden_states only when asked for), in order, as a ModelOutput
        (a dict) holds them; `keys`, `values` and `to_tuple` read them."""
        return [(name, getattr(self, name)) for name in self.field_names() if getattr(self, name) is not None]

    def keys(self) -> list[str]:
        return [name for name, _ in self.items()]

    def values(self) -> list[Any]:
        return [value for _, value in self.items()]

    def __iter__(self) -> Iterator[str]:
        """Over the names of the fields that are set, as over a dict's keys (`dict(out)` works)."""
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __len__(self) -> int:
        return len(self.keys())

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    @classmethod
    def field_names(cls) -> list[str]:
        return [field.name for field in fields(cls)]


# torch.export (and the tracers on it) take a dataclass output only when it is registered
torch.export.register_dataclass(EncoderOutput, serialized_type_name="zoo.outputs.EncoderOutput")


@dataclass
class PretrainOutput:
    """What a pretraining objective returns for one batch: the loss and scalars to log."""

    loss: torch.Tensor
    logs: dict[str, float]
