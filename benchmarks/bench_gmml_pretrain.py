"""GMML pretraining throughput: images per second of batch making (decode, two augmented
crops, corruption), of model steps on batches made beforehand (forward + backward + AdamW,
what the device alone sustains), and of whole training steps (both), on CIFAR-10's
training parquet at 32 px with patch 4.

Each size is measured over `--steps` steps after `--warmup` steps, in this process, with
`--threads` torch threads and `--workers` DataLoader processes making batches; an image
counts once although it gives two crops. `--device cuda --bf16` trains as `zoo pretrain
gmml --device cuda --bf16` does.

    python benchmarks/bench_gmml_pretrain.py --markdown
    python benchmarks/bench_gmml_pretrain.py --device cuda --bf16 --workers 14 --batch-size 256 --markdown
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
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


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def images_per_second(run, count: int, batch_size: int, device: str) -> float:
    """Images per second of `count` calls of `run`, each on one batch."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(count):
        run()
    synchronize(device)
    return count * batch_size / (time.perf_counter() - started)


def measure(images, size: dict, args: argparse.Namespace) -> tuple[float, float, float]:
    """(images/s of batch making, of model steps on ready batches, of whole training steps)."""
    config = GmmlConfig(image_size=32, patch_size=4, drop_path_rate=0.1, reconstruction_head=True,
                        recons_blocks=default_recons_blocks(size["depth"]), **size)
    encoder = GmmlEncoder(config)
    processor = encoder.processor
    batches = GmmlBatches(images, args.batch_size, 32, processor.image_mean, processor.image_std,
                          workers=args.workers)
    train_config = TrainConfig(steps=3 * args.steps + args.warmup, device=args.device, bf16=args.bf16)
    trainer = Trainer(GmmlPretraining(encoder), batches, Path(tempfile.gettempdir()), train_config)
    trainer.objective.train()
    stream = iter(batches)
    ready = [next(stream) for _ in range(args.warmup)]
    making = images_per_second(lambda: ready.append(next(stream)), args.steps, args.batch_size, "cpu")
    for batch in ready[:args.warmup]:
        trainer.train_step(batch)
    cycle = itertools.cycle(ready)
    model = images_per_second(lambda: trainer.train_step(next(cycle)), args.steps, args.batch_size, args.device)
    whole = images_per_second(lambda: trainer.train_step(next(stream)), args.steps, args.batch_size, args.device)
    return making, model, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(CIFAR), help="CIFAR-10 parquet folder")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (two crops each)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader processes making batches")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows here (images/s per size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = open_images(args.data, "train")
    rows, measured = [], {}
    for name, size in SIZES.items():
        making, model, whole = measure(images, size, args)
        measured[name] = {"batch_making": making, "model_steps": model, "training": whole}
        rows.append([name, args.batch_size, f"{making:.0f}", f"{model:.0f}", f"{whole:.0f}"])
    if args.json:
        args.json.write_text(json.dumps({"args": {**vars(args), "json": str(args.json)}, "images_per_second": measured},
                                        indent=2))
    info = machine_info(args.threads)
    device = args.device + (" bf16" if args.bf16 else "")
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {args.threads} thread(s), "
          f"{args.workers} worker(s), device {device}, load {info['load_average_1min']:.2f}; "
          "CIFAR-10 at 32 px, patch 4, two crops per image")
    print(markdown_table(["size", "images/step", "batch making img/s", "model steps img/s", "training img/s"],
                         rows))


if __name__ == "__main__":
    main()
