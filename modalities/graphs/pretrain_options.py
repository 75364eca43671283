"""The options every graph family's `zoo pretrain` takes, without torch or PyG, so that
`zoo pretrain graphmae -h` answers before the model is imported; `modalities.graphs.pretraining`
runs what they ask.
"""

from __future__ import annotations

import argparse

from zoo.options import Once, add_device_arguments, add_run_arguments


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every graph family's `zoo pretrain` takes, read by `start_run` and `run_and_save`;
    a family adds the length of its run (--epochs or --steps) itself."""
    parser.add_argument("--dataset", required=True,
                        help="a dataset with a recipe in hub_configs (e.g. cora, mutag), or any TU set in --data")
    parser.add_argument("--recipe", help="use the recipe of this dataset (default: --dataset's own), e.g. "
                                         "--dataset ENZYMES --recipe proteins")
    parser.add_argument("--data", action=Once,
                        help="folder holding the dataset as PyG lays it out (e.g. ROOT/Cora/raw); default: the zoo's "
                        "dataset cache, downloading where possible")
    parser.add_argument("-o", "--output", required=True, help="run folder (checkpoint, log, encoder/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe or architecture setting, e.g. --set lr=0.0005")
    add_device_arguments(parser, bf16=False, recompute=False)
    add_run_arguments(parser)
