"""Fine-tune a classification head on a labelled set and score its test split: what
`zoo.for_classification` gives on real data, against the frozen probe of `zoo probe`.

This is `zoo finetune` (zoo/finetune_job.py, which describes the modes, the schedule and the
resumable run) with the model given as `--checkpoint` and the report also written to
`--json`, as the tables of benchmarks/README.md were made:

    python benchmarks/finetune_heads.py --checkpoint hubert-tiny-fsdd --data ../shared/data/fsdd/recordings \\
        --label-regex '^(\\d)_' --test-regex '_[0-4]\\.wav$' --mode full --epochs 8 \\
        --output runs/finetune/fsdd-full --json runs/finetune/fsdd-full.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from zoo.finetune_job import run_finetune
from zoo.finetune_options import add_finetune_arguments
from zoo.io import atomic_write_text


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", dest="name", required=True, help="zoo name, Hub repo id or checkpoint folder")
    parser.add_argument("--output", required=True, help="run folder: checkpoint.pt, log.jsonl, loss.png, classifier/")
    parser.add_argument("--json", help="also write the result here")
    add_finetune_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    text = json.dumps(run_finetune(args), indent=2)
    if args.json:
        atomic_write_text(Path(args.json), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
