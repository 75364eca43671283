"""`zoo pretrain mert`'s options, without torch: `zoo pretrain mert -h` and a refused option
answer before the model is imported. The run itself is `modalities.audio.mert.pretrain`.

Beside the family's folder, not in it: importing anything in the folder runs its __init__, which
imports the model and torch (`zoo pretrain mert -h` spent 5.7 s of CPU and 889 MB on it).
"""

from __future__ import annotations

import argparse

from zoo.options import Once, add_init_argument, add_optimization_arguments, positive_float, positive_int, probability

#: the sizes of `modalities.audio.mert.model.VARIANTS`, named here without importing the model
#: (test_pretrain_options holds them equal)
VARIANT_NAMES = ("tiny", "95m", "330m")
#: the upstream formats `zoo convert` reads, its default first (`registry.convert_formats`), named
#: without importing the converters (test_pretrain_options holds them equal)
CONVERT_FORMATS = ("transformers", "fairseq")
CQT_TARGETS = ("magnitude", "log")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `zoo pretrain mert`."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", action=Once, required=True,
                      help="folder of music files (wav, flac, mp3, ogg, ...: any rate; recursive)")
    data.add_argument("-o", "--output", required=True,
                      help="run folder: checkpoint.pt, log.jsonl, loss.png, labels.pt and cqt.npy (the teachers' "
                           "targets; features.npy while the k-means teacher is fitted, codes.npy while EnCodec's "
                           "pass runs), inputs.json (the files a rerun resumes on), encoder/")
    data.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                      help="fnmatch pattern of files to leave out, relative to --data (repeatable)")
    data.add_argument("--max-seconds", type=positive_float, default=5.0,
                      help="longest random crop (MERT: 5 s) (default: 5.0)")

    teacher = parser.add_argument_group("teachers")
    teacher.add_argument("--teacher", choices=("kmeans", "encodec"), default="kmeans",
                         help="acoustic codes: residual k-means on log-mel + chroma, or EnCodec (default: kmeans)")
    teacher.add_argument("--encodec", default="facebook/encodec_24khz",
                         help="--teacher encodec: EnCodec folder or Hub repo id (default: facebook/encodec_24khz)")
    teacher.add_argument("--codebooks", type=positive_int, default=8, help="--teacher kmeans: codebooks C (default: 8)")
    teacher.add_argument("--clusters", type=positive_int, default=256, help="--teacher kmeans: codes K (default: 256)")
    teacher.add_argument("--kmeans-frames", type=positive_int, default=100_000,
                         help="frames k-means is fitted on (default: 100000)")
    teacher.add_argument("--chroma-weight", type=float, default=1.0,
                         help="--teacher kmeans: weight of the 12 standardised chroma features against the 64 "
                              "log-mel ones in the k-means distance; 2.31 = equal shares (default: 1.0)")
    teacher.add_argument("--no-cqt", action="store_true", help="drop the CQT reconstruction loss")
    teacher.add_argument("--cqt-target", choices=CQT_TARGETS, default="magnitude",
                         help="CQT regression target: magnitudes (MERT) or log magnitudes standardised per bin "
                              "(default: magnitude)")

    model = parser.add_argument_group("model and objective")
    model.add_argument("--variant", choices=sorted(VARIANT_NAMES), help="encoder size (default: tiny)")
    add_init_argument(model)
    model.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", dest="overrides",
                       help="override a config field of the variant, e.g. --set num_hidden_layers=2")
    model.add_argument("--final-dim", type=int, default=64, help="prediction width per codebook (default: 64)")
    model.add_argument("--mask-prob", type=probability, default=0.8, help="(default: 0.8)")
    model.add_argument("--mask-length", type=int, default=5, help="frames per masked span (default: 5)")
    model.add_argument("--feature-penalty", type=float, default=10.0,
                       help="weight of mean(conv features^2) (MERT: 10) (default: 10.0)")
    model.add_argument("--cqt-weight", type=float, default=1.0, help="weight of the CQT MSE (MERT: 1) (default: 1.0)")
    model.add_argument("--feature-grad-mult", type=float, default=0.1,
                       help="gradient scale into the conv front end (MERT-95M: 0.1) (default: 0.1)")
    model.add_argument("--mixture-prob", type=float, default=0.5,
                       help="share of crops mixed with in-batch noise; MERT's config mixture_prob: p mixes 1 - p of "
                            "them, the same at its 0.5 (default: 0.5)")
    model.add_argument("--noise-seconds", type=float, nargs=2, default=(0.5, 1.0),
                       help="noise segment length range (MERT-95M: 12000-24000 samples at 24 kHz) (default: 0.5 1.0)")

    # fairseq's recipe: polynomial_decay (power 1) after the warmup, and its Adam decays every parameter
    add_optimization_arguments(parser, "MERT's 32k of 400k steps", lr_decay="linear", decay_every_parameter=True)
