"""Speed and peak memory of the zoo's MERT against transformers' HubertModel, same weights.

A MERT of the MERT-v1-95M shape (12 layers, 768, 24 kHz; 94.4 M parameters) gets seeded
random weights; transformers' `HubertModel` (what MERT's remote code subclasses) loads the
very same state dict. Three paths per case:

- zoo forward: `MertEncoder(input_values, attention_mask)` on the whole clip;
- zoo embed: `MertEncoder.embed(clips, pool="none")`, what a user calls: recordings longer
  than the processor's 30 s window are cut into windows, so memory stays bounded;
- transformers: `HubertModel(input_values)` on the whole clip (SDPA attention, as the zoo).

Each case runs in its own subprocess; paths alternate order across rounds. Reported:
seconds of audio per second (median round), the transformers/zoo time ratio, peak RSS
added by the call (on CUDA: GPU memory), and the max abs difference of the zoo forward's last layer against
transformers' (the embed path's windows differ from the whole clip by design).

    python benchmarks/bench_mert.py --markdown --json runs/bench_mert_cpu.json
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from common import markdown_table, memory_header, mib, parse_case_args, run_cases, summary_header, timed_rounds

RATE = 24000
#: case -> (seconds per clip, clips per batch)
CASES = {"5s": (5.0, 4), "30s": (30.0, 1), "5min": (300.0, 1), "8x30s": (30.0, 8)}
PATHS = ("zoo-forward", "zoo-embed", "transformers")


def build_models(device: str):
    """A zoo MERT of the v1-95M shape with seeded weights, and HubertModel holding the same weights."""
    import torch
    from transformers import HubertModel

    from modalities.audio.mert.model import VARIANTS, MertEncoder, MertEncoderConfig

    torch.manual_seed(0)
    zoo_model = MertEncoder(MertEncoderConfig(**VARIANTS["95m"])).eval()
    reference = HubertModel(zoo_model.config.to_transformers()).eval()
    reference.load_state_dict(zoo_model.model.state_dict(), strict=True)
    return zoo_model.to(device), reference.to(device)


def runner(path: str, zoo_model, reference, waves, bf16: bool) -> Callable[[], Any]:
    """One pass over the batch; returns last-layer features in float32 (a list for embed)."""
    import torch

    device_type = waves.device.type

    def autocast():
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)

    def zoo_forward():
        with autocast():
            return zoo_model(waves, torch.ones_like(waves, dtype=torch.long)).last_hidden_state.float()

    def zoo_embed():
        with autocast():
            return zoo_model.embed(list(waves), pool="none", batch_size=len(waves), progress=False,
                                   sampling_rate=RATE)

    def transformers_forward():
        with autocast():
            return reference(waves).last_hidden_state.float()

    return {"zoo-forward": zoo_forward, "zoo-embed": zoo_embed, "transformers": transformers_forward}[path]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    zoo_model, reference = build_models(device)
    seconds_per_clip, batch = CASES[spec["case"]]
    generator = torch.Generator().manual_seed(1)
    waves = (0.1 * torch.randn(batch, int(seconds_per_clip * RATE), generator=generator)).to(device)
    calls = {path: runner(path, zoo_model, reference, waves, spec["bf16"]) for path in PATHS}
    with torch.inference_mode():
        for path in PATHS:  # warm-up: thread pools, kernels, lazy imports
            runner(path, zoo_model, reference, waves[:1, :RATE], False)()
        seconds, peaks, outputs, method = timed_rounds(calls, spec["repeats"], device)
    audio = batch * seconds_per_clip
    return {
        **spec, "audio_seconds": audio, "seconds": seconds, "peak_added": peaks, "memory_method": method,
        "audio_per_second": {path: audio / statistics.median(values) for path, values in seconds.items()},
        "ratio_transformers_over": {path: statistics.median(
            [t / z for t, z in zip(seconds["transformers"], seconds[path])]) for path in PATHS[:2]},
        "max_abs_diff": float((outputs["zoo-forward"].cpu() - outputs["transformers"].cpu()).abs().max()),
        "frames": int(outputs["transformers"].shape[1]),
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [summary_header(summary)]
    rows = []
    for result in summary["results"]:
        for path in PATHS:
            ratio = result["ratio_transformers_over"].get(path)
            diff = f"{result['max_abs_diff']:.1e}" if path == "zoo-forward" else ""
            rows.append([f"{result['case']} (batch {CASES[result['case']][1]})", path,
                         f"{result['audio_per_second'][path]:.1f}", f"{ratio:.2f}" if ratio else "1",
                         mib(result["peak_added"][path]), diff])
    lines.append(markdown_table(["clips", "path", "audio s / s", "transformers time / path time",
                                 memory_header(summary), "max abs diff vs transformers"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_case_args(__doc__, list(CASES), "every path under bf16 autocast (CUDA)", argv)
    run_cases(Path(__file__).resolve(), args, worker, markdown)


if __name__ == "__main__":
    main()
