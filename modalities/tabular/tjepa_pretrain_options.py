"""`zoo pretrain tjepa`'s options, without torch: `zoo pretrain tjepa -h` and a refused option
answer before the model is imported. The run itself is `modalities.tabular.tjepa.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain tjepa -h` spent 2.3 s of CPU and 725 MB on it).
"""

from __future__ import annotations

import argparse

from zoo.options import Once, add_device_arguments, add_run_arguments, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain tjepa`: a named table (--dataset) or a file of your own (--table with
    --target, --ignore, --categorical), the recipe and its overrides, and the run's settings."""
    parser.add_argument("--dataset", help="a named table with a recipe (adult) or known to the zoo (diabetes)")
    parser.add_argument("--table", help="instead of --dataset: a CSV or Parquet file of your own")
    parser.add_argument("--target", help="with --table: the label column to leave out of the features")
    parser.add_argument("--ignore", action="append", default=[], metavar="COLUMN",
                        help="with --table: a column to leave out (an id, a timestamp); repeatable")
    parser.add_argument("--categorical", action="append", default=[], metavar="COLUMN",
                        help="with --table: a numeric-looking column to treat as categories (codes); repeatable")
    parser.add_argument("--recipe", default=None,
                        help="use this dataset's recipe (default: --dataset's own; with --table, adult's); "
                        "e.g. --dataset diabetes --recipe adult")
    parser.add_argument("--data", action=Once,
                        help="folder holding the dataset's files (adult: adult.data and adult.test)")
    parser.add_argument("-o", "--output", required=True, help="run folder (checkpoint, log, encoder/)")
    parser.add_argument("--epochs", type=positive_int, help="override the recipe's epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe or architecture setting, e.g. --set num_layers=8")
    add_device_arguments(parser, recompute=False)
    add_run_arguments(parser)
