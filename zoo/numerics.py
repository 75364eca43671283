"""Numbers that go wrong: workarounds for CPU kernels that compute wrong ones, shared by the
families they hit, and the checks that keep NaN and infinities from passing unseen (float16's
narrow range, weights of a diverged training)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from zoo.errors import CheckpointError, ConfigError, InputError, ZooError
from zoo.processing import first_non_finite

#: the largest float16 number: a float16 model sees a larger input or activation as infinite
FLOAT16_MAX = torch.finfo(torch.float16).max
#: a weight this large is no trained model's (a tiny model's reach 30): its training diverged
DIVERGED_WEIGHT = 1e6
FLOAT16_ADVICE = "load the model in float32 or bfloat16 (dtype=torch.bfloat16 has float32's range)"


def runs_bfloat16_on_cpu(x: torch.Tensor) -> bool:
    """True where `x` is bfloat16 on the CPU, or is about to be cast to it by CPU autocast."""
    if x.device.type != "cpu":
        return False
    return x.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def grouped_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)`, computed in float32 (and cast back to bfloat16) for bfloat16 on the CPU.

    oneDNN's bfloat16 grouped Conv1d on AVX-512-BF16 / AMX CPUs (e.g. Sapphire Rapids)
    returns wrong numbers when a group has few channels (2-12) and a long kernel: the conv
    positional embeddings of the tiny HuBERT, MERT and BEATs models (12 channels per group,
    kernel 64) are off by up to 100 % of their output scale, while the float32 conv of the
    same bfloat16-rounded numbers differs from a correct bfloat16 conv by rounding only.
    AVX2 CPUs take torch's native conv, which is right; elsewhere the conv runs as it is.
    """
    if not runs_bfloat16_on_cpu(x):
        return conv(x)
    bias = None if conv.bias is None else conv.bias.float()
    with torch.autocast("cpu", enabled=False):
        out = F.conv1d(x.float(), conv.weight.float(), bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out.to(torch.bfloat16)


def cast_input(value: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """`value` in the model's `dtype`. A finite input beyond float16's range (a waveform of int16
    counts, unscaled node features) became infinite in the cast, and the encoder's own input check
    then blamed the data ("holds NaN or infinite samples; clean the waveforms"): it is refused here
    by its scale, with the fix, which is the dtype."""
    cast = value.to(dtype)
    if dtype == torch.float16 and first_non_finite(cast) is not None and first_non_finite(value) is None:
        raise ConfigError(f"{name} holds values up to {value.abs().max().item():.4g}, beyond float16's range "
                          f"(±{FLOAT16_MAX:.0f}), so the float16 model would see infinities; {FLOAT16_ADVICE}, "
                          "or scale the inputs")
    return cast


def non_finite_weight(state: dict[str, Any]) -> Optional[str]:
    """The name of the first floating tensor of `state` holding NaN or an infinity, or None; other
    entries (a module's extra state, such as a fine-tuning run's best-epoch record) are passed over."""
    return next((key for key, value in state.items() if torch.is_tensor(value) and value.is_floating_point()
                 and not (value.float() if value.element_size() == 1 else value).isfinite().all()), None)  # fp8


def largest_weight(model: nn.Module) -> float:
    """The largest magnitude among `model`'s parameters."""
    return max((parameter.detach().abs().max().item() for parameter in model.parameters() if parameter.numel()),
               default=0.0)


def non_finite_features(model: Any) -> ZooError:
    """The error for NaN or infinite features from finite inputs (every `forward` checks its inputs),
    which `embed`, `predict` and `zoo embed` returned and wrote without a word: float16 overflowed
    inside the model, its weights are a diverged training's, or the inputs' scale overflowed float32."""
    broken = non_finite_weight(model.state_dict())
    if broken is not None:  # a float16 AdamW step in a loop of one's own writes NaN into the weights
        return CheckpointError(f"the model's weights hold NaN or infinite values ({broken}), so its features are "
                               "NaN; the training that changed them diverged (in float16, train in float32 or "
                               "bfloat16), or load the checkpoint again")
    if model.dtype == torch.float16:
        return ConfigError(f"the float16 model overflowed inside (float16 holds at most {FLOAT16_MAX:.0f}) and gave "
                           f"NaN or infinite features; {FLOAT16_ADVICE}")
    largest = largest_weight(model)
    if largest >= DIVERGED_WEIGHT:
        return CheckpointError(f"the model gave NaN or infinite features: its weights reach {largest:.3g}, those "
                               "of a training that diverged; retrain with a lower learning rate, or load another "
                               "checkpoint")
    return InputError("the model gave NaN or infinite features from finite inputs, whose scale overflows inside it; "
                      "scale the inputs down (normalise them as the model's own preprocessing does)")
