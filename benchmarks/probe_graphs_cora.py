"""GraphMAE's Cora protocol on zoo-pretrained runs, against random-init and raw-feature baselines.

Protocol (GraphMAE `main_transductive.py` / `evaluation.py`): node embeddings of the whole
graph from the frozen encoder, a linear layer trained on the 140 public training nodes
with Adam (lr 0.01, L2 1e-4) for 300 epochs; test accuracy on the 1000 test nodes at the
last epoch ("final") and at the best validation epoch ("early-stopped"). The paper reports
84.2±0.4 for GraphMAE (mean±std over 20 pretraining seeds).

Each `--run` is a folder written by `zoo pretrain` (its `encoder/` and `log.jsonl`), or a
checkpoint: a zoo name or folder (the shipped graphmae-cora, paretognn-cora); each is probed
with each `--probe-seeds` seed. Baselines: the raw (row-normalised) features, also without
any `--run`, and a randomly initialised encoder of each family's config.

    python benchmarks/probe_graphs_cora.py --data ../shared/data/planetoid \\
        --run runs/graphmae-cora-s0 --run runs/paretognn-cora-s0
    python benchmarks/probe_graphs_cora.py --data ../shared/data/planetoid --run graphmae-cora
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import run_facts

from modalities.graphs.datasets import load_dataset
from modalities.graphs.processing import GraphProcessor
from modalities.graphs.evaluation import PROBE_DEFAULTS, node_probe
from zoo.hub import load


def probe_rows(embeddings: torch.Tensor, data, seeds: list[int]) -> dict[str, float]:
    """Mean and std (%) of final and early-stopped accuracy over probe seeds."""
    runs = [node_probe(embeddings, data.y, data.train_mask, data.val_mask, data.test_mask, seed=s, **PROBE_DEFAULTS)
            for s in seeds]
    result = {}
    for key in ("final_acc", "early_stopped_acc"):
        values = [100 * run[key] for run in runs]
        result[key] = (statistics.mean(values), statistics.pstdev(values))
    return result


def encoder_and_facts(run: str) -> tuple[str, object, str]:
    """A `--run`'s name, encoder and what its pretraining took: a `zoo pretrain` run folder's
    `encoder/` with its log's steps and time, or a checkpoint (name or folder) as it is."""
    folder = Path(run) / "encoder"
    if folder.is_dir():
        return Path(run).name, load(folder), run_facts(Path(run))
    return Path(run).name, load(run), "see its card"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="root holding Cora/raw")
    parser.add_argument("--run", action="append", default=[],
                        help="a zoo pretrain output folder, or a checkpoint name or folder (repeatable)")
    parser.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    data = load_dataset("cora", args.data)
    rows = []
    encoders = [encoder_and_facts(run) for run in args.run]
    raw = GraphProcessor(feature_norm="row").prepare(data).x
    rows.append(("raw features (row-normalised)", "-", probe_rows(raw, data, args.probe_seeds)))
    families: dict[str, list[dict]] = {}
    for name, encoder, facts in encoders:
        if encoder.family not in families:
            torch.manual_seed(0)
            random_init = type(encoder)(encoder.config, encoder.processor)
            rows.append((f"{encoder.family} random init", "-",
                         probe_rows(random_init.embed(data, progress=False), data, args.probe_seeds)))
            families[encoder.family] = []
        result = probe_rows(encoder.embed(data, progress=False), data, args.probe_seeds)
        families[encoder.family].append(result)
        rows.append((name, facts, result))
    for family, results in families.items():
        if len(results) > 1:
            across = {key: (statistics.mean(r[key][0] for r in results), statistics.pstdev(r[key][0] for r in results))
                      for key in ("final_acc", "early_stopped_acc")}
            rows.append((f"{family}, across {len(results)} pretraining seeds", "-", across))
    print(f"probe seeds {args.probe_seeds}; accuracy % (mean ± std over probe seeds; the 'across' rows: mean ± std "
          "over pretraining seeds of the per-run means)\n")
    print("| features | pretraining | final | early-stopped |\n|---|---|---|---|")
    for name, facts, result in rows:
        final, stopped = result["final_acc"], result["early_stopped_acc"]
        print(f"| {name} | {facts} | {final[0]:.1f} ± {final[1]:.1f} | {stopped[0]:.1f} ± {stopped[1]:.1f} |")


if __name__ == "__main__":
    main()
