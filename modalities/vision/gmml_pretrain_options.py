"""`zoo pretrain gmml`'s options, without torch: `zoo pretrain gmml -h` and a refused option
answer before the model is imported. The run itself is `modalities.vision.gmml.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain gmml -h` spent 2.4 s of CPU and 660 MB on it).
"""

from __future__ import annotations

import argparse

from zoo.options import Once, add_init_argument, add_optimization_arguments, non_negative_int

#: the sizes of `modalities.vision.gmml.model.VARIANTS`, named here without importing the model
#: (test_pretrain_options holds them equal)
VARIANT_NAMES = ("vit-tiny-patch16", "vit-small-patch16", "vit-base-patch16")
#: the upstream formats `zoo convert` reads, its default first (`registry.convert_formats`), named
#: without importing the converters (test_pretrain_options holds them equal)
CONVERT_FORMATS = ("auto (read off the file)", "gmml", "dino", "timm")
#: `--variant tiny` etc. stand for the paper's patch-16 architectures
SHORT_VARIANTS = {name.split("-")[1]: name for name in VARIANT_NAMES}
#: upstream warms up for 10 of its 800 epochs
WARMUP_SHARE = 10 / 800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain gmml`."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", action=Once, required=True,
                      help="an image folder (recursive), a parquet file or folder (Hugging Face image layout, e.g. "
                      "../shared/data/cifar10), an MNIST idx folder, or a `datasets` dataset saved with save_to_disk")
    data.add_argument("--split", default="train", help="split of a parquet folder, a DatasetDict, an image folder with "
                      "train/, test/... subfolders (all: the whole folder), or MNIST's test set (train = the "
                      "MANIFEST's stratified 80 %%, test, all) (default: train)")
    data.add_argument("-o", "--output", required=True, help="run folder: checkpoint.pt, log.jsonl, loss.png, "
                      "inputs.json (an image folder's files, which a rerun resumes on), encoder/")
    data.add_argument("--workers", type=non_negative_int, default=0,
                      help="DataLoader processes making batches (default: 0)")

    gmml = parser.add_argument_group("GMML")
    gmml.add_argument("--views", type=int, default=2, help="crops per image (default: 2, upstream's 2 global crops)")
    gmml.add_argument("--drop-perc", type=float, default=0.75,
                      help="corrupt U(min(0.5, p), p) of each crop's pixels (default: 0.75)")
    gmml.add_argument("--drop-type", default="noise", help="fill of the rectangles: noise, zeros, replace (from the "
                      "same crop), or several joined by '-' (default: noise)")
    gmml.add_argument("--drop-replace", type=float, default=0.3, help="share pasted from another crop of the batch, "
                      "for 1 / (fills + 1) of the crops; 0 turns it off (default: 0.3)")
    gmml.add_argument("--drop-align", type=int, default=1, help="rectangle grid in pixels; 1 ignores the patches, "
                      "as upstream's default (default: 1)")
    gmml.add_argument("--recons-blocks", help="1-based blocks averaged for the head, e.g. 6-8-10-12 (default: "
                      "upstream's for 12 blocks, the same relative places for other depths)")
    gmml.add_argument("--all-pixels", action="store_true", help="L1 over every pixel (upstream drop_only=0), not "
                      "only the corrupted ones")
    gmml.add_argument("--min-lr", type=float, default=1e-6, help="lr at the end of the cosine (default: 1e-6)")
    gmml.add_argument("--weight-decay-end", type=float, default=0.4, help="weight decay at the end (default: 0.4)")

    model = parser.add_argument_group("model")
    model.add_argument("--variant", help=f"{', '.join(sorted(SHORT_VARIANTS))}, or {', '.join(sorted(VARIANT_NAMES))} "
                                         "(default: tiny)")
    add_init_argument(model)
    model.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", dest="overrides",
                       help="override a config field, e.g. --set image_size=32 --set patch_size=4 --set depth=6")

    add_optimization_arguments(parser, "upstream's 10 of 800 epochs", steps=1000, batch_size=64, lr=5e-4,
                               max_grad_norm=3.0, weight_decay=0.04, batch_unit="images (each gives --views crops)",
                               warmup_share=WARMUP_SHARE,
                               lr_note=", as given: upstream scales 5e-4 by images / 256 (1.25e-4 for 64)")
