"""Speed and peak memory of the zoo's BEATs against the official unilm code, same weights.

A BEATs of the released iter3 shape (12 layers, 768, 90.3 M parameters) gets seeded random
weights inside the official `BEATs` class, is saved as an official `{'cfg', 'model'}` file
and converted with the zoo's converter, so the three paths below run the same weights:

- zoo (SDPA): `BEATsEncoder(input_values, attention_mask)`, fused attention;
- zoo (eager): the same with explicit softmax attention;
- official: `BEATs.extract_features(source, padding_mask)` from microsoft/unilm `beats/`
  (BEATS_SRC, default /tmp/unilm_beats; run beside the project, never copied into it).

Each case (a batch of equal-length 16 kHz clips) runs in its own subprocess; the paths
alternate order across rounds. Reported: seconds of audio per second (median round),
the official/zoo time ratio, peak RSS added by the call (on CUDA: GPU memory), and the max abs difference of
the last-layer features against the official ones.

    python benchmarks/bench_beats.py --markdown --json runs/bench_beats_cpu.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from common import (add_case_arguments, check_cases, markdown_table, memory_header, mib, run_cases,
                    summary_header, timed_rounds)

RATE = 16000
CASES = {"1s": 1.0, "10s": 10.0, "60s": 60.0}
PATHS = ("zoo-sdpa", "zoo-eager", "official")
ITER3_CFG = dict(
    input_patch_size=16, embed_dim=512, conv_bias=False, encoder_layers=12, encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072, encoder_attention_heads=12, activation_fn="gelu", layer_norm_first=False,
    deep_norm=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.05,
    dropout_input=0.0, conv_pos=128, conv_pos_groups=16, relative_position_embedding=True, num_buckets=320,
    max_distance=800, gru_rel_pos=True, layer_wise_gradient_decay_ratio=0.6, finetuned_model=False,
)


def official_source() -> Path:
    return Path(os.environ.get("BEATS_SRC", "/tmp/unilm_beats"))


def build_models(device: str):
    """The official model with seeded random weights and the zoo models converted from its file."""
    import torch

    sys.path.insert(0, str(official_source()))
    from BEATs import BEATs, BEATsConfig

    from modalities.audio.beats.convert import encoder_from_official

    torch.manual_seed(0)
    official = BEATs(BEATsConfig(ITER3_CFG)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "beats_iter3_random.pt"
        torch.save({"cfg": ITER3_CFG, "model": official.state_dict()}, path)
        sdpa = encoder_from_official(path)
        eager = encoder_from_official(path)
    for layer in eager.transformer.layers:
        layer.self_attn.implementation = "eager"
    return {"zoo-sdpa": sdpa.to(device), "zoo-eager": eager.to(device), "official": official.to(device)}


def runner(path: str, model, waves, bf16: bool) -> Callable[[], Any]:
    """One forward over the batch; returns the last-layer features (B, N, D) in float32."""
    import torch

    def zoo_call():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return model(waves, torch.ones_like(waves, dtype=torch.long)).last_hidden_state.float()

    def official_call():
        return model.extract_features(waves, padding_mask=torch.zeros_like(waves, dtype=torch.bool))[0]

    return official_call if path == "official" else zoo_call


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    models = build_models(device)
    generator = torch.Generator().manual_seed(1)
    samples = int(CASES[spec["case"]] * RATE)
    waves = (0.1 * torch.randn(spec["batch_size"], samples, generator=generator)).to(device)
    calls = {path: runner(path, models[path], waves, spec["bf16"] and path != "official") for path in PATHS}
    with torch.inference_mode():
        for path in PATHS:  # warm-up: thread pools, kernels, lazy imports
            runner(path, models[path], waves[:1, :RATE], False)()
        seconds, peaks, outputs, method = timed_rounds(calls, spec["repeats"], device)
    audio = spec["batch_size"] * CASES[spec["case"]]
    reference = outputs["official"].float().cpu()
    return {
        **spec, "audio_seconds": audio, "seconds": seconds, "peak_added": peaks, "memory_method": method,
        "audio_per_second": {path: audio / statistics.median(values) for path, values in seconds.items()},
        "ratio_official_over": {path: statistics.median(
            [o / z for o, z in zip(seconds["official"], seconds[path])]) for path in PATHS if path != "official"},
        "max_abs_diff": {path: float((outputs[path].float().cpu() - reference).abs().max())
                         for path in PATHS if path != "official"},
        "tokens": int(reference.shape[1]),
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [summary_header(summary)]
    rows = []
    for result in summary["results"]:
        for path in PATHS:
            ratio = result["ratio_official_over"].get(path)
            diff = result["max_abs_diff"].get(path)
            rows.append([f"{result['batch_size']} x {result['case']}", path,
                         f"{result['audio_per_second'][path]:.1f}", f"{ratio:.2f}" if ratio else "1",
                         mib(result["peak_added"][path]), f"{diff:.1e}" if diff is not None else "reference"])
    lines.append(markdown_table(["batch", "path", "audio s / s", "official time / path time", memory_header(summary),
                                 "max abs diff vs official"], rows))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_arguments(parser, list(CASES), "zoo paths under bf16 autocast (CUDA)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per forward (default: 4)")
    args = parser.parse_args(argv)
    if args.worker is None and args.render is None:
        check_cases(parser, args, list(CASES))
        if not (official_source() / "BEATs.py").is_file():
            parser.error(f"the official BEATs code is not at {official_source()}: copy microsoft/unilm beats/*.py "
                         "there (or set BEATS_SRC)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cases(Path(__file__).resolve(), args, worker, markdown, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
