"""`zoo pretrain beats`'s options, without torch: `zoo pretrain beats -h` and a refused option
answer before the model is imported. The run itself is `modalities.audio.beats.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain beats -h` spent 2.5 s of CPU and 654 MB on it).
"""

from __future__ import annotations

import argparse

from zoo.options import add_init_argument, add_optimization_arguments, positive_float, positive_int

#: the sizes of `modalities.audio.beats.model.VARIANTS`, named here without importing the model
#: (test_pretrain_options holds them equal)
VARIANT_NAMES = ("tiny", "base")
#: the upstream formats `zoo convert` reads, its default first (`registry.convert_formats`), named
#: without importing the converters (test_pretrain_options holds them equal)
CONVERT_FORMATS = ("official",)
STAGES = ("ssl", "tokenizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain beats`."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, action="append",
                      help="folder of audio files (wav, flac, mp3, ogg, ...: any rate; recursive); repeat for several")
    data.add_argument("-o", "--output", required=True, help="run folder: checkpoint.pt, log.jsonl, loss.png, "
                                                            "inputs.json (the files a rerun resumes on), "
                                                            "encoder/ (ssl) or tokenizer/ (tokenizer)")
    data.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                      help="fnmatch pattern of files to leave out, relative to each --data folder; FSDD's test "
                           "split is '*_[0-4].wav'")
    data.add_argument("--max-seconds", type=positive_float, default=2.0, help="longest random crop (default: 2.0)")

    stage = parser.add_argument_group("iteration")
    stage.add_argument("--stage", choices=STAGES, default="ssl",
                       help="ssl: train the audio model on a tokenizer's labels; tokenizer: distil a tokenizer "
                            "from --teacher (default: ssl)")
    stage.add_argument("--tokenizer", default="random",
                       help="ssl stage: 'random' (iteration 1), or a tokenizer run, folder or name, e.g. "
                            "beats-tiny-tokenizer (default: random)")
    stage.add_argument("--teacher",
                       help="tokenizer stage: the SSL run, encoder folder or model name (e.g. beats-tiny) to distil")
    stage.add_argument("--codebook-size", type=positive_int, default=1024, help="codes K (default: 1024, as released)")
    stage.add_argument("--codebook-dim", type=positive_int, default=256,
                       help="code width C (default: 256, as released)")
    stage.add_argument("--mask-ratio", type=float, default=0.75, help="ssl: share of patches dropped (default: 0.75)")
    stage.add_argument("--head-layers", type=int, default=2,
                       help="depth of the label predictor (ssl) or estimator (tokenizer) (default: 2)")

    model = parser.add_argument_group("model")
    model.add_argument("--variant", choices=sorted(VARIANT_NAMES), help="size (default: tiny)")
    add_init_argument(model)
    model.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", dest="overrides",
                       help="override a config field, e.g. --set encoder_layers=2")

    add_optimization_arguments(parser, "HuBERT's, as BEATs' pretraining code is unreleased", steps=2000)
