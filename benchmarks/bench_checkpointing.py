"""Peak memory and time of one fine-tuning step with and without activation checkpointing,
the zoo against transformers' own checkpointing on the same weights.

A step is what fine-tuning the whole encoder costs: a forward pass in training mode
(dropout on), the mean square of the last hidden state as the loss, and the backward
pass, gradients freed between steps. Paths per case:

- zoo / zoo checkpointed: the encoder, then after `activation_checkpointing_enable()`;
- transformers / transformers checkpointed (where transformers has the architecture): the
  same weights in transformers' model (`HubertModel`; `ViTModel` through
  modalities/vision/gmml/transformers_vit.py), then after its `gradient_checkpointing_enable()`.

Cases (seeded random weights of the released shapes, built with `zoo.load(NAME,
pretrained=False)` or the named architecture, so nothing is downloaded):

- hubert-base: HuBERT-base (94.4 M), 4 clips of 10 s at 16 kHz;
- vit-small: GMML ViT-S/16 (21.7 M, no drop path: ViTModel has none), 32 images of 224 px;
- beats-iter3: BEATs (90.3 M), 2 clips of 10 s (no transformers model to compare).

Each case runs in its own subprocess; paths alternate order across rounds. Reported: the
median step time, the time ratio against the plain path of the same implementation, the
peak memory the step adds (RSS, whose peaks vary by a few hundred MiB between runs with the
allocator; on CUDA, GPU memory), the activations autograd keeps for the backward pass
(distinct tensors saved in the forward, weights left out: exact), and the max abs difference
of the checkpointed step's gradients from the plain step's (same seed: the same dropout masks).

    python benchmarks/bench_checkpointing.py --threads 2 --repeats 3 --markdown --json runs/bench_checkpointing.json
"""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path
from typing import Any, Callable

from common import markdown_table, memory_header, mib, parse_case_args, run_cases, summary_header, timed_rounds

CASES = {"hubert-base": "4 × 10 s", "vit-small": "32 × 224 px", "beats-iter3": "2 × 10 s"}


def hubert_case(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The zoo's HuBERT-base and transformers' HubertModel with its weights; a batch without
    padding. transformers' SpecAugment masking is off (the zoo encoder has none outside
    pretraining) and so is LayerDrop in both, which would otherwise skip different layers in
    each, as they draw their random numbers in another order."""
    import torch
    from transformers import HubertModel

    import zoo

    torch.manual_seed(0)
    encoder = zoo.load("hubert-base-ls960", pretrained=False)
    encoder.config.layerdrop = 0.0
    reference = HubertModel(encoder.config.to_transformers())
    reference.config.mask_time_prob = 0.0
    reference.load_state_dict(encoder.model.state_dict(), strict=True)
    waves = 0.1 * torch.randn(4, 160_000, generator=torch.Generator().manual_seed(1))
    return ({"zoo": encoder.to(device), "transformers": reference.to(device)},
            {"zoo": {"input_values": waves.to(device)}, "transformers": {"input_values": waves.to(device)}})


def vit_case(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The zoo's GMML ViT-S/16 at 224 px and transformers' ViTModel with its weights."""
    import torch

    from modalities.vision.gmml.model import GmmlEncoder
    from modalities.vision.gmml.transformers_vit import to_transformers_vit
    from zoo.registry import architecture_config

    torch.manual_seed(0)
    encoder = GmmlEncoder(architecture_config("gmml-vit-small-patch16"))
    reference = to_transformers_vit(encoder)
    images = torch.randn(32, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return ({"zoo": encoder.to(device), "transformers": reference.to(device)},
            {"zoo": {"pixel_values": images.to(device)}, "transformers": {"pixel_values": images.to(device)}})


def beats_case(device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    import zoo

    torch.manual_seed(0)
    encoder = zoo.load("beats-iter3", pretrained=False).to(device)
    waves = 0.1 * torch.randn(2, 160_000, generator=torch.Generator().manual_seed(1))
    return {"zoo": encoder}, {"zoo": encoder.to_device(encoder.preprocess(list(waves.numpy()), sampling_rate=16000))}


BUILDERS = {"hubert-base": hubert_case, "vit-small": vit_case, "beats-iter3": beats_case}


def step(model, batch: dict[str, Any], bf16: bool, checkpointed: bool) -> Callable[..., dict[str, Any]]:
    """One seeded training step, checkpointed or not (under bf16 autocast if asked); returns
    the gradients. `forward_context` wraps the forward pass (and only it)."""
    import torch

    device_type = next(model.parameters()).device.type

    def run(forward_context: Any = contextlib.nullcontext()) -> dict[str, Any]:
        switch(model, checkpointed).train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(2)
        with forward_context, torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).last_hidden_state.float().square().mean()
        loss.backward()
        return {key: parameter.grad for key, parameter in model.named_parameters() if parameter.grad is not None}

    return run


def kept_for_backward(model, run: Callable[..., Any]) -> int:
    """Bytes of the distinct tensors autograd keeps from the forward pass for the backward,
    weights left out: the activations checkpointing is for, exactly and without the
    allocator's noise in the peak memory."""
    import torch

    weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    run(torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor))
    return sum(storages.values())


def switch(model, on: bool) -> Any:
    """Checkpointing on or off, through the switch each implementation answers to."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    enable() if on else disable()
    return model


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    models, batches = BUILDERS[spec["case"]](spec["device"])
    calls = {}
    for implementation, model in models.items():
        for checkpointed in (False, True):
            path = f"{implementation} checkpointed" if checkpointed else implementation
            calls[path] = step(model, batches[implementation], spec["bf16"], checkpointed)
    seconds, peaks, outputs, method = timed_rounds(calls, spec["repeats"], spec["device"])
    kept = {path: kept_for_backward(models[path.removesuffix(" checkpointed")], call) for path, call in calls.items()}
    diffs = {path: max(float((grads - outputs[path.removesuffix(" checkpointed")][key]).abs().max())
                       for key, grads in outputs[path].items())
             for path in calls if path.endswith("checkpointed")}
    return {**spec, "seconds": seconds, "peak_added": peaks, "memory_method": method, "max_abs_grad_diff": diffs,
            "kept_for_backward": kept,
            "steps_per_minute": {path: 60 / statistics.median(values) for path, values in seconds.items()}}


def markdown(summary: dict[str, Any]) -> str:
    lines = [summary_header(summary)]
    rows = []
    for result in summary["results"]:
        for path, values in result["seconds"].items():
            plain = path.removesuffix(" checkpointed")
            ratio = statistics.median(values) / statistics.median(result["seconds"][plain])
            memory = result["peak_added"][path] / max(result["peak_added"][plain], 1)
            diff = result["max_abs_grad_diff"].get(path)
            kept = result["kept_for_backward"]
            rows.append([f"{result['case']} ({CASES[result['case']]})", path, f"{statistics.median(values):.2f}",
                         f"{ratio:.2f}", mib(result["peak_added"][path]), f"{memory:.2f}", mib(kept[path]),
                         f"{kept[path] / kept[plain]:.3f}", f"{diff:.1e}" if diff is not None else "reference"])
    lines.append(markdown_table(["case", "path", "s / step (median)", "time / plain", memory_header(summary),
                                 "memory / plain", "activations kept (MiB)", "kept / plain",
                                 "max abs grad diff vs plain"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_case_args(__doc__, list(CASES), "forward passes under bf16 autocast (CUDA)", argv)
    run_cases(Path(__file__).resolve(), args, worker, markdown, speed_key="steps_per_minute")


if __name__ == "__main__":
    main()
