"""GMML pretraining throughput on CPU: images per second of batch making (decode, two
augmented crops, corruption) and of whole training steps (batch + forward + backward +
AdamW), on CIFAR-10's training parquet at 32 px with patch 4.

Each size is measured over `--steps` steps after `--warmup` steps, in this process, with
`--threads` torch threads; an image counts once although it gives two crops.

    python benchmarks/bench_gmml_pretrain.py --markdown
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import machine_info, markdown_table

from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
from modalities.vision.gmml.pretrain import GmmlBatches, GmmlPretraining, default_recons_blocks
from modalities.vision.image_sets import open_images
from zoo.training import TrainConfig, Trainer

SIZES = {
    "micro (4 x 96)": dict(hidden_size=96, depth=4, num_heads=3),
    "vit-tiny (12 x 192)": dict(hidden_size=192, depth=12, num_heads=3),
}
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def measure(images, size: dict, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """(images/s of batch making alone, images/s of training steps)."""
    config = GmmlConfig(image_size=32, patch_size=4, drop_path_rate=0.1, reconstruction_head=True,
                        recons_blocks=default_recons_blocks(size["depth"]), **size)
    encoder = GmmlEncoder(config)
    processor = encoder.processor
    batches = GmmlBatches(images, batch_size, 32, processor.image_mean, processor.image_std)
    started = time.perf_counter()
    for index in range(steps):
        batches[index]
    making = steps * batch_size / (time.perf_counter() - started)
    trainer = Trainer(GmmlPretraining(encoder), batches, Path("/tmp"), TrainConfig(steps=steps + warmup))
    trainer.objective.train()
    stream = iter(batches)
    for _ in range(warmup):
        trainer.train_step(next(stream))
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(stream))
    return making, steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(CIFAR), help="CIFAR-10 parquet folder")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (two crops each)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = open_images(args.data, "train")
    rows = []
    for name, size in SIZES.items():
        making, training = measure(images, size, args.batch_size, args.steps, args.warmup)
        rows.append([name, args.batch_size, f"{making:.0f}", f"{training:.0f}"])
    info = machine_info(args.threads)
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {args.threads} thread(s), "
          f"load {info['load_average_1min']:.2f}; CIFAR-10 at 32 px, patch 4, two crops per image")
    print(markdown_table(["size", "images/step", "batch making img/s", "training img/s"], rows))


if __name__ == "__main__":
    main()
