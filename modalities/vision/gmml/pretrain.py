"""GMML pretraining (`zoo pretrain gmml`): group masked model learning, as in Atito, Awais and
Kittler, "GMML is All you Need" (https://arxiv.org/abs/2205.14986) and Sara-Ahmed/GMML.

Each image gives `views` (2) random crops (augmentation.py, GMML's settings). Each crop is
corrupted (corruption.py): 50-75 % of its pixels in random rectangles of Gaussian noise,
and half the crops are instead given rectangles pasted from another crop of the batch. The
ViT reads the corrupted crop; the reconstruction head, on the final LayerNorm of the mean of
blocks `recons_blocks` (6, 8, 10, 12), must give back the clean normalised crop:

    loss = mean over corrupted pixels p and channels c of |reconstruction[c, p] - clean[c, p]|

(upstream's `drop_only=1`; `--all-pixels` averages over every pixel). Optimisation is
upstream's: AdamW (betas 0.9 / 0.999), lr warmup then cosine to 1e-6, weight decay cosine
0.04 -> 0.4 on weight matrices, gradient clipping at 3, drop path 0.1. The differences:
steps instead of epochs, global-norm clipping instead of DINO's per-tensor clipping, a
warmup whose first step has lr / warmup_steps (upstream's `cosine_scheduler` starts at 0 and
reaches the peak one step later), and the lr is not scaled by batch size / 256 for you
(upstream: 5e-4 * images / 256).

Batch i is a pure function of (seed, i), so a resumed run sees exactly the batches it would
have seen. A grey ViT (`in_channels=1`) pretrains on the luminance of its crops (grey images
stay grey); other channel counts cannot be read from image files and are refused.

Shapes: B images, V views, C = `in_channels` channels, S crop side.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from modalities.vision.augmentation import AugmentConfig, augment
from modalities.vision.gmml.corruption import corrupt_batch, parse_drop_types
from modalities.vision.gmml.model import VARIANTS, GmmlConfig, GmmlEncoder
from modalities.vision.gmml_pretrain_options import SHORT_VARIANTS
from modalities.vision.image_sets import ImageFiles, ImageSet, open_images
from modalities.vision.processing import IMAGE_CHANNELS, luminance
from zoo.config import parse_overrides
from zoo.errors import ConfigError
from zoo.outputs import PretrainOutput
from zoo.run_folders import CHECKPOINT_FILE, check_same_run, command_settings, run_input_files
from zoo.training import ErrorsAsValues, encoder_to_pretrain, raise_if_error, train_and_save, train_config_from_args

#: upstream's blocks for the reconstruction head of a 12-block ViT (1-based)
UPSTREAM_RECONS_BLOCKS = (6, 8, 10, 12)


@dataclasses.dataclass
class CorruptionConfig:
    """GMML's corruption settings (upstream's `--drop_perc`, `--drop_type`, `--drop_replace`, `--drop_align`)."""

    drop_perc: float = 0.75
    drop_type: str = "noise"
    replace_perc: float = 0.3
    align: int = 1

    def __post_init__(self) -> None:
        parse_drop_types(self.drop_type)
        if not 0 < self.drop_perc < 1:
            raise ConfigError(f"drop_perc={self.drop_perc}; use a share of pixels in (0, 1), upstream's is 0.75")
        if not 0 <= self.replace_perc < 1:
            raise ConfigError(f"drop_replace={self.replace_perc}; use a share in [0, 1), 0 turns pasting off")
        if self.align < 1:
            raise ConfigError(f"drop_align={self.align}; use 1 (free rectangles) or the patch size")


def reconstruction_loss(reconstruction: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor,
                        corrupted_only: bool = True) -> torch.Tensor:
    """L1 between (B, C, S, S) images, averaged over the (B, 1, S, S) corrupted pixels or over all."""
    error = (reconstruction.float() - clean.float()).abs()
    if not corrupted_only:
        return error.mean()
    weight = mask.to(error.dtype).expand_as(error)
    return (error * weight).sum() / weight.sum().clamp(min=1.0)


class GmmlPretraining(nn.Module):
    """The encoder (with its reconstruction head) and GMML's L1 reconstruction loss."""

    def __init__(self, encoder: GmmlEncoder, corrupted_only: bool = True) -> None:
        super().__init__()
        if not encoder.config.reconstruction_head:
            raise ConfigError("GMML pretraining needs an encoder built with reconstruction_head=True")
        encoder.config.check_recons_blocks()
        self.encoder, self.corrupted_only = encoder, corrupted_only

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        reconstruction = self.encoder.reconstruct(batch["corrupted"])
        loss = reconstruction_loss(reconstruction, batch["clean"], batch["mask"], self.corrupted_only)
        return PretrainOutput(loss=loss, logs={"corrupted": round(float(batch["mask"].float().mean()), 4)})


