"""`zoo pretrain hubert`'s options, without torch: `zoo pretrain hubert -h` and a refused option
answer before the model is imported. The run itself is `modalities.speech.hubert.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain hubert -h` spent 6.3 s of CPU and 889 MB on it).
"""

from __future__ import annotations

import argparse

from zoo.options import Once, add_init_argument, add_optimization_arguments, positive_float, positive_int, probability

#: the sizes of `modalities.speech.hubert.model.VARIANTS`, named here without importing the model
#: (test_pretrain_options holds them equal)
VARIANT_NAMES = ("tiny", "base", "large", "xlarge")
#: the upstream formats `zoo convert` reads, its default first (`registry.convert_formats`), named
#: without importing the converters (test_pretrain_options holds them equal)
CONVERT_FORMATS = ("fairseq",)
#: fairseq's k-means restarts (learn_kmeans.py's n_init)
KMEANS_INITS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain hubert`."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", action=Once, required=True,
                      help="folder of audio files (wav, flac, mp3, ogg, ...: any rate; searched recursively)")
    data.add_argument("-o", "--output", required=True,
                      help="run folder: checkpoint.pt, log.jsonl, loss.png, labels.pt, inputs.json (the files "
                           "a rerun resumes on), encoder/")
    data.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                      help="fnmatch pattern of files to leave out, relative to --data (repeatable); "
                           "FSDD's test split is '*_[0-4].wav'")
    data.add_argument("--max-seconds", type=positive_float, default=5.0, help="longest random crop (default: 5.0)")

    labels = parser.add_argument_group("labels")
    labels.add_argument("--iteration", type=int, choices=(1, 2), default=1,
                        help="1: k-means on MFCC frames; 2: k-means on a layer of --labels-from (default: 1)")
    labels.add_argument("--labels-from", help="iteration 2: the iteration-1 run folder, its encoder/ folder or a "
                                              "model name (e.g. hubert-tiny-fsdd)")
    labels.add_argument("--layer", type=int,
                        help="iteration 2: hidden state to cluster, 0 = input embeddings (default: the middle "
                             "layer, as HuBERT-base clusters layer 6 of 12)")
    labels.add_argument("--clusters", type=positive_int,
                        help="k-means clusters K (default: HuBERT-base's, 100 on MFCC in iteration 1, 500 on "
                             "features in iteration 2)")
    labels.add_argument("--kmeans-frames", type=positive_int, default=100_000,
                        help="frames k-means is fitted on (default: 100000)")
    labels.add_argument("--kmeans-features", choices=("raw", "standardised"),
                        help="cluster the features as they are, as fairseq's learn_kmeans.py (default), or each "
                             "dimension standardised first (hubert-tiny-fsdd's recipe)")
    labels.add_argument("--kmeans-inits", type=positive_int,
                        help=f"k-means restarts, the best kept (default: {KMEANS_INITS}, fairseq's n_init)")

    model = parser.add_argument_group("model and objective")
    model.add_argument("--variant", choices=sorted(VARIANT_NAMES), help="encoder size (default: tiny)")
    add_init_argument(model)
    model.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", dest="overrides",
                       help="override a config field of the variant, "
                            "e.g. --set 'conv_dim=[128,128,128,128,128,128,128]'")
    model.add_argument("--final-dim", type=int, default=256, help="prediction space width (default: 256)")
    model.add_argument("--mask-prob", type=probability, default=0.8, help="see compute_span_mask (default: 0.8)")
    model.add_argument("--mask-length", type=int, default=10,
                       help="frames per masked span; shorten it for short utterances (default: 10)")
    model.add_argument("--logit-temp", type=float, default=0.1, help="cosine logit temperature (default: 0.1)")
    model.add_argument("--feature-penalty", type=float, default=10.0,
                       help="weight of mean(conv features^2) (HuBERT-base: 10) (default: 10.0)")
    model.add_argument("--feature-grad-mult", type=float, default=0.1,
                       help="gradient scale into the conv front end (HuBERT-base: 0.1) (default: 0.1)")

    # fairseq's recipe: polynomial_decay (power 1) after the warmup, and its Adam decays every parameter
    add_optimization_arguments(parser, "HuBERT's 32k of 400k steps", lr_decay="linear",
                               decay_every_parameter=True)
