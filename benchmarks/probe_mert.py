"""Linear-probe MERT checkpoints on rendered notes (instrument family, pitch class), against
a random-init MERT of the same shape, log-mel and CQT features.

Notes: the NSynth-like set that `python -m modalities.audio.rendering notes --sampling-rate
24000` makes (notes.csv), split as probe_beats.py does (stratified 80/20 by family, seeded;
the best layer is chosen on a 20 % validation part of the train split). Every feature set is
mean-pooled over time into one vector per note and scored with `zoo.evaluation.linear_probe`
and `knn_accuracy` (cosine, k=20).

`--teacher-clips` also scores the acoustic teacher itself: the residual k-means of `zoo
pretrain mert --teacher kmeans` (its first codebook, fitted on those clips with the same
seed, clusters and frames, so it is a one-codebook run's own teacher) assigns each note's frames a code,
and the note's histogram of codes is the feature; one row per `--chroma-weights` value.

    python benchmarks/probe_mert.py --checkpoint runs/mert-tiny/encoder --notes runs/notes24k --json runs/probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from probe_beats import add_probe_arguments, encoders_to_probe, evaluate_notes, layers_of, notes_markdown

from modalities.audio.mert.model import CQT_OCTAVES, MertEncoder, constant_q
from modalities.audio.mert.pretrain import feature_weights, teacher_features
from modalities.speech.hubert.pretrain import fit_clusters
from zoo.audio_crops import list_audio_files, load_waves

LOG_MEL_BINS = 128
CQT_BINS_PER_OCTAVE = 12


def mean_std(frames: torch.Tensor) -> np.ndarray:
    return torch.cat([frames.mean(0), frames.std(0, unbiased=False)]).numpy()


def logmel(waves: list[torch.Tensor], rate: int) -> np.ndarray:
    """Mean and std over time of a 128-bin log-mel (Kaldi fbank, 25 / 10 ms): 256 values."""
    import torchaudio.compliance.kaldi as kaldi

    return np.stack([mean_std(kaldi.fbank(wave[None], sample_frequency=rate, num_mel_bins=LOG_MEL_BINS,
                                          dither=0.0)) for wave in waves])


def log_cqt(waves: list[torch.Tensor], rate: int, hop: int) -> np.ndarray:
    """Mean and std over time of a log-magnitude CQT, 7 octaves x 12 bins from 32.7 Hz: 168 values."""
    cqt = constant_q(rate, hop, CQT_OCTAVES * CQT_BINS_PER_OCTAVE)
    with torch.no_grad():
        return np.stack([mean_std(torch.log1p(100 * cqt(wave[None])[0].T)) for wave in waves])


def teacher_rows(args: argparse.Namespace, encoder: MertEncoder, waves: list[torch.Tensor], table) -> list[dict]:
    """Scores of the k-means teacher's code histograms, one row per chroma weight."""
    geometry = (encoder.processor.sampling_rate, encoder.config.receptive_field, encoder.config.frame_hop)
    clips = teacher_features(load_waves(list_audio_files(args.teacher_clips), encoder.processor), *geometry)
    notes = teacher_features(waves, *geometry)
    rows = []
    for weight in args.chroma_weights:
        clusters = fit_clusters(clips, args.clusters, args.kmeans_frames, args.seed, feature_weights(weight))
        histograms = np.stack([np.bincount(clusters.assign(note).numpy(), minlength=args.clusters) / len(note)
                               for note in notes])
        name = f"k-means teacher, chroma weight {weight:g}: code histogram ({args.clusters})"
        rows.append(evaluate_notes(name, histograms, table, args.seed))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_probe_arguments(parser, "MERT")
    parser.add_argument("--notes", required=True, help="rendered notes folder (notes.csv)")
    parser.add_argument("--teacher-clips", help="also score the k-means teacher fitted on this clips folder")
    parser.add_argument("--chroma-weights", type=lambda text: [float(v) for v in text.split(",")], default=[1.0],
                        help="comma-separated --chroma-weight values of the teachers scored (default: 1)")
    parser.add_argument("--clusters", type=int, default=256, help="teacher codes, as the run's --clusters")
    parser.add_argument("--kmeans-frames", type=int, default=50_000, help="as the run's --kmeans-frames")
    args = parser.parse_args(argv)
    from modalities.audio.rendering import load_notes

    started = time.monotonic()
    encoders = encoders_to_probe(args)
    first = encoders[str(args.checkpoint)]
    files, table = load_notes(args.notes)
    rate = first.processor.sampling_rate
    waves = load_waves(files, first.processor)
    rows = [evaluate_notes(name, layers_of(encoder, waves, args.batch_size), table, args.seed)
            for name, encoder in encoders.items()]
    rows.append(evaluate_notes(f"log-mel mean+std ({2 * LOG_MEL_BINS})", logmel(waves, rate), table, args.seed))
    bins = CQT_OCTAVES * CQT_BINS_PER_OCTAVE
    rows.append(evaluate_notes(f"log-CQT mean+std ({2 * bins})", log_cqt(waves, rate, first.config.frame_hop),
                               table, args.seed))
    if args.teacher_clips:
        rows += teacher_rows(args, first, waves, table)
    print(f"Notes: {len(files)} rendered notes at {rate} Hz, {table['family'].nunique()} families\n")
    print(notes_markdown(rows))
    print(f"\n{time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoints": list(encoders), "notes": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
