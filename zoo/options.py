"""The command line's option types and the option groups several commands share.

Nothing here imports torch (about 1.5 s), so that `zoo --help`, `zoo list` and a refused option
answer at once, and a Ctrl-C while a command imports torch is the command's to report. Each
type refuses a bad value when the command line is parsed, naming the option, rather than after
the model and data have loaded.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from zoo.errors import ConfigError

#: shapes of the lr's fall after the warmup (TrainConfig.lr_decay)
LR_DECAYS = ("cosine", "linear")


def add_device_arguments(parser: Any, bf16: bool = True, recompute: bool = True) -> None:
    """Where and how a training run computes (TrainConfig's device, bf16 and
    activation_checkpointing), on a parser or an argument group: `zoo pretrain` and `zoo finetune`.
    A recipe whose objective has no bf16 or no blocks to recompute leaves those out."""
    parser.add_argument("--device", default="cpu", help="e.g. cpu or cuda (default: cpu)")
    if bf16:
        parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    if recompute:
        parser.add_argument("--activation-checkpointing", action="store_true",
                            help="recompute block activations in the backward pass: less memory, the same steps")


class Once(argparse.Action):
    """Store an option given once, and refuse it given again: argparse keeps the last, so a second
    `--data` silently replaced the first where `zoo pretrain beats` reads both."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Any = None) -> None:
        earlier = getattr(namespace, self.dest, self.default)
        if earlier is not self.default:
            parser.error(f"{option_string} is given twice ({earlier!r}, then {values!r}); this command reads one: "
                         "give it once")
        setattr(namespace, self.dest, values)


def parsed(text: str, kind: type) -> Any:
    """`text` as an int or a float, or argparse's error saying it is not one."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None


def seed_int(text: str) -> int:
    """argparse type of random seeds: numpy takes 0 to 2**32 - 1, so -1 would fail after the
    run's folder was made."""
    value = parsed(text, int)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is not a seed; use 0 to {2**32 - 1}")
    return value


