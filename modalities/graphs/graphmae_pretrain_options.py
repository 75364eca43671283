"""`zoo pretrain graphmae`'s options, without torch or PyG: `zoo pretrain graphmae -h` and a refused option
answer before the model is imported. The run itself is `modalities.graphs.graphmae.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain graphmae -h` spent 5.1 s of CPU and 919 MB on it).
"""

from __future__ import annotations

import argparse

from modalities.graphs.pretrain_options import add_common_arguments
from zoo.options import positive_int

#: the upstream formats `zoo convert` reads, its default first (`registry.convert_formats`), named
#: without importing the converters (test_pretrain_options holds them equal)
CONVERT_FORMATS = ("graphmae",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain graphmae`: the graph families' shared ones, and --epochs over the recipe's."""
    add_common_arguments(parser)
    parser.add_argument("--epochs", type=positive_int, help="override the recipe's epochs")
