"""Node classification on Cora with `zoo.for_token_classification`: the pretrained graph
encoder fine-tuned whole, the same architecture fine-tuned from random init, and a head on
the frozen encoder, under GraphMAE's protocol.

Protocol (as `probe_graphs_cora.py`, GraphMAE's `main_transductive.py`): the public split
(140 training nodes, 500 validation, 1000 test), full-graph batches, Adam with L2 weight decay
1e-4, the head at lr 0.01, 300 epochs; test accuracy at the last epoch ("final") and at the
best validation epoch ("early-stopped", later epochs winning ties). Fine-tuned runs also
train the encoder (its own dropout on) at each `--encoder-lrs` value; the table keeps, per
mode, the encoder lr with the best mean validation accuracy, so no test number picks it.

Every run goes through the head's public path: `collate` of the graph with its training
labels (-100 elsewhere), `forward` for the loss, the saved and reloaded classifier's
`predict` for the first seed of each mode (its accuracy must equal the early-stopped one).
Finished runs are kept in `--json`, so an interrupted command goes on from the next run (more
seeds, modes or encoder lrs may be added; a rerun with another checkpoint, epoch count, head
lr or weight decay is refused, since its runs would not be comparable).

    python benchmarks/finetune_cora.py --data ../shared/data/planetoid --checkpoint graphmae-cora \\
        --output runs/finetune-cora --json runs/finetune-cora.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from tqdm import tqdm

import zoo
from modalities.graphs.datasets import load_dataset
from modalities.graphs.evaluation import accuracy
from zoo.heads import IGNORE_INDEX
from zoo.io import atomic_write_text
from zoo.run_folders import check_same_run

#: mode -> (start from the pretrained weights, train the encoder too)
MODES = {"fine-tuned": (True, True), "random init, fine-tuned": (False, True), "frozen encoder": (True, False)}
#: what every run kept in one --json file must share
RUN_SETTINGS = ("checkpoint", "epochs", "head_lr", "weight_decay")


def build_classifier(checkpoint: str, pretrained: bool, train_encoder: bool, num_labels: int,
                     seed: int) -> zoo.EncoderForTokenClassification:
    """The head on the checkpoint's encoder, or on a seeded fresh one of its architecture."""
    torch.manual_seed(seed)
    encoder = zoo.load(checkpoint, pretrained=pretrained)
    torch.manual_seed(seed)
    return zoo.for_token_classification(encoder, num_labels=num_labels, freeze=not train_encoder)


