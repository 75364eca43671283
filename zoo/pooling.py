"""Layer selection and pooling over valid tokens, and the checks of `embed`'s pool and batch sizes.

Shapes: B items, K selected layers, T tokens, D width.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.outputs import EncoderOutput

#: None = last layer; int (negative counts from the end); list (or 1-d integer array) of ints; "all"
LayerSpec = Union[None, int, Sequence[int], str, np.ndarray, torch.Tensor]
POOLS = ("mean", "cls", "none")


def layer_indices(layer: LayerSpec, num_layers: int) -> list[int] | None:
    """Turn a layer spec into non-negative indices into `hidden_states` (L+1 entries).

    Returns None for the last layer (no hidden states needed).
    """
    total = num_layers + 1
    if layer is None:
        return None
    if isinstance(layer, str) and layer == "all":
        return list(range(total))
    layer = integer_array_as_list(layer)
    if isinstance(layer, (str, bool)) or not isinstance(layer, (numbers.Integral, Sequence)):
        raise ConfigError(f"layer={layer!r} is not understood; use an int, a list of ints, 'all' or None")
    many = [layer] if isinstance(layer, numbers.Integral) else list(layer)
    if not many:
        raise ConfigError(f"layer={layer!r} names no layer; give at least one index, 'all' or None (the last)")
    indices = []
    for index in many:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not -total <= index < total:
            raise ConfigError(
                f"layer {index!r} is out of range: this encoder has {total} hidden states "
                f"(0 = input embeddings .. {num_layers} = last layer; negative counts from the end)"
            )
        indices.append(int(index) % total)
    return indices


def integer_array_as_list(layer: object) -> object:
    """A numpy or torch array of integers (0-d or 1-d, e.g. `np.arange(4, 8)`) as the int or
    list it holds; anything else as is, for layer_indices to accept or refuse."""
    dtype = getattr(layer, "dtype", None)
    if getattr(layer, "ndim", None) not in (0, 1) or dtype is None or not hasattr(layer, "tolist"):
        return layer
    is_integer = (not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool) \
        if isinstance(dtype, torch.dtype) else getattr(dtype, "kind", "") in "iu"
    return layer.tolist() if is_integer else layer


def check_pool(pool: str, pools: Sequence[str] = POOLS, owner: str = "this encoder") -> None:
    """Refuse a pool name the encoder does not take, before any work is done. "cls" is for
    encoders with a token of their own in front; elsewhere the first token is one frame or
    patch like the others, and taking it would be a poor embedding given without a word. Both are
    ConfigErrors, as every other refusal of a pool is (an unknown one was an InputError)."""
    if pool == "cls" and pool not in pools:
        raise ConfigError(f"pool='cls': {owner} has no cls token (its first token is one frame, patch or node "
                          "like the others); use pool='mean'")
    if pool not in pools:
        raise ConfigError(f"pool={pool!r} is not one of {tuple(pools)}")


def refuse_fixed_options(method: str, gives: str, options: dict[str, Any], fixed: Sequence[str] = ("pool",)) -> None:
    """Refuse by name an `embed` option that `method` sets itself (`gives` says to what): passed on,
    it met the method's own as "got multiple values for keyword argument", or (a tokenizer's
    layer=) silently changed what the method computes."""
    given = [name for name in fixed if name in options]
    if given:
        shown = ", ".join(f"{name}={options[name]!r}" for name in given)
        raise ConfigError(f"{method} gives {gives}, so it takes no {shown}; drop it (embed(inputs, pool=..., "
                          "layer=...) gives pooled rows of any layer)")


def check_batch_sizes(**sizes: Optional[int]) -> None:
    """Refuse a batch or shard size that is not a positive int (None: not used), before any
    work is done: `range(0, n, 0)` would otherwise fail deep inside with a bare ValueError."""
    for name, size in sizes.items():
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
            raise ConfigError(f"{name}={size!r}; use a positive number of items")


def is_single_layer(layer: LayerSpec) -> bool:
    """Whether `layer` names one layer (None or an int), so that `embed` drops the K axis;
    a list, even of one layer, keeps it."""
    layer = integer_array_as_list(layer)
    return layer is None or isinstance(layer, numbers.Integral)


def select_layers(output: EncoderOutput, indices: list[int] | None) -> torch.Tensor:
    """(B, K, T, D) features of the chosen layers (K=1 for the last layer)."""
    if indices is None:
        return output.last_hidden_state.unsqueeze(1)
    if output.hidden_states is None:
        raise ConfigError("layer selection needs output_hidden_states=True in forward")
    return torch.stack([output.hidden_states[i] for i in indices], dim=1)


def pool_tokens(tokens: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """Pool (..., T, D) tokens whose valid positions are `mask` (..., T).

    "mean" averages valid tokens only, so padding never changes the result; "cls" takes
    the first token; "sum" and "max" are the graph readouts, over valid tokens too.
    """
    if pool == "cls":
        return tokens[..., 0, :]
    if pool == "max":
        return tokens.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(-2)
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    if pool == "mean":
        return (tokens * weights).sum(-2) / weights.sum(-2).clamp(min=1.0)
    if pool == "sum":
        return (tokens * weights).sum(-2)
    raise ConfigError(f"pool={pool!r} is not one of {(*POOLS, 'sum', 'max')}")
