"""Frozen-feature evaluation of a GMML checkpoint on CIFAR-10: k-NN and linear probe, against a
random-init ViT of the same shape and against raw pixels.

Data: ../shared/data/cifar10 (Hugging Face parquet, see ../shared/data/MANIFEST.md): the
50000 training images and the 5000 test images stored there (the first 500 per class of
the original 10000; lossy JPEG, so numbers are not strictly comparable with published ones).
`--train-limit N` keeps a stratified, seeded N of the training images for quick runs.

Features: every image goes through the checkpoint's own processor (for a 32 px checkpoint:
resize to 36, centre crop 32, normalise, as DINO-style evaluation does), then the encoder's
final LayerNorm output is pooled two ways from one forward pass: the cls token and the mean
of the patch tokens. Raw pixels are the 3072 values of the 32 x 32 image in [0, 1],
standardised with the training set's mean and std. Scores (zoo.evaluation):
`knn_accuracy` (cosine, k=20, majority vote with ties broken by summed similarity: the zoo
has no DINO-style temperature-weighted vote) and `linear_probe` (standardised features,
L-BFGS logistic regression). Embeddings are cached in `--output` and reused when the
weights (hashed, not named), processor and image selection are unchanged; so are the
raw-pixel scores, whose 3072-d probe is the slow part of a full run.

`--reconstructions grid.png` also saves a grid of test images: clean crops, the same crops
corrupted as in pretraining (settings from the run's args.json when found, seeded), and
the checkpoint's reconstructions (de-normalised, clamped to [0, 1]).

    python benchmarks/probe_gmml_cifar10.py --checkpoint runs/gmml-cifar/encoder \\
        --output runs/probe_gmml_cifar10 --reconstructions runs/probe_gmml_cifar10/recons.png --json runs/probe.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from common import markdown_table

from modalities.vision.gmml.model import GmmlEncoder
from modalities.vision.image_sets import EncodedImages
from zoo.hub import load
from zoo.io import atomic_write_text, atomic_write_with

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"
K = 20
POOLS = ("cls", "mean")
#: images per forward pass when embedding
BATCH = 256
#: side of each cell of the reconstruction grid (CIFAR's 32 px upscaled 4x, nearest)
CELL = 128


def read_split(folder: Path, split: str) -> tuple[EncodedImages, np.ndarray]:
    """The encoded images and integer labels of `split` (train or test) of the parquet folder."""
    import pyarrow.parquet as pq

    from modalities.vision.image_sets import parquet_images

    files = sorted(Path(folder).glob(f"{split}-*.parquet"))
    if not files:
        raise SystemExit(f"no {split}-*.parquet in {folder}; pass --data ../shared/data/cifar10")
    labels = np.concatenate([pq.read_table(file, columns=["label"]).column("label").to_numpy() for file in files])
    return parquet_images(files), labels.astype(np.int64)


def stratified_subset(labels: np.ndarray, limit: Optional[int], seed: int) -> np.ndarray:
    """Sorted indices of `limit` items, an equal share per class (seeded); all of them without a limit."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    share = limit // len(classes)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:share] for c in classes]))


def decode(images: EncodedImages, indices: np.ndarray) -> list[torch.Tensor]:
    """(3, 32, 32) float images in [0, 1], in `indices` order."""
    return [images.load(int(index)) for index in indices]


@torch.no_grad()
def embed_pools(encoder: GmmlEncoder, images: list[torch.Tensor], batch_size: int = BATCH) -> dict[str, np.ndarray]:
    """{"cls", "mean"}: (N, D) rows from one forward pass per batch (what `embed(pool=...)`
    gives for each pool, without running the encoder twice)."""
    encoder.eval()
    rows: dict[str, list[torch.Tensor]] = {pool: [] for pool in POOLS}
    for start in range(0, len(images), batch_size):
        pixels = encoder.preprocess(images[start : start + batch_size])["pixel_values"]
        last = encoder(pixels).last_hidden_state
        for pool in POOLS:
            rows[pool].append(encoder.pool(last, pool))
    return {pool: torch.cat(parts).float().numpy() for pool, parts in rows.items()}


