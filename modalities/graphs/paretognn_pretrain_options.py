"""`zoo pretrain paretognn`'s options, without torch or PyG: `zoo pretrain paretognn -h` and a refused option
answer before the model is imported. The run itself is `modalities.graphs.paretognn.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain paretognn -h` spent 5.2 s of CPU and 920 MB on it).
"""

from __future__ import annotations

import argparse

from modalities.graphs.pretrain_options import add_common_arguments
from zoo.options import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain paretognn`: the graph families' shared ones, --steps over the
    recipe's, and --no-pareto for the paper's equal-weight ablation."""
    add_common_arguments(parser)
    parser.add_argument("--steps", type=positive_int, help="override the recipe's steps")
    parser.add_argument("--no-pareto", action="store_true", help="average the task losses (the paper's ablation)")
