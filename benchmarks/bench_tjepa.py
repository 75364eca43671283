"""T-JEPA at scale: embedding a table of `--rows` rows streamed from CSV, and pretraining speed.

`embed`: a CSV of `--rows` Adult-shaped rows (the 32 561 training rows of UCI Adult
repeated, so every value is real) is written once; then, each in a fresh subprocess,
- "streamed": `encoder.iter_embed(path, chunk_rows=C)` reads, processes and embeds C rows
  at a time and writes each chunk's (C, D) rows to a .npy shard, holding one chunk at once;
- "in memory" (only with `--in-memory`): `pd.read_csv` of the whole file, then
  `encoder.embed(frame)`, which holds the table and all its embeddings.
Rows/s counts the whole pipeline (parsing, processing, encoder, writing); peak memory is
the RSS the call adds. The encoder is the recipe's architecture (`tjepa-adult`) with
random weights (speed does not depend on the weights).

`pretrain`: rows/s of `TJEPAPretraining` steps with the adult recipe (batch 512, 4 target
subsets): masks, target encoder, context encoder, predictor, backward, AdamW, EMA update,
over `--steps` timed steps after `--warmup` untimed ones.

    python benchmarks/bench_tjepa.py embed --rows 1000000 --threads 1 --markdown
    python benchmarks/bench_tjepa.py pretrain --threads 1 --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MIB, PeakMemory, machine_info, markdown_table, report, run_worker  # noqa: E402

DEFAULT_ADULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "adult"


def adult_encoder(adult: Path):
    from modalities.tabular.datasets import load_adult
    from modalities.tabular.processing import TableProcessor
    from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
    from modalities.tabular.tjepa.pretrain import resolve_recipe

    splits = load_adult(adult)
    processor = TableProcessor.fit(splits.train, target=splits.target)
    architecture, recipe = resolve_recipe("adult", {})
    return TJEPAEncoder(TJEPAConfig.for_table(processor, **architecture), processor), splits, recipe


def write_big_csv(adult: Path, rows: int, path: Path) -> None:
    from modalities.tabular.datasets import load_adult

    train = load_adult(adult).train
    repeats = -(-rows // len(train))
    with path.open("w") as handle:
        for repeat in range(repeats):
            part = train.iloc[: min(len(train), rows - repeat * len(train))]
            part.to_csv(handle, index=False, header=repeat == 0)


def embed_worker(payload: dict) -> dict:
    import pandas as pd
    import torch

    torch.set_num_threads(payload["threads"])
    encoder, _, _ = adult_encoder(Path(payload["adult"]))
    out = Path(payload["shards"])
    with PeakMemory() as memory:
        start = time.perf_counter()
        if payload["mode"] == "streamed":
            rows = 0
            for index, chunk in enumerate(encoder.iter_embed(payload["csv"], chunk_rows=payload["chunk_rows"],
                                                             batch_size=payload["batch_size"], progress=False)):
                np.save(out / f"shard-{index:05d}.npy", chunk.numpy())
                rows += len(chunk)
        else:
            rows = len(encoder.embed(pd.read_csv(payload["csv"], skipinitialspace=True, na_values=["?"]),
                                     batch_size=payload["batch_size"], progress=False))
        seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_mib": memory.added / MIB,
            "memory_method": memory.method}


def pretrain_worker(payload: dict) -> dict:
    import torch

    from modalities.tabular.tjepa.masking import MaskSampler
    from modalities.tabular.tjepa.objective import TJEPAPretraining
    from modalities.tabular.tjepa.pretrain import MASK_KEYS

    torch.set_num_threads(payload["threads"])
    torch.manual_seed(0)
    encoder, splits, recipe = adult_encoder(Path(payload["adult"]))
    masks = MaskSampler(encoder.config.num_features, **{key: recipe[key] for key in MASK_KEYS})
    objective = TJEPAPretraining(encoder, masks, recipe["predictor"], total_steps=1000)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=recipe["lr"])
    batch = encoder.processor.transform(splits.train.iloc[: recipe["batch_size"]])

    def step() -> None:
        loss = objective(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step()

    for _ in range(payload["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(payload["steps"]):
        step()
    seconds = time.perf_counter() - start
    return {"steps": payload["steps"], "seconds": seconds,
            "rows_per_s": payload["steps"] * recipe["batch_size"] / seconds}


def run_embed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "rows.csv"
        write_big_csv(args.adult, args.rows, csv)
        print(f"wrote {args.rows} rows ({csv.stat().st_size / MIB:.0f} MiB)", file=sys.stderr)
        modes = ["streamed", "in memory"] if args.in_memory else ["streamed"]
        rows = []
        for mode in modes:
            shards = Path(tmp) / f"shards-{mode.replace(' ', '-')}"
            shards.mkdir()
            result = run_worker(__file__, {"mode": mode, "csv": str(csv), "shards": str(shards),
                                           "adult": str(args.adult), "threads": args.threads,
                                           "chunk_rows": args.chunk_rows, "batch_size": args.batch_size})
            rows.append([mode, result["rows"], f"{result['rows_per_s']:,.0f}", f"{result['peak_mib']:.0f}"])
    print_result(args, ["mode", "rows", "rows/s", "peak MiB added"], rows)


def run_pretrain(args: argparse.Namespace) -> None:
    result = run_worker(__file__, {"adult": str(args.adult), "threads": args.threads, "steps": args.steps,
                                   "warmup": args.warmup, "mode": "pretrain"})
    print_result(args, ["steps", "seconds", "rows/s"],
                 [[result["steps"], f"{result['seconds']:.1f}", f"{result['rows_per_s']:,.0f}"]])


def print_result(args: argparse.Namespace, headers: list[str], rows: list[list]) -> None:
    if args.markdown:
        print(markdown_table(headers, rows))
        print(f"\nmachine: {json.dumps(machine_info(args.threads))}")
    else:
        print(json.dumps({"headers": headers, "rows": rows, "machine": machine_info(args.threads)}, indent=2))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        payload = json.loads(sys.argv[2])
        report(pretrain_worker(payload) if payload.get("mode") == "pretrain" else embed_worker(payload))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["embed", "pretrain"])
    parser.add_argument("--adult", type=Path, default=DEFAULT_ADULT, help="folder with adult.data")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--in-memory", action="store_true", help="also embed the whole table at once")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    run_embed(args) if args.what == "embed" else run_pretrain(args)


if __name__ == "__main__":
    main()
