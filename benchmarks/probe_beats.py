"""Linear-probe BEATs checkpoints on FSDD (digit, speaker) and rendered notes (instrument
family, pitch class), against a random-init BEATs of the same shape and log-mel features.

FSDD: the split of probe_hubert_fsdd.py (takes 0-4 test, 5-49 train; the best layer is
chosen on takes 5-9 with a probe fitted on takes 10-49). Notes: the NSynth-like set that
`python -m modalities.audio.rendering notes` makes (notes.csv); a stratified 80/20 split by
family (seeded); the best layer is chosen on a 20 % validation part of the train split.
Every feature set is mean-pooled into one vector per recording and scored with
`zoo.evaluation.linear_probe` and `knn_accuracy` (cosine, k=20).

    python benchmarks/probe_beats.py --checkpoint zoo/checkpoints/beats-tiny \\
        --compare runs/beats-tiny-iter1/encoder --fsdd ../shared/data/fsdd/recordings --notes runs/notes16k
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from probe_hubert_fsdd import Recordings, evaluate_encoder, markdown, per_layer_markdown, score

from modalities.audio.beats.model import fbank
from zoo.audio_crops import load_waves
from zoo.evaluation import knn_accuracy, linear_probe
from zoo.hub import load

NOTE_TASKS = ("family", "pitch_class")


def layers_of(encoder, waves: list[torch.Tensor], batch_size: int) -> np.ndarray:
    """(N, L+1, D) mean-pooled hidden states of every layer of an audio encoder; `waves`
    are at the encoder's own sampling rate."""
    rate = encoder.processor.sampling_rate
    return encoder.embed(waves, layer="all", batch_size=batch_size, progress=False, sampling_rate=rate).numpy()


def add_probe_arguments(parser: argparse.ArgumentParser, family: str) -> None:
    """The options every audio probe script takes: checkpoints, seed, threads, batch, JSON."""
    parser.add_argument("--checkpoint", required=True, help=f"zoo name or folder of a {family} encoder")
    parser.add_argument("--compare", action="append", default=[], help=f"more {family} encoders to probe (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="random init of the baseline and probe seed")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="also write every number to this JSON file")


def encoders_to_probe(args: argparse.Namespace) -> dict:
    """--checkpoint and --compare loaded, then a random init of the first one's shape
    ("random init", seeded by --seed); --threads applied."""
    if args.threads:
        torch.set_num_threads(args.threads)
    encoders = {str(name): load(name) for name in [args.checkpoint, *args.compare]}
    torch.manual_seed(args.seed)
    encoders["random init"] = load(args.checkpoint, pretrained=False)
    return encoders


def logmel(waves: list[torch.Tensor]) -> np.ndarray:
    """Mean and std over time of BEATs' own 128-bin normalised fbank (256 values)."""
    rows = []
    for wave in waves:
        features = fbank(wave)
        rows.append(torch.cat([features.mean(0), features.std(0, unbiased=False)]).numpy())
    return np.stack(rows)


def note_splits(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Stratified boolean masks: test 20 %, and inside train a validation 20 % and the fit rest."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    fit, validation = train_test_split(train, test_size=0.2, stratify=labels[train], random_state=seed)
    masks = {}
    for name, rows in (("train", train), ("test", test), ("fit", fit), ("validation", validation)):
        masks[name] = np.isin(index, rows)
    return masks


def note_scores(features: np.ndarray, labels: np.ndarray, splits: dict[str, np.ndarray], seed: int) -> dict:
    train, test = splits["train"], splits["test"]
    return {"probe": linear_probe(features[train], labels[train], features[test], labels[test], seed=seed),
            "knn": knn_accuracy(features[train], labels[train], features[test], labels[test], k=20)}


def evaluate_notes(name: str, features: np.ndarray, table, seed: int) -> dict:
    """Last-layer and validation-chosen best-layer scores per notes task; features (N, L+1, D) or (N, D)."""
    row = {"features": name}
    for task in NOTE_TASKS:
        labels = table[task].to_numpy()
        splits = note_splits(table["family"].to_numpy(), seed)
        if features.ndim == 2:
            row[task] = note_scores(features, labels, splits, seed)
            continue
        fit, validation = splits["fit"], splits["validation"]
        accuracy = [linear_probe(features[fit, i], labels[fit], features[validation, i], labels[validation],
                                 seed=seed) for i in range(features.shape[1])]
        chosen = int(np.argmax(accuracy))
        row[task] = {"last": note_scores(features[:, -1], labels, splits, seed),
                     "best": {**note_scores(features[:, chosen], labels, splits, seed), "layer": chosen}}
    return row


def notes_markdown(rows: list[dict]) -> str:
    lines = ["| features | family probe | pitch-class probe | family k-NN | pitch-class k-NN |",
             "|---|---|---|---|---|"]
    for row in rows:
        variants = ("last", "best") if "last" in row["family"] else (None,)
        for variant in variants:
            cells = []
            for metric in ("probe", "knn"):
                for task in NOTE_TASKS:
                    values = row[task][variant] if variant else row[task]
                    layer = f" (L{values['layer']})" if "layer" in values and metric == "probe" else ""
                    cells.append(f"{100 * values[metric]:.1f}{layer}")
            label = row["features"] + (f", {variant} layer" if variant else "")
            lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_probe_arguments(parser, "BEATs")
    parser.add_argument("--fsdd", help="FSDD recordings folder ({digit}_{speaker}_{index}.wav)")
    parser.add_argument("--notes", help="rendered notes folder (notes.csv)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    encoders = encoders_to_probe(args)
    first = encoders[str(args.checkpoint)]
    results: dict = {"checkpoints": list(encoders)}
    if args.fsdd:
        data = Recordings.from_folder(Path(args.fsdd))
        waves = load_waves(data.files, first.processor)
        rows, per_layer = [], {}
        for name, encoder in encoders.items():
            model_rows, per_layer[name] = evaluate_encoder(name, layers_of(encoder, waves, args.batch_size),
                                                           data, args.seed)
            rows.extend(model_rows)
        features = logmel(waves)
        rows.append({"features": "log-mel mean+std (256)", "dim": features.shape[1],
                     **{task: score(features, data, task, args.seed) for task in ("digit", "speaker")}})
        results["fsdd"] = {"rows": rows, "per_layer": per_layer}
        print(f"FSDD: {data.split('train').sum()} train / {data.split('test').sum()} test recordings\n")
        print(markdown(rows))
        for name, table in per_layer.items():
            print()
            print(per_layer_markdown(name, table))
    if args.notes:
        from modalities.audio.rendering import load_notes

        files, table = load_notes(args.notes)
        waves = load_waves(files, first.processor)
        rows = [evaluate_notes(name, layers_of(encoder, waves, args.batch_size), table, args.seed)
                for name, encoder in encoders.items()]
        rows.append(evaluate_notes("log-mel mean+std (256)", logmel(waves), table, args.seed))
        results["notes"] = rows
        print(f"\nNotes: {len(files)} rendered notes, {table['family'].nunique()} families\n")
        print(notes_markdown(rows))
    print(f"\n{time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
