"""`zoo finetune --dataset` on every fold of a set of graphs: the test accuracy of each of the
svm-10fold probe's ten folds (stratified, seed 0), and their mean and std, per mode, so that a
fine-tuned head is compared with the probe on the same folds (the probe's score is also a mean
and std over them).

Each (mode, fold) is one `zoo finetune` run in OUTPUT/MODE-foldK; finished runs are kept in
`--json`, so an interrupted command goes on from the next run (more folds or modes may be added;
a rerun with other fine-tuning settings is refused, since its runs would not be comparable).

    python benchmarks/finetune_folds.py --checkpoint graphmae-mutag --dataset mutag --data ../shared/data/tu \\
        --epochs 50 --modes full linear --output runs/finetune-mutag --json runs/finetune-mutag.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from zoo.finetune_job import run_finetune
from zoo.finetune_options import MODES, add_finetune_arguments
from zoo.io import atomic_write_text
from zoo.run_folders import check_same_run

FOLDS = tuple(range(10))
#: the arguments each run sets itself, or that only say where and how runs go
PER_RUN = ("mode", "fold", "output", "json", "modes", "folds", "threads", "no_progress", "time_limit", "device")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", dest="name", required=True, help="zoo name, Hub repo id or checkpoint folder")
    parser.add_argument("--output", required=True, help="folder of the runs, one MODE-foldK subfolder each")
    parser.add_argument("--json", required=True, help="the finished runs and the table; a rerun goes on from it")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["full", "linear"])
    parser.add_argument("--folds", nargs="+", type=int, default=list(FOLDS))
    add_finetune_arguments(parser)
    args = parser.parse_args(argv)
    if args.dataset is None:
        parser.error("--dataset is required: a set of graphs, e.g. mutag")
    if args.fold is not None:
        parser.error("--fold is set per run; pass --folds")
    return args


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in vars(args).items() if key not in PER_RUN}


def summary(runs: dict[str, dict[str, Any]], modes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per mode: the folds done, their test accuracies (%) and their mean and std (population
    std, as the svm-10fold probe reports it)."""
    table = {}
    for mode in modes:
        done = sorted((run["fold"], 100 * run["test_accuracy"]) for run in runs.values() if run["mode"] == mode)
        scores = [score for _, score in done]
        table[mode] = {"folds": [fold for fold, _ in done], "accuracies": [round(score, 2) for score in scores],
                       "mean": round(statistics.fmean(scores), 2) if scores else None,
                       "std": round(statistics.pstdev(scores), 2) if scores else None}
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    path = Path(args.json)
    saved = json.loads(path.read_text()) if path.is_file() else {"settings": shared_settings(args), "runs": {}}
    check_same_run(saved["settings"], shared_settings(args), path)
    runs = saved["runs"]
    for mode in args.modes:
        for fold in args.folds:
            key = f"{mode}-fold{fold}"
            if key in runs:
                continue
            run_args = copy.copy(args)
            run_args.mode, run_args.fold, run_args.output = mode, fold, str(Path(args.output) / key)
            report = run_finetune(run_args)
            if "test_accuracy" not in report:
                print(f"{key} stopped at its --time-limit; rerun the command to go on", file=sys.stderr)
                return 1
            runs[key] = report
            saved["table"] = summary(runs, args.modes)
            atomic_write_text(path, json.dumps(saved, indent=2) + "\n")
            print(f"{key}: {100 * report['test_accuracy']:.2f} %", file=sys.stderr)
    table = summary(runs, args.modes)
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
