"""Speed and peak memory of the zoo's GMML ViT against transformers' ViTModel, same weights.

A `GmmlEncoder` of a paper size (`--sizes`: tiny, small, base = ViT-B/16, 224 px) gets
seeded random weights; transformers' `ViTModel` (SDPA attention, no pooler) loads the very
same weights (modalities/vision/gmml/transformers_vit.py). Three paths per case:

- zoo forward: `GmmlEncoder(pixel_values)`, last hidden state of the whole batch;
- zoo embed: `GmmlEncoder.embed(images, pool="cls")`, what a user calls: 256 x 256 uint8
  images (the processor's resize size, so no resampling) are converted, centre-cropped to
  224 and normalised by the processor, encoded and pooled;
- transformers: `ViTModel(pixel_values)` on the processor's crops (the forward's input).

Each case runs in its own subprocess; paths alternate order across rounds, and a round
calls a path on at least 16 images (16 calls at batch 1). Reported: images per second
(median round), the transformers/zoo time ratio (median over rounds), peak RSS added by
the call (on CUDA: GPU memory), and the max abs difference against transformers of the zoo
forward's last hidden state and of the embed path's cls rows. `--device cuda --bf16` runs every path under
bf16 autocast (the issue's reference: a transformers ViT-B/16, SDPA, bf16, about 8000
images/s on an H100).

Cases are batch sizes: b1, b16, b64, b256 (default: b1,b256).

    python benchmarks/bench_gmml.py --sizes tiny,base --cases b1,b16 --markdown --json runs/bench_gmml_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Callable

from common import (add_case_arguments, check_cases, markdown_table, memory_header, mib, run_cases,
                    summary_header, timed_rounds)

IMAGE_SIZE = 224
#: case -> images per batch
CASES = {"b1": 1, "b16": 16, "b64": 64, "b256": 256}
DEFAULT_CASES = ("b1", "b256")
SIZES = {"tiny": "vit-tiny-patch16", "small": "vit-small-patch16", "base": "vit-base-patch16"}
PATHS = ("zoo-forward", "zoo-embed", "transformers")
#: a round calls a path until it has seen at least this many images, so that batch-1 rounds
#: last long enough for a shared machine's noise to average out
ROUND_IMAGES = 16


def build_models(size: str, device: str):
    """A zoo GMML ViT of `size` at 224 px with seeded weights, and ViTModel holding the same weights."""
    import torch

    from modalities.vision.gmml.model import VARIANTS, GmmlConfig, GmmlEncoder
    from modalities.vision.gmml.transformers_vit import to_transformers_vit

    torch.manual_seed(0)
    zoo_model = GmmlEncoder(GmmlConfig(image_size=IMAGE_SIZE, **VARIANTS[SIZES[size]])).eval()
    reference = to_transformers_vit(zoo_model, attn_implementation="sdpa")
    return zoo_model.to(device), reference.to(device)


def inputs(zoo_model, batch: int, device: str):
    """Seeded uint8 images at the processor's resize size, and the processor's crops of them."""
    import torch

    generator = torch.Generator().manual_seed(1)
    side = zoo_model.processor.resize_size
    images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, generator=generator)
    return images, zoo_model.preprocess(images)["pixel_values"].to(device)


def runner(path: str, zoo_model, reference, images, pixel_values, bf16: bool) -> Callable[[], Any]:
    """One pass over the batch; returns float32 features: last hidden state, or cls rows for embed."""
    import torch

    device_type = pixel_values.device.type

    def autocast():
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)

    def zoo_forward():
        with autocast():
            return zoo_model(pixel_values).last_hidden_state.float()

    def zoo_embed():
        with autocast():
            return zoo_model.embed(images, pool="cls", batch_size=len(images), progress=False)

    def transformers_forward():
        with autocast():
            return reference(pixel_values=pixel_values).last_hidden_state.float()

    return {"zoo-forward": zoo_forward, "zoo-embed": zoo_embed, "transformers": transformers_forward}[path]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    size, case = spec["case"].split(":")
    device, batch = spec["device"], CASES[case]
    zoo_model, reference = build_models(size, device)
    images, pixel_values = inputs(zoo_model, batch, device)
    with torch.inference_mode():
        for path in PATHS:  # warm-up: thread pools, kernels, lazy imports
            runner(path, zoo_model, reference, images[:1], pixel_values[:1], spec["bf16"])()
        calls = {path: runner(path, zoo_model, reference, images, pixel_values, spec["bf16"]) for path in PATHS}
        per_round = max(1, ROUND_IMAGES // batch)
        seconds, peaks, outputs, method = timed_rounds(calls, spec["repeats"], device, per_round)
    theirs = outputs["transformers"].cpu()
    return {
        **spec, "size": size, "batch": batch, "calls_per_round": per_round, "seconds": seconds,
        "peak_added": peaks, "memory_method": method,
        "parameters": sum(p.numel() for p in zoo_model.backbone.parameters()),
        "images_per_second": {path: per_round * batch / statistics.median(values) for path, values in seconds.items()},
        "ratio_transformers_over": {path: statistics.median(
            [t / z for t, z in zip(seconds["transformers"], seconds[path])]) for path in PATHS[:2]},
        "max_abs_diff": float((outputs["zoo-forward"].cpu() - theirs).abs().max()),
        "max_abs_diff_embed_cls": float((outputs["zoo-embed"].cpu() - theirs[:, 0]).abs().max()),
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [summary_header(summary)]
    rows = []
    for result in summary["results"]:
        for path in PATHS:
            ratio = result["ratio_transformers_over"].get(path)
            diff = {"zoo-forward": f"{result['max_abs_diff']:.1e}",
                    "zoo-embed": f"{result['max_abs_diff_embed_cls']:.1e} (cls)"}.get(path, "")
            rows.append([f"ViT-{result['size']}/16, batch {result['batch']}", path,
                         f"{result['images_per_second'][path]:.1f}", f"{ratio:.2f}" if ratio else "1",
                         mib(result["peak_added"][path]), diff])
    lines.append(markdown_table(["model, images", "path", "images / s", "transformers time / path time",
                                 memory_header(summary), "max abs diff vs transformers"], rows))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(parser, list(CASES), "every path under bf16 autocast (CUDA)")
    parser.set_defaults(cases=",".join(DEFAULT_CASES))
    parser.add_argument("--sizes", default="base", help=f"comma-separated, from {','.join(SIZES)} (default: base)")
    args = parser.parse_args(argv)
    if args.worker is None and args.render is None:
        check_cases(parser, args, list(CASES))
        sizes = [name.strip() for name in args.sizes.split(",") if name.strip()]
        unknown = sorted(set(sizes) - set(SIZES))
        if unknown:
            parser.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
        args.cases = [f"{size}:{case}" for size in sizes for case in args.cases]
    return args


def main(argv: list[str] | None = None) -> None:
    run_cases(Path(__file__).resolve(), parse_args(argv), worker, markdown, speed_key="images_per_second")


if __name__ == "__main__":
    main()
