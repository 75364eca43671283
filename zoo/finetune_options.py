"""`zoo finetune`'s options and their defaults, without torch: `zoo finetune -h` and a refused
option answer before torch is imported (`zoo.options`). The run itself is `zoo.finetune_job`."""

from __future__ import annotations

import argparse

from zoo.options import (add_device_arguments, add_table_arguments, non_negative_float, positive_float, positive_int,
                         seed_int, share)

MODES = ("linear", "weighted", "full")
DEFAULT_EPOCHS = 5
DEFAULT_BATCH_SIZE = 32
#: a node dataset's epochs, each one step on its whole graph
DEFAULT_NODE_EPOCHS = 300
#: peak learning rates: a head alone takes a larger step than a whole pretrained encoder (at 1e-3 it
#: under-trained in the default epochs: FSDD digits 57 % against 68 % at 1e-2, CIFAR-10 27 % against 35 %)
DEFAULT_LR = {"linear": 1e-2, "weighted": 1e-2, "full": 1e-4}
#: a node dataset's, a whole encoder's ten times larger: its 300 steps are all a run has (GraphMAE's node probe: 1e-2)
DEFAULT_NODE_LR = {"linear": 1e-2, "weighted": 1e-2, "full": 1e-3}
#: the share of the training items `--validation` holds out when it is given no share
DEFAULT_VALIDATION_SHARE = 0.1


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a fine-tuning run, besides the model (`name`) and the run folder (`output`)."""
    parser.add_argument("--data", help="labelled folder or Hub parquet dataset, as `zoo probe --data`; with "
                        "--dataset, the folder holding it")
    parser.add_argument("--dataset", help="graph and table encoders: a named dataset with its own labels and split "
                        "instead of files: a node dataset (cora: its nodes, scored on its test nodes), a TU set "
                        "(mutag: its graphs, scored on one of the svm-10fold probe's folds) or adult (its rows)")
    add_table_arguments(parser)
    parser.add_argument("--fold", type=int,
                        help="with --dataset on a set of graphs: which of the svm-10fold probe's ten folds is the "
                             "test split (0 .. 9; default 0)")
    parser.add_argument("--label-regex", help="a regex whose first group is a file's label (default: its folder)")
    parser.add_argument("--test-regex", help="a regex matching the test files' names (default: a test/ folder)")
    parser.add_argument("--mode", choices=MODES, default="full",
                        help="linear: a head on the frozen encoder; weighted: a head on a learned mix of its layers, "
                             "encoder frozen; full: head and encoder trained together (default: full; a T-JEPA with a "
                             "standardised output: its encoder at 1e-4 of the head's lr, unclipped)")
    parser.add_argument("--layer", type=int, help="the layer the head reads (default: the last)")
    parser.add_argument("--pool", choices=("mean", "cls", "sum", "max"),
                        help="the mean of the layer's tokens, the encoder's cls token (GMML, T-JEPA), or a graph "
                             "readout (sum, max); default: a graph encoder's own readout, else mean")
    parser.add_argument("--revision", help="the Hub branch, tag or commit of a Hub checkpoint (default: main)")
    parser.add_argument("--random-init", nargs="?", type=seed_int, const=True, default=False, metavar="SEED",
                        help="train a fresh encoder of the checkpoint's architecture instead of its weights, seeded "
                             "SEED (as zoo embed/probe --random-init SEED; alone: by --seed); a T-JEPA's output "
                             "scale is fitted on the training rows, as its pretraining does")
    parser.add_argument("--freeze-feature-encoder", action="store_true",
                        help="with --mode full: keep a HuBERT / MERT conv front end, or BEATs' patch embedding, as "
                             "pretrained")
    parser.add_argument("--train-limit", type=positive_int,
                        help="train on a seeded N // classes items of each class, at least one (default: every "
                             "training item; a numeric target: N items)")
    parser.add_argument("--epochs", type=int,
                        help=f"passes over the training items (default: {DEFAULT_EPOCHS}; a node dataset, whose "
                             f"epoch is one step on its whole graph: {DEFAULT_NODE_EPOCHS})")
    parser.add_argument("--batch-size", type=positive_int,
                        help=f"training items a step (default: {DEFAULT_BATCH_SIZE}, or all of them where fewer); a "
                             "node dataset takes its whole graph")
    parser.add_argument("--validation", nargs="?", type=share, const=True, default=False, metavar="SHARE",
                        help="score a validation split after every epoch and keep the best epoch's weights: SHARE "
                             f"of the training items held out, by class (alone: {DEFAULT_VALIDATION_SHARE}); a node "
                             "dataset's own validation nodes (given alone)")
    parser.add_argument("--patience", type=positive_int,
                        help="with --validation: stop after N epochs without a better validation score "
                             "(default: run every epoch)")
    parser.add_argument("--eval-batch-size", type=positive_int, default=64,
                        help="items per forward pass when scoring the validation and test splits (default: 64)")
    parser.add_argument("--lr", type=positive_float, help=f"peak learning rate (default by mode: {DEFAULT_LR}; a node "
                        f"dataset: {DEFAULT_NODE_LR}); --mode full on a T-JEPA with a standardised output: the head's "
                        f"(default: {DEFAULT_LR['linear']}), the encoder's being 1e-4 of it")
    parser.add_argument("--weight-decay", type=non_negative_float, default=0.01,
                        help="AdamW's weight decay (default: 0.01)")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="head init, random encoder init and batch order (default: 0)")
    add_device_arguments(parser)
    parser.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    parser.add_argument("--time-limit", type=non_negative_float,
                        help="seconds of training in this call; a rerun of the command continues the run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on stderr)")