def train_run(classifier: zoo.EncoderForTokenClassification, data, encoder_lr: float,
              args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train on the training nodes; the scores and the state at the best validation epoch."""
    batch = classifier.collate([{"input": data, "label": torch.where(data.train_mask, data.y, IGNORE_INDEX)}])
    groups = [{"params": classifier.head.parameters(), "lr": args.head_lr}]
    if not classifier.freeze:
        groups.append({"params": classifier.encoder.parameters(), "lr": encoder_lr})
    optimizer = torch.optim.Adam(groups, weight_decay=args.weight_decay)
    best, started = {"val": -1.0}, time.perf_counter()
    for epoch in range(args.epochs):
        classifier.train()
        loss = classifier(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        classifier.eval()
        with torch.no_grad():
            logits = classifier(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        val, test = (100 * accuracy(logits[mask], data.y[mask]) for mask in (data.val_mask, data.test_mask))
        if val >= best["val"]:
            best = {"val": val, "epoch": epoch, "test": test}
            state = copy.deepcopy(classifier.state_dict())
    scores = {"best_val": best["val"], "best_epoch": best["epoch"], "early_stopped": best["test"], "final": test,
              "last_loss": loss.item(), "seconds": round(time.perf_counter() - started, 1)}
    return scores, state


def reloaded_accuracy(classifier: zoo.EncoderForTokenClassification, state: dict[str, torch.Tensor], data,
                      folder: Path) -> float:
    """Test accuracy of the best-validation classifier saved to `folder` and loaded back."""
    classifier.load_state_dict(state)
    classifier.save_pretrained(folder)
    predicted = zoo.load(folder).predict(data)
    names = torch.tensor([int(node[0][0]) for node in predicted])
    return 100 * (names[data.test_mask] == data.y[data.test_mask]).float().mean().item()


def summary(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode, the encoder lr with the best mean validation accuracy, and its mean ± std scores."""
    rows = []
    for mode in MODES:
        by_lr: dict[float, list[dict[str, Any]]] = {}
        for run in results.values():
            if run["mode"] == mode:
                by_lr.setdefault(run["encoder_lr"], []).append(run)
        if not by_lr:
            continue
        lr, runs = max(by_lr.items(), key=lambda item: statistics.mean(run["best_val"] for run in item[1]))
        row = {"mode": mode, "encoder_lr": lr, "seeds": len(runs), "lrs_tried": sorted(by_lr)}
        for key in ("best_val", "early_stopped", "final"):
            values = [run[key] for run in runs]
            row[key] = (round(statistics.mean(values), 2), round(statistics.pstdev(values), 2))
        row["seconds"] = round(statistics.mean(run["seconds"] for run in runs), 1)
        row["reloaded"] = next((run["reloaded"] for run in runs if "reloaded" in run), None)
        rows.append(row)
    return rows


def read_results(path: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The runs already finished in `path`, if it exists and was made with the same `settings`."""
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    check_same_run(saved["settings"], settings, path)
    return saved["runs"]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="root holding Cora/raw")
    parser.add_argument("--checkpoint", default="graphmae-cora", help="a node-level graph encoder")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--encoder-lrs", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--head-lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", required=True, help="where the reloaded classifiers are saved")
    parser.add_argument("--json", required=True, help="finished runs and the summary; a rerun skips finished runs")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("cora", args.data)
    path, settings = Path(args.json), {key: getattr(args, key) for key in RUN_SETTINGS}
    results = read_results(path, settings)
    plan = [(mode, lr, seed) for mode in args.modes for lr in (args.encoder_lrs if MODES[mode][1] else [0.0])
            for seed in args.seeds]
    for mode, lr, seed in tqdm(plan, desc=f"fine-tune {args.checkpoint} on cora", disable=args.no_progress):
        key = f"{mode} | encoder lr {lr:g} | seed {seed}"
        if key in results:
            continue
        classifier = build_classifier(args.checkpoint, *MODES[mode], int(data.y.max()) + 1, seed)
        scores, state = train_run(classifier, data, lr, args)
        if seed == args.seeds[0]:
            folder = Path(args.output) / (mode.replace(", ", "-").replace(" ", "-") + (f"-lr{lr:g}" if lr else ""))
            scores["reloaded"] = reloaded_accuracy(classifier, state, data, folder)
        results[key] = {"mode": mode, "encoder_lr": lr, "seed": seed, **scores}
        atomic_write_text(path, json.dumps({"settings": settings, "runs": results}, indent=1))
    rows = summary(results)
    atomic_write_text(path, json.dumps({"settings": settings, "runs": results, "summary": rows}, indent=1))
    print(f"{args.checkpoint} on Cora's public split, test accuracy % (mean ± std over seeds {args.seeds})\n")
    print("| mode | encoder lr (best val) | validation | early-stopped | final | saved and reloaded, seed "
          f"{args.seeds[0]} | s / run |\n|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [f"{row[key][0]:.1f} ± {row[key][1]:.1f}" for key in ("best_val", "early_stopped", "final")]
        lr = f"{row['encoder_lr']:g} of {row['lrs_tried']}" if row["encoder_lr"] else "-"
        reloaded = "-" if row["reloaded"] is None else f"{row['reloaded']:.1f}"
        print(f"| {row['mode']} | {lr} | " + " | ".join(cells) + f" | {reloaded} | {row['seconds']} |")


if __name__ == "__main__":
    main()
