"""GraphMAE's graph-classification protocol on zoo-pretrained runs of one TU set, with baselines.

Protocol (GraphMAE `main_graph.py`): every graph is embedded by the frozen encoder and read
out with the recipe's pooling (sum, mean or max of the last layer's node features); an SVM
(C in {1e-3 ... 10} by inner 5-fold grid search) is scored by 10-fold stratified
cross-validation (seed 0). A run's score is the mean accuracy over the folds; the paper
reports the mean ± std of that score over 5 pretraining seeds (MUTAG 88.19±1.26, NCI1
80.40±0.30, IMDB-B 75.52±0.66, IMDB-M 51.63±0.52).

Each `--run` is a folder written by `zoo pretrain graphmae --dataset D --seed N`. Baselines,
under the same protocol: the input features read out the same way, and a randomly
initialised encoder of the same config.

    for N in 0 1 2 3 4; do zoo pretrain graphmae --dataset mutag --data ../shared/data/tu \\
        -o runs/graphmae-mutag-s$N --seed $N --no-progress; done
    python benchmarks/probe_graphs_tu.py --dataset mutag --data ../shared/data/tu runs/graphmae-mutag-s*
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import run_facts

from modalities.graphs.datasets import load_dataset
from modalities.graphs.evaluation import probe_graphs, svm_10fold
from modalities.graphs.encoder import readout
from zoo.hub import load


def raw_features(encoder, graphs: list, jobs: int) -> dict:
    """The svm-10fold score of the processed input features, read out with the encoder's pooling."""
    prepared = [encoder.processor.prepare(graph) for graph in graphs]
    rows = torch.stack([readout(graph.x, encoder.config.pooling) for graph in prepared])
    return svm_10fold(rows.numpy(), torch.cat([graph.y.view(-1) for graph in graphs]).numpy(), jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="mutag, nci1, imdb-binary, imdb-multi, ...")
    parser.add_argument("--data", required=True, help="root holding <NAME>/raw")
    parser.add_argument("--jobs", type=int, default=1, help="processes per grid search (scores do not change)")
    parser.add_argument("runs", nargs="+", help="zoo pretrain output folders")
    args = parser.parse_args()
    graphs = load_dataset(args.dataset, args.data)
    encoders = {Path(run): load(Path(run) / "encoder") for run in args.runs}
    first = next(iter(encoders.values()))
    torch.manual_seed(0)
    random_init = load(Path(args.runs[0]) / "encoder", pretrained=False)
    rows = [("input features, same readout", "-", raw_features(first, graphs, args.jobs)),
            ("random init", "-", probe_graphs(random_init, graphs, args.dataset, None, args.jobs))]
    scores = []
    for folder, encoder in encoders.items():
        result = probe_graphs(encoder, graphs, args.dataset, None, args.jobs)
        scores.append(result["accuracy"])
        rows.append((folder.name, run_facts(folder), result))
    print(f"{args.dataset}: {len(graphs)} graphs, pooling {first.config.pooling}; accuracy % (mean ± std over "
          "the 10 folds)\n")
    print("| features | pretraining | accuracy |\n|---|---|---|")
    for name, facts, result in rows:
        print(f"| {name} | {facts} | {result['accuracy']:.2f} ± {result['accuracy_std']:.2f} |")
    if len(scores) > 1:
        print(f"| across {len(scores)} pretraining seeds (mean ± std of the run means) | - | "
              f"{statistics.mean(scores):.2f} ± {statistics.pstdev(scores):.2f} |")


if __name__ == "__main__":
    main()
