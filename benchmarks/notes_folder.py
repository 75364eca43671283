"""Lay the rendered notes out as a labelled folder, `OUT/{train,test}/<label>/<file>` (symbolic
links), with the split of probe_beats.py and probe_mert.py (stratified 80/20 by family, seeded),
so that `zoo probe --data` and finetune_heads.py read the same train and test notes as the probes.

    python benchmarks/notes_folder.py --notes runs/notes24k --label family -o data_local/notes_family
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from probe_beats import note_splits


def lay_out(notes: Path, label: str, output: Path, seed: int) -> dict[str, int]:
    """Link every note of notes.csv under its split and label; returns the count of each split."""
    rows = list(csv.DictReader((notes / "notes.csv").open()))
    if label not in rows[0]:
        raise SystemExit(f"notes.csv has no column {label!r}; its columns are {list(rows[0])}")
    splits = note_splits(np.array([row["family"] for row in rows]), seed)
    counts = {}
    for split in ("train", "test"):
        chosen = np.flatnonzero(splits[split])
        for index in chosen:
            folder = output / split / rows[index][label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / rows[index]["file"]).symlink_to((notes / rows[index]["file"]).resolve())
        counts[split] = len(chosen)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=Path, required=True, help="the rendering's folder (notes.csv and the notes)")
    parser.add_argument("--label", default="family", help="the notes.csv column to label by (e.g. pitch_class)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="a new folder")
    parser.add_argument("--seed", type=int, default=0, help="the probes' split seed")
    args = parser.parse_args(argv)
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; pass a new folder")
    print(lay_out(args.notes, args.label, args.output, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