def positive_int(text: str) -> int:
    """argparse type of counts that must be at least 1 (codes, codebooks, frames to cluster):
    zero is refused at parsing, not after minutes of feature extraction."""
    value = parsed(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number; use 1 or more")
    return value


def non_negative_int(text: str) -> int:
    """argparse type of counts that may be 0 (DataLoader worker processes)."""
    value = parsed(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 or more")
    return value


def positive_float(text: str) -> float:
    """argparse type of lengths and durations that must be above 0 (a crop's seconds)."""
    value = parsed(text, float)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    """argparse type of amounts that may be 0 (a weight decay, a time limit that stops after one
    step): a negative one is refused at parsing, naming the option, not as a TrainConfig field
    after the model and data have loaded."""
    value = parsed(text, float)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{value} is not 0 or a positive number")
    return value


def probability(text: str) -> float:
    """argparse type of a probability above 0, at most 1 (a masking rate)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{value} is not a probability; use a number in (0, 1]")
    return value


def share(text: str) -> float:
    """argparse type of a share of a set strictly between 0 and 1 (a validation split), refused
    at parsing."""
    value = parsed(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a share between 0 and 1; e.g. 0.1 for a tenth")
    return value


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming a labelled table of your own (`zoo probe` and `zoo finetune`)."""
    parser.add_argument("--table", help="table encoders: a labelled CSV or Parquet file of your own instead of "
                        "files or a named dataset; its --target column labels each row")
    parser.add_argument("--target", help="with --table: the label column")
    parser.add_argument("--test-table", help="with --table: the rows to score on (default: 20 %% of --table's rows, "
                        "held out with seed 0, by class for classification)")
    parser.add_argument("--task", choices=("classification", "regression"),
                        help="with --table: what --target holds (default: regression for numbers with a fraction, "
                             "else classes)")


def check_table_source(args: argparse.Namespace, others: dict[str, Any]) -> None:
    """`--table` alone as the data (none of the command's `others` options given beside it), with
    the `--target` that labels its rows."""
    given = [option for option, value in others.items() if value is not None]
    if given:
        raise ConfigError(f"pass --table or {' / '.join(given)}, not both")
    if args.target is None:
        raise ConfigError("--table needs --target COLUMN: the column holding each row's label")


def add_optimization_arguments(parser: argparse.ArgumentParser, warmup_source: str, steps: int = 1000,
                               batch_size: int = 16, lr: float = 5e-4, max_grad_norm: float = 10.0,
                               weight_decay: float = 0.01, batch_unit: str = "crops", warmup_share: float = 0.08,
                               lr_decay: str = "cosine",
                               decay_every_parameter: bool = False, lr_note: str = "") -> None:
    """The optimisation options the pretrain commands share (`train_config_from_args` reads them).

    `batch_unit` says in --help what a recipe's batch counts. Without --warmup-steps the
    warmup is `warmup_share` of --steps (`warmup_source`, which each recipe names, says whose share
    it is: a default credited HuBERT in BEATs' help): one number gives both the help text and the
    value. `lr_decay` is the recipe's default `--lr-decay`; `decay_every_parameter` its AdamW's
    reach (recorded in args.json, not an option); `lr_note` ends the --lr help (how the recipe's
    paper sets its lr, where that differs).
    """
    optim = parser.add_argument_group("optimization")
    optim.add_argument("--steps", type=positive_int, default=steps, help=f"optimizer steps (default: {steps})")
    optim.add_argument("--batch-size", type=positive_int, default=batch_size,
                       help=f"{batch_unit} per batch (default: {batch_size})")
    optim.add_argument("--lr", type=positive_float, default=lr, help=f"peak learning rate{lr_note} (default: {lr:g})")
    optim.add_argument("--weight-decay", type=non_negative_float, default=weight_decay,
                       help=f"AdamW weight decay (default: {weight_decay:g})")
    optim.add_argument("--warmup-steps", type=non_negative_int,
                       help=f"linear warmup steps (default: {100 * warmup_share:g}%% of --steps, {warmup_source})")
    parser.set_defaults(warmup_share=warmup_share, decay_every_parameter=decay_every_parameter)
    optim.add_argument("--lr-decay", choices=LR_DECAYS, default=lr_decay,
                       help=f"the shape of the lr's fall after the warmup (default: {lr_decay})")
    optim.add_argument("--max-grad-norm", type=float, default=max_grad_norm,
                       help=f"gradient clipping norm (default: {max_grad_norm:g})")
    add_device_arguments(optim)
    add_run_arguments(optim)


def add_run_arguments(parser: Any) -> None:
    """How a `zoo pretrain` run goes, whatever it trains (every recipe takes these): its seed,
    checkpoints, time slices, threads and progress bars. The device options are each recipe's own,
    as not every objective runs in bf16 or recomputes activations."""
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seeds the init, masks, crops and batch order of a fresh run (default: 0)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=100,
                        help="steps between checkpoints, which a rerun resumes from (default: 100)")
    add_time_limit_argument(parser)
    parser.add_argument("--threads", type=positive_int,
                        help="torch CPU threads; 1 is fastest on a machine other jobs share (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_init_argument(parser: Any) -> None:
    """`--init` on a parser or an argument group: pretraining that goes on from trained weights."""
    parser.add_argument("--init", metavar="NAME_OR_DIR",
                        help="go on from these weights (a zoo name such as the embedded model, a run or "
                             "checkpoint folder) with fresh optimizer moments and schedule, instead of a random "
                             "init; the architecture is theirs, so --variant and --set are refused")


def add_time_limit_argument(parser: Any) -> None:
    """`--time-limit` on a parser or an argument group: every `zoo pretrain` command takes it
    (TrainConfig.time_limit)."""
    parser.add_argument("--time-limit", type=non_negative_float, metavar="SECONDS",
                        help="stop with a checkpoint (and the encoder saved) after this much wall time; "
                             "rerun the same command to continue (default: train to the end)")