class GmmlBatches(torch.utils.data.Dataset):
    """Endless batches {"clean", "corrupted": (V * B, C, S, S), "mask": (V * B, 1, S, S)}, view-major.

    C is the number of `mean` (and `std`) values, the model's channels: 3, or 1 for a grey ViT,
    whose crops are augmented in colour and then turned to their luminance (`luminance`).

    Batch i takes the images at positions [i * B, (i + 1) * B) of the epoch orders (one seeded
    permutation per epoch, the last incomplete batch dropped, as upstream's `drop_last`) and
    draws its crops and corruption from a generator seeded by (seed, i). `state_dict()` counts
    the batches used, for the trainer's checkpoint. As a map-style Dataset (item i = batch i)
    it also runs in DataLoader workers.
    """

    def __init__(self, images: ImageSet, batch_size: int, image_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...], views: int = 2, corruption: CorruptionConfig = CorruptionConfig(),
                 augmentation: AugmentConfig = AugmentConfig(), seed: int = 0, workers: int = 0) -> None:
        if batch_size < 1 or views < 1:
            raise ConfigError(f"batch_size={batch_size}, views={views}; both must be at least 1")
        if len(images) < batch_size:
            raise ConfigError(f"{images.name} holds {len(images)} images, fewer than --batch-size {batch_size}; "
                              "lower the batch size or add images")
        check_channels_readable(len(mean))
        if len(std) != len(mean):
            raise ConfigError(f"mean {tuple(mean)} and std {tuple(std)} need one value per channel each")
        self.images, self.batch_size, self.image_size, self.views = images, batch_size, image_size, views
        self.channels = len(mean)
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
        self.corruption, self.augmentation = corruption, augmentation
        self.drop_types = parse_drop_types(corruption.drop_type)
        self.seed, self.workers = seed, workers
        self.batches_drawn = 0

    def settings(self) -> dict[str, Any]:
        """What decides the batches; a resumed run must use the same."""
        return {"seed": self.seed, "images": len(self.images), "batch_size": self.batch_size,
                "image_size": self.image_size, "views": self.views, "corruption": dataclasses.asdict(self.corruption),
                "augmentation": dataclasses.asdict(self.augmentation)}

    def state_dict(self) -> dict[str, Any]:
        return {"batches_drawn": self.batches_drawn, "settings": self.settings()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_run(state["settings"], self.settings(), "the checkpoint's image batches")
        self.batches_drawn = state["batches_drawn"]

    def positions(self, index: int) -> np.ndarray:
        """Indices of the images of batch `index`."""
        per_epoch = len(self.images) // self.batch_size
        epoch, offset = divmod(index, per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))
        return order[offset * self.batch_size : (offset + 1) * self.batch_size]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1, index])
        images = [self.images.load(int(i)) for i in self.positions(index)]
        clean, corrupted, masks = [], [], []
        for _ in range(self.views):
            crops = torch.stack([augment(image, self.image_size, self.augmentation, rng) for image in images])
            if self.channels == 1:
                crops = luminance(crops)
            crops = (crops - self.mean) / self.std
            broken, mask = corrupt_batch(crops, rng, self.corruption.drop_perc, self.drop_types,
                                         self.corruption.replace_perc, self.corruption.align)
            clean.append(crops)
            corrupted.append(broken)
            masks.append(mask)
        return {"clean": torch.cat(clean), "corrupted": torch.cat(corrupted), "mask": torch.cat(masks)}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.workers == 0:
            source = map(self.__getitem__, itertools.count(self.batches_drawn))
        else:
            # its own generator: the workers' seeds drawn from the global one would change the drop-path
            # masks of a resumed run (which starts a loader) from those of an uninterrupted one
            loader = torch.utils.data.DataLoader(ErrorsAsValues(self), batch_size=None, num_workers=self.workers,
                                                 sampler=itertools.count(self.batches_drawn),
                                                 generator=torch.Generator().manual_seed(self.seed))
            source = map(raise_if_error, loader)
        for batch in source:
            self.batches_drawn += 1
            yield batch


def check_channels_readable(channels: int) -> None:
    """Image files, parquet rows and MNIST hold grey, RGB or RGBA pixels: they give a grey or an RGB
    ViT its crops, but not a ViT of other channels."""
    if channels not in IMAGE_CHANNELS:
        raise ConfigError(f"in_channels={channels}: zoo pretrain gmml reads grey or colour images, which give "
                          f"{' or '.join(map(str, IMAGE_CHANNELS))} channels; pretrain a {channels}-channel ViT on "
                          "your own batches (GmmlPretraining), or use --set in_channels=1 or 3")


