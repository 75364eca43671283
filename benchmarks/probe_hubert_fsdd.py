"""Linear-probe a HuBERT checkpoint on FSDD digits and speakers, against baselines.

FSDD (Free Spoken Digit Dataset) files are `{digit}_{speaker}_{index}.wav`; takes 0-4 of
each speaker and digit are the test split (300 recordings), takes 5-49 the train split
(2700). Every feature set is mean-pooled over frames into one vector per recording and
scored with `zoo.evaluation.linear_probe` (standardised features + logistic regression)
and `knn_accuracy` (cosine, k=20), trained on the train split and tested on the test
split. The "best layer" of an encoder is chosen per task on a validation split (takes
5-9, probe fitted on takes 10-49), never on the test split.

Feature sets: the checkpoint (last and best layer), a randomly initialised encoder of the
same config (same layers), and classic features: mean MFCC (13 + deltas + delta-deltas),
mean and std of MFCC, mean log-mel (40 bins).

    python benchmarks/probe_hubert_fsdd.py --checkpoint zoo/checkpoints/hubert-tiny-fsdd \\
        --data ../shared/data/fsdd/recordings
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modalities.speech.hubert.model import HubertEncoder
from modalities.speech.hubert.pretrain import frame_geometry, mfcc_features
from zoo.audio_crops import list_audio_files, load_waves
from zoo.evaluation import knn_accuracy, linear_probe, rankme
from zoo.hub import load

TASKS = ("digit", "speaker")
TEST_TAKES = range(0, 5)
VALIDATION_TAKES = range(5, 10)


@dataclass
class Recordings:
    """FSDD file names parsed into labels and splits."""

    files: list[Path]
    digit: np.ndarray
    speaker: np.ndarray
    take: np.ndarray

    @classmethod
    def from_folder(cls, folder: Path) -> "Recordings":
        files = list_audio_files(folder)
        parts = [path.stem.split("_") for path in files]
        return cls(files, np.array([int(p[0]) for p in parts]), np.array([p[1] for p in parts]),
                   np.array([int(p[2]) for p in parts]))

    def split(self, name: str) -> np.ndarray:
        """Boolean row mask of "test", "train" (all but test), "validation" or "fit" (train minus validation)."""
        test = np.isin(self.take, TEST_TAKES)
        validation = np.isin(self.take, VALIDATION_TAKES)
        return {"test": test, "train": ~test, "validation": validation, "fit": ~test & ~validation}[name]

    def labels(self, task: str) -> np.ndarray:
        return getattr(self, task)


def encoder_layers(encoder: HubertEncoder, waves: list[torch.Tensor], batch_size: int) -> np.ndarray:
    """(N, L+1, D) mean-pooled hidden states of every layer."""
    return encoder.embed(waves, layer="all", pool="mean", batch_size=batch_size, progress=False,
                         sampling_rate=encoder.processor.sampling_rate).numpy()


def classic_features(waves: list[torch.Tensor], rate: int, field: int, hop: int) -> dict[str, np.ndarray]:
    """Mean MFCC, mean+std MFCC and mean log-mel per recording."""
    import torchaudio.compliance.kaldi as kaldi

    mfcc = [mfcc_features(wave, rate, field, hop) for wave in waves]
    logmel = [kaldi.fbank(wave[None], sample_frequency=rate, num_mel_bins=40, dither=0.0) for wave in waves]
    return {
        "MFCC mean (39)": np.stack([m.mean(0).numpy() for m in mfcc]),
        "MFCC mean+std (78)": np.stack([torch.cat([m.mean(0), m.std(0, unbiased=False)]).numpy() for m in mfcc]),
        "log-mel mean (40)": np.stack([m.mean(0).numpy() for m in logmel]),
    }


def score(features: np.ndarray, data: Recordings, task: str, seed: int) -> dict[str, float]:
    """Probe and k-NN test accuracy (fitted on the train split) and RankMe of the train embeddings."""
    train, test, labels = data.split("train"), data.split("test"), data.labels(task)
    return {
        "probe": linear_probe(features[train], labels[train], features[test], labels[test], seed=seed),
        "knn": knn_accuracy(features[train], labels[train], features[test], labels[test], k=20),
        "rankme": rankme(features[train]),
    }


def evaluate_encoder(name: str, layers: np.ndarray, data: Recordings, seed: int) -> tuple[list[dict], dict]:
    """Rows for the last layer and the best layer, and every layer's validation and test accuracy.

    The best layer of each task is the one whose probe (fitted on the fit split) is most
    accurate on the validation split; ties go to the lower layer.
    """
    fit, validation = data.split("fit"), data.split("validation")
    last = layers.shape[1] - 1
    last_row = {"features": f"{name}, last layer ({last})", "dim": layers.shape[2]}
    best_row = {"features": f"{name}, best layer", "dim": layers.shape[2]}
    per_layer = {}
    for task in TASKS:
        labels = data.labels(task)
        validation_accuracy = [
            linear_probe(layers[fit, i], labels[fit], layers[validation, i], labels[validation], seed=seed)
            for i in range(layers.shape[1])
        ]
        scores = [score(layers[:, i], data, task, seed) for i in range(layers.shape[1])]
        chosen = int(np.argmax(validation_accuracy))
        last_row[task] = scores[last]
        best_row[task] = {**scores[chosen], "layer": chosen}
        per_layer[task] = {"validation": validation_accuracy, "test": [s["probe"] for s in scores]}
    return [last_row, best_row], per_layer


def markdown(rows: list[dict]) -> str:
    lines = [
        "| features | dim | digit probe | speaker probe | digit k-NN | speaker k-NN | RankMe (digit features) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for metric in ("probe", "knn"):
            for task in TASKS:
                layer = row[task].get("layer")
                suffix = f" (L{layer})" if layer is not None and metric == "probe" else ""
                cells.append(f"{100 * row[task][metric]:.1f}{suffix}")
        lines.append(f"| {row['features']} | {row['dim']} | {' | '.join(cells)} | {row['digit']['rankme']:.1f} |")
    return "\n".join(lines)


def per_layer_markdown(name: str, per_layer: dict) -> str:
    count = len(per_layer["digit"]["test"])
    lines = [f"| {name}: layer | " + " | ".join(str(i) for i in range(count)) + " |",
             "|---|" + "---|" * count]
    for task in TASKS:
        for split in ("validation", "test"):
            values = " | ".join(f"{100 * v:.1f}" for v in per_layer[task][split])
            lines.append(f"| {task} probe, {split} | {values} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="zoo name, Hub repo id or folder of a HuBERT encoder")
    parser.add_argument("--data", required=True, help="FSDD recordings folder ({digit}_{speaker}_{index}.wav)")
    parser.add_argument("--seed", type=int, default=0, help="random init of the baseline encoder and probe seed")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="recordings per forward pass; 1 is fastest on CPU, where a group-norm front end "
                             "runs each length apart anyway (default: 1)")
    parser.add_argument("--json", help="also write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    encoder = load(args.checkpoint)
    torch.manual_seed(args.seed)
    random_encoder = load(args.checkpoint, pretrained=False)
    data = Recordings.from_folder(Path(args.data))
    waves = load_waves(data.files, encoder.processor)
    field, hop = frame_geometry(encoder.config)

    rows, per_layer = [], {}
    for name, model in (("pretrained", encoder), ("random init", random_encoder)):
        layers = encoder_layers(model, waves, args.batch_size)
        model_rows, per_layer[name] = evaluate_encoder(name, layers, data, args.seed)
        rows.extend(model_rows)
    for name, features in classic_features(waves, encoder.processor.sampling_rate, field, hop).items():
        rows.append({"features": name, "dim": features.shape[1],
                     **{task: score(features, data, task, args.seed) for task in TASKS}})

    print(f"FSDD: {data.split('train').sum()} train / {data.split('test').sum()} test recordings; "
          f"checkpoint {args.checkpoint}; {time.monotonic() - started:.0f} s\n")
    print(markdown(rows))
    for name, table in per_layer.items():
        print()
        print(per_layer_markdown(name, table))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "per_layer": per_layer}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
