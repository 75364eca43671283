"""T-JEPA's downstream protocol on UCI Adult: zoo-pretrained runs against raw-feature baselines.

Each `--run` is a folder written by `zoo pretrain tjepa --dataset adult --seed N`. Its
encoder embeds every row into all of its tokens (T, D), standardised per channel on the
training rows; the official MLP (tuned by the authors for Adult) is trained on them with
early stopping on 10 % of the training split (downstream seed N, the run's own seed) and
scored on the official test split. Baselines, with downstream seeds `--seeds`: the same
MLP on raw features (min-max numerics, one-hot categories), XGBoost with the official
settings on the same features, and the MLP on the tokens of a random-init encoder of the
architecture of `--architecture` (default: the embedded tjepa-adult). `--network resnet`
trains the paper's ResNet instead of the MLP on the tokens (of the runs and of the
random-init encoder); the ResNet on raw features runs through `zoo probe tjepa-adult
--dataset adult --protocol resnet-raw`. Paper (README of jose-melo/t-jepa, 20 seeds, its
own split): MLP .825 -> .866 and ResNet .813 -> .865 with T-JEPA, XGBoost .874.

Every score is cached in `--cache` as soon as it is known, so an interrupted run picks up
where it stopped.

    for N in 0 1 2 3 4; do zoo pretrain tjepa --dataset adult --data ../shared/data/adult \\
        -o runs/tjepa-adult-s$N --seed $N --no-progress; done
    python benchmarks/probe_tabular_adult.py --data ../shared/data/adult runs/tjepa-adult-s*
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, run_facts  # noqa: E402

from modalities.tabular.datasets import load_adult  # noqa: E402
from modalities.tabular.evaluation import protocol_inputs, run_protocol  # noqa: E402
from zoo.hub import load  # noqa: E402
from zoo.io import atomic_write_text  # noqa: E402

#: downstream networks trained on tokens, by their names in tables
NETWORK_NAMES = {"mlp": "MLP", "resnet": "ResNet"}
PAPER = {"mlp": 0.825, "mlp+tjepa": 0.866, "resnet+tjepa": 0.865, "xgboost": 0.874}


class Cache:
    """Scores by key, written to a JSON file after each new one (several processes may share it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, float]:
        """The file's scores now: another process may have added some since the last read."""
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str, compute) -> float:
        scores = self.read()
        if key not in scores:
            score = compute()
            atomic_write_text(self.path, json.dumps({**self.read(), key: score}, indent=2) + "\n")
            print(f"{key}: {score:.4f}", file=sys.stderr, flush=True)
            return score
        return scores[key]


def summary(scores: list[float]) -> str:
    std = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    return f"{statistics.mean(scores):.4f} ± {std:.4f} ({len(scores)} seeds)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder with adult.data and adult.test")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="raw-feature baseline seeds (none: skip the baselines)")
    parser.add_argument("--random-seeds", type=int, nargs="*", default=[0],
                        help="random-init encoder seeds (none: skip that baseline)")
    parser.add_argument("--architecture", default="tjepa-adult",
                        help="the encoder whose architecture the random-init baseline copies (its weights unused)")
    parser.add_argument("--network", choices=NETWORK_NAMES, default="mlp",
                        help="the downstream model trained on tokens (default: mlp)")
    parser.add_argument("--cache", type=Path, default=Path("runs/probe_tabular_adult.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("runs", nargs="*", help="zoo pretrain output folders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_adult(args.data)
    cache = Cache(args.cache)
    raw = protocol_inputs("mlp-raw", splits)

    network, name = args.network, NETWORK_NAMES[args.network]

    def on_tokens(encoder, seed: int) -> float:
        return run_protocol(network, splits, seed, *protocol_inputs(network, splits, encoder))

    random_row = None
    if args.random_seeds:
        def random_init(seed: int) -> float:
            torch.manual_seed(seed)
            return on_tokens(load(args.architecture, pretrained=False), seed)

        scores = [cache.get(f"{network}:random:{seed}", lambda seed=seed: random_init(seed))
                  for seed in args.random_seeds]
        random_row = [f"{name} on random-init encoder tokens", summary(scores), "", ""]
    rows = []
    tjepa = []
    for run in args.runs:
        seed = json.loads((Path(run) / "args.json").read_text())["args"]["seed"]
        score = cache.get(f"{network}:tjepa:{Path(run).name}:{seed}",
                          lambda: on_tokens(load(Path(run) / "encoder"), seed))
        tjepa.append(score)
        rows.append([f"{name} on T-JEPA tokens, {Path(run).name}", f"{score:.4f}", run_facts(Path(run)), ""])
    if tjepa:
        rows.append([f"**{name} on T-JEPA tokens**", f"**{summary(tjepa)}**", "", PAPER[f"{network}+tjepa"]])
    baselines = {
        "MLP on raw features": lambda seed: run_protocol("mlp-raw", splits, seed, *raw),
        "XGBoost on raw features": lambda seed: run_protocol("xgboost", splits, seed, *raw),
    }
    for name, compute in baselines.items() if args.seeds else ():
        key = name.split()[0].lower()
        scores = [cache.get(f"{key}:{seed}", lambda seed=seed: compute(seed)) for seed in args.seeds]
        rows.append([name, summary(scores), "", PAPER["mlp" if key == "mlp" else "xgboost"]])
    if random_row:
        rows.append(random_row)
    print(markdown_table(["downstream model (test accuracy)", "zoo", "pretraining", "paper"], rows))


if __name__ == "__main__":
    main()