def default_recons_blocks(depth: int) -> tuple[int, ...]:
    """Upstream's (6, 8, 10, 12) for 12 blocks; for other depths the same relative places."""
    return tuple(sorted({max(1, round(block * depth / 12)) for block in UPSTREAM_RECONS_BLOCKS}))


def parse_blocks(text: str) -> tuple[int, ...]:
    """Upstream's '6-8-10-12' notation."""
    try:
        return tuple(int(part) for part in text.split("-"))
    except ValueError as err:
        raise ConfigError(f"--recons-blocks {text!r}; write 1-based block numbers joined by '-', e.g. 6-8-10-12") \
            from err


def encoder_config(args: argparse.Namespace) -> GmmlConfig:
    """The variant, GMML's drop path 0.1, the `--set` overrides, and the reconstruction head."""
    variant = SHORT_VARIANTS.get(args.variant or "tiny", args.variant)
    if variant not in VARIANTS:
        raise ConfigError(f"--variant {args.variant!r}; use one of {sorted(SHORT_VARIANTS)} or {sorted(VARIANTS)}")
    fields = {**VARIANTS[variant], "drop_path_rate": 0.1, **parse_overrides(args.overrides)}
    depth = fields.get("depth", GmmlConfig.depth)
    if args.recons_blocks:
        fields["recons_blocks"] = parse_blocks(args.recons_blocks)
    fields.setdefault("recons_blocks", default_recons_blocks(depth))
    return GmmlConfig.from_dict({**fields, "reconstruction_head": True})


def initial_encoder(args: argparse.Namespace) -> GmmlEncoder:
    """A random-init encoder of `--variant`, or the weights of `--init` to go on pretraining.

    `--init` is how a run outlives the machine it ran on when its checkpoint.pt (weights and
    AdamW's moments, 3x the weights) cannot travel: the saved encoder can, and a new run
    starts from it with fresh moments and a fresh warmup and cosine. A checkpoint without a
    reconstruction head (a converted DINO or timm ViT) gets a new one.
    """
    loaded = encoder_to_pretrain(args, GmmlEncoder, lambda: GmmlEncoder(encoder_config(args)))
    if not args.init:
        return loaded
    if args.recons_blocks:
        blocks = parse_blocks(args.recons_blocks)
    elif loaded.config.reconstruction_head:
        blocks = loaded.config.recons_blocks
    else:
        blocks = default_recons_blocks(loaded.config.depth)
    config = loaded.config.replace(drop_path_rate=0.1, reconstruction_head=True, recons_blocks=blocks)
    encoder = GmmlEncoder(config, loaded.processor)
    encoder.load_state_dict(loaded.state_dict(), strict=loaded.config.reconstruction_head)
    return encoder


def run_images(args: argparse.Namespace) -> ImageSet:
    """The run's images. A folder's files are the ones it began with when it resumes
    (`run_input_files`), so that its seeded batches are the uninterrupted run's; parquet files,
    MNIST and `datasets` sets keep their rows' order and need no record."""
    images = open_images(args.data, args.split)
    if not isinstance(images, ImageFiles):
        return images
    return ImageFiles(run_input_files(Path(args.output), [(Path(args.data), images.paths)]), images.name)


def run(args: argparse.Namespace) -> None:
    """`zoo pretrain gmml`: saves OUTPUT/encoder, with its reconstruction head. Its settings and
    model are checked before inputs.json is written, its batches after (undone if refused)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    train_config = dataclasses.replace(train_config_from_args(args), betas=(0.9, 0.999), eps=1e-8,
                                       min_lr_ratio=min(1.0, args.min_lr / args.lr),
                                       weight_decay_end=args.weight_decay_end)
    corruption = CorruptionConfig(args.drop_perc, args.drop_type, args.drop_replace, args.drop_align)
    torch.manual_seed(args.seed)
    encoder = initial_encoder(args)
    check_channels_readable(encoder.config.in_channels)
    objective = GmmlPretraining(encoder, corrupted_only=not args.all_pixels)
    images = run_images(args)
    start = "its checkpoint" if (Path(args.output) / CHECKPOINT_FILE).is_file() else args.init or "a random init"
    print(f"[gmml pretrain] {len(images)} images from {images.name}; {encoder.config.image_size} px crops, "
          f"recons_blocks {encoder.config.recons_blocks}, from {start}", file=sys.stderr, flush=True)
    processor = encoder.processor
    batches = GmmlBatches(images, args.batch_size, processor.crop_size, processor.image_mean, processor.image_std,
                          args.views, corruption, AugmentConfig(), args.seed, args.workers)
    settings = {**command_settings(args), "training_data": images.digest()}
    train_and_save(objective, batches, args.output, train_config, encoder, "encoder", settings, "gmml pretrain")