def fingerprint(encoder: GmmlEncoder) -> str:
    """What decides an encoder's embeddings: the weights themselves (a registry name or a
    folder may hold other weights tomorrow), config and processor. Hashed once per encoder
    and shared by its splits."""
    digest = hashlib.sha256()
    for key, tensor in sorted(encoder.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for part in (json.dumps(encoder.config.to_dict(), sort_keys=True, default=str),
                 json.dumps(encoder.processor.to_dict(), sort_keys=True, default=str)):
        digest.update(part.encode())
    return digest.hexdigest()


def cached_embeddings(encoder: GmmlEncoder, encoder_fingerprint: str, images: EncodedImages, indices: np.ndarray,
                      cache: Path, name: str) -> tuple[dict[str, np.ndarray], Optional[float]]:
    """Pooled embeddings of `indices`, from `cache/<name>-<key>.npz` when present, the key
    hashing the encoder's fingerprint and the image selection; also the seconds spent
    embedding, None when they came from the cache (a flag, not a timing, so that fast
    embedding is never mistaken for a cache hit)."""
    key = hashlib.sha256(encoder_fingerprint.encode() + indices.tobytes()).hexdigest()[:16]
    path = cache / f"{name}-{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return {pool: stored[pool] for pool in POOLS}, None
    started = time.perf_counter()
    pools = embed_pools(encoder, decode(images, indices))
    seconds = time.perf_counter() - started
    atomic_write_with(path, lambda tmp: save_npz(tmp, pools))
    return pools, seconds


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to exactly `path` (given a name, numpy would append .npz to the temporary file)."""
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def raw_pixels(images: EncodedImages, indices: np.ndarray) -> np.ndarray:
    """(N, 3072) pixels in [0, 1], channel-major."""
    return np.stack([image.reshape(-1).numpy() for image in decode(images, indices)])


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets scaled with the training set's per-feature mean and std (k-NN sees no other scaling)."""
    mean, std = train.mean(0), train.std(0) + 1e-8
    return (train - mean) / std, (test - mean) / std


def score(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          seed: int, max_iter: int) -> dict[str, Any]:
    """k-NN and linear-probe accuracy of one feature set, with the probe's wall time."""
    from zoo.evaluation import knn_accuracy, linear_probe

    started = time.perf_counter()
    knn = knn_accuracy(train_x, train_y, test_x, test_y, k=K)
    linear = linear_probe(train_x, train_y, test_x, test_y, seed=seed, max_iter=max_iter)
    seconds = round(time.perf_counter() - started, 1)
    print(f"[probe] {name}: k-NN {100 * knn:.1f} %, linear {100 * linear:.1f} % ({seconds} s)", file=sys.stderr,
          flush=True)
    return {"features": name, "dim": int(train_x.shape[1]), "knn": knn, "linear": linear, "probe_seconds": seconds}


def pixel_scores(args: argparse.Namespace, train_images: EncodedImages, train_idx: np.ndarray, train_y: np.ndarray,
                 test_images: EncodedImages, test_idx: np.ndarray, test_y: np.ndarray) -> dict[str, Any]:
    """Scores of standardised raw pixels, cached in the run folder: they do not depend on the
    checkpoint, and their probe is the slow part of a full run (about 10 minutes, 7 GB here)."""
    digest = hashlib.sha256(train_idx.tobytes() + test_idx.tobytes() + f"{args.seed} {args.max_iter}".encode())
    path = args.output / f"pixels-{digest.hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    pixels = standardise(raw_pixels(train_images, train_idx), raw_pixels(test_images, test_idx))
    row = score("raw pixels (standardised)", pixels[0], train_y, pixels[1], test_y, args.seed, args.max_iter)
    atomic_write_text(path, json.dumps(row))
    return row


def corruption_settings(checkpoint: str) -> dict[str, Any]:
    """The pretraining corruption of the run that made `checkpoint` (its args.json beside the
    encoder folder), else `zoo pretrain gmml`'s defaults."""
    from modalities.vision.gmml.corruption import parse_drop_types
    from modalities.vision.gmml.pretrain import CorruptionConfig

    settings = CorruptionConfig()
    args_file = Path(checkpoint).resolve().parent / "args.json"
    if args_file.is_file():
        saved = json.loads(args_file.read_text())
        settings = CorruptionConfig(saved.get("drop_perc", settings.drop_perc),
                                    saved.get("drop_type", settings.drop_type),
                                    saved.get("drop_replace", settings.replace_perc),
                                    saved.get("drop_align", settings.align))
    return {"drop_perc": settings.drop_perc, "drop_types": parse_drop_types(settings.drop_type),
            "replace_perc": settings.replace_perc, "align": settings.align}


@torch.no_grad()
def reconstruction_rows(encoder: GmmlEncoder, images: list[torch.Tensor], settings: dict[str, Any],
                        seed: int) -> list[torch.Tensor]:
    """Clean, corrupted and reconstructed crops (each (N, 3, S, S) in [0, 1])."""
    from modalities.vision.gmml.corruption import corrupt_batch

    clean = encoder.preprocess(images)["pixel_values"]
    corrupted, _ = corrupt_batch(clean, np.random.default_rng(seed), **settings)
    rebuilt = encoder.eval().reconstruct(corrupted)
    mean = torch.tensor(encoder.processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(encoder.processor.image_std).view(1, 3, 1, 1)
    return [(row * std + mean).clamp(0.0, 1.0) for row in (clean, corrupted, rebuilt)]


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Rows of images as one PNG (cells upscaled to CELL px, nearest), written atomically."""
    from PIL import Image

    grid = torch.cat([torch.cat(list(row), dim=-1) for row in rows], dim=-2)
    scale = max(1, CELL // rows[0].shape[-1])
    grid = grid.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    array = (grid.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    atomic_write_with(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def markdown(report: dict[str, Any]) -> str:
    rows = [[row["features"], row["dim"], f"{100 * row['knn']:.1f}", f"{100 * row['linear']:.1f}"]
            for row in report["results"]]
    return markdown_table(["features", "dim", f"k-NN (k={K}, cosine) %", "linear probe %"], rows)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="zoo name or folder of a GMML encoder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 parquet folder")
    parser.add_argument("--output", type=Path, default=Path("runs/probe_gmml_cifar10"), help="run folder (cache)")
    parser.add_argument("--train-limit", type=int, help="stratified, seeded subset of the 50000 training images")
    parser.add_argument("--test-limit", type=int, help="stratified, seeded subset of the test images")
    parser.add_argument("--seed", type=int, default=0, help="subsets, random init, probe and corruption")
    parser.add_argument("--max-iter", type=int, default=1000, help="L-BFGS iterations of the linear probe")
    parser.add_argument("--no-random-init", action="store_true", help="skip the random-init baseline")
    parser.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel baseline")
    parser.add_argument("--reconstructions", type=Path, metavar="PNG", help="save a reconstruction grid here")
    parser.add_argument("--grid", type=int, default=8, help="test images in the grid (default: 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--json", type=Path, help="also write every number here")
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace, encoder: GmmlEncoder) -> dict[str, Any]:
    """Embed, score every feature set, and collect the report."""
    train_images, train_labels = read_split(args.data, "train")
    test_images, test_labels = read_split(args.data, "test")
    train_idx = stratified_subset(train_labels, args.train_limit, args.seed)
    test_idx = stratified_subset(test_labels, args.test_limit, args.seed)
    train_y, test_y = train_labels[train_idx], test_labels[test_idx]
    encoders = {"checkpoint": encoder}
    if not args.no_random_init:
        torch.manual_seed(args.seed)
        encoders["random init"] = load(args.checkpoint, pretrained=False)
    results, timings = [], {}
    for name, model in encoders.items():
        slug = name.replace(" ", "-")
        weights = fingerprint(model)
        train, train_s = cached_embeddings(model, weights, train_images, train_idx, args.output, f"{slug}-train")
        test, test_s = cached_embeddings(model, weights, test_images, test_idx, args.output, f"{slug}-test")
        spent = [seconds for seconds in (train_s, test_s) if seconds is not None]
        timings[f"embed {name} (s)"] = round(sum(spent), 1) if spent else "cached"
        took = f"embedded in {sum(spent):.0f} s" if spent else "from the cache"
        print(f"[probe] {name}: {len(train_idx)} + {len(test_idx)} images {took}", file=sys.stderr, flush=True)
        for pool in POOLS:
            results.append(score(f"{name} {pool}", train[pool], train_y, test[pool], test_y, args.seed, args.max_iter))
    if not args.no_pixels:
        results.append(pixel_scores(args, train_images, train_idx, train_y, test_images, test_idx, test_y))
    return {"checkpoint": str(args.checkpoint), "train_images": len(train_idx), "test_images": len(test_idx),
            "test_images_available": len(test_labels), "processor": encoder.processor.to_dict(),
            "knn": f"k={K}, cosine, majority vote (ties: summed similarity)", "timings": timings,
            "results": results}


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    encoder = load(args.checkpoint).eval()
    if not isinstance(encoder, GmmlEncoder):
        raise SystemExit(f"{args.checkpoint} is a {type(encoder).__name__}, not a GMML encoder")
    report = evaluate(args, encoder)
    if args.reconstructions:
        test_images, _ = read_split(args.data, "test")
        spread = np.linspace(0, len(test_images) - 1, args.grid).round().astype(int)  # across the classes
        rows = reconstruction_rows(encoder, decode(test_images, spread),
                                   corruption_settings(args.checkpoint), args.seed)
        save_grid(rows, args.reconstructions)
        report["reconstructions"] = str(args.reconstructions)
    report["seconds"] = round(time.perf_counter() - started)
    print(f"CIFAR-10: {report['train_images']} train / {report['test_images']} test images, "
          f"{report['seconds']} s\n")
    print(markdown(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
