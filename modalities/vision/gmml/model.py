"""GMML (Atito, Awais, Kittler 2022, https://arxiv.org/abs/2205.14986): a ViT trained to
reconstruct the clean image from a corrupted one (group masked model learning).

The encoder is DINO's ViT (vit.py); the reconstruction head (reconstruction.py) reads the
final LayerNorm of the *average* of blocks 6, 8, 10 and 12 (1-based, upstream's
`--recons_blocks`), not of the last block. GMML released no weights: `VARIANTS` are the
architectures of the paper (vit_tiny / small / base, patch 16) for conversion of your own
checkpoints and for pretraining.

Tokens: `last_hidden_state` is (B, T, D) with the cls token first and the h x w patches
after it in row-major order; `hidden_states` are the input tokens, then each block's
output, the last one after the final LayerNorm (so it equals `last_hidden_state`, as in
every zoo family). `pooled` is the cls token or the mean of the patches (the config's
`pool`), and so is `embed(pool=...)` and a head's pool: "mean" leaves the cls token out
(`pool_tokens`), though `mask` is all True; pool="cls" gives DINO's feature.

Shapes: B images, C = `in_channels` channels, H x W pixels, p patch side, h x w = H // p x
W // p patch grid, N = h * w patches, T = N + 1 tokens, D width, K selected layers.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Optional

import torch

from modalities.vision.gmml.reconstruction import ReconstructionHead
from modalities.vision.gmml.vit import VisionTransformer
from modalities.vision.processing import ImageProcessor, expand_images
from zoo.config import EncoderConfig
from zoo.encoder import EMBED_BATCH_SIZE, Encoder
from zoo.errors import ConfigError, InputError
from zoo.outputs import EncoderOutput
from zoo.pooling import LayerSpec, check_batch_sizes, is_single_layer, refuse_fixed_options, select_layers
from zoo.processing import first_non_finite

if TYPE_CHECKING:
    from tqdm import tqdm

#: what `pooled` can be: the cls token or the mean of the patch tokens
POOLED = ("cls", "mean")
#: timm's evaluation crop fraction: a 224 crop of a 256 resize
CROP_FRACTION = 0.875


@dataclasses.dataclass
class GmmlConfig(EncoderConfig):
    """Architecture of a GMML ViT; defaults are vit_base/16 at 224 pixels.

    Args:
        image_size: side of the square training images; the stored position grid is
            (image_size // patch_size)^2 (default: 224). Other sizes are interpolated.
        patch_size: side of the square patches (default: 16).
        in_channels: image channels (default: 3).
        hidden_size / depth / num_heads: width D, blocks, heads (defaults: 768 / 12 / 12).
        mlp_ratio: MLP width over D (default: 4.0).
        qkv_bias: bias on the qkv projection (default: True).
        layer_norm_eps: epsilon of every LayerNorm (default: 1e-6).
        drop_path_rate: stochastic depth in training (default: 0.0; GMML trains with 0.1).
        pool: what `pooled` is, "cls" or "mean" of the patches (default: "mean", as
            `embed`'s default: a converted checkpoint's `pooled` was the cls token while
            `embed` gave the mean).
        recons_blocks: 1-based blocks whose mean feeds the reconstruction head
            (default: (6, 8, 10, 12)).
        reconstruction_head: whether the model carries GMML's reconstruction head
            (default: False).
    """

    family = "gmml"
    positive_fields = ("hidden_size",)

    image_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.0
    pool: str = "mean"
    recons_blocks: tuple[int, ...] = (6, 8, 10, 12)
    reconstruction_head: bool = False

    def __post_init__(self) -> None:
        self.recons_blocks = tuple(self.recons_blocks)
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.image_size < self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is smaller than one patch_size {self.patch_size} patch; "
                              "the stored position grid needs at least one")
        if self.pool not in POOLED:
            raise ConfigError(f"pool={self.pool!r}; use one of {POOLED}")
        if self.reconstruction_head:
            self.check_recons_blocks()

    def check_recons_blocks(self) -> None:
        """Checked where reconstruction is used, so that shallow encoders keep the default."""
        bad = [block for block in self.recons_blocks if not 1 <= block <= self.depth]
        if bad or not self.recons_blocks:
            raise ConfigError(f"recons_blocks {self.recons_blocks} must be 1-based block numbers in 1..{self.depth}")

    @property
    def embed_dim(self) -> int:
        return self.hidden_size

    @property
    def num_layers(self) -> int:
        return self.depth


def patch_positions(rows: int, cols: int) -> torch.Tensor:
    """(rows * cols, 2) (row, column) of each patch token, in token order (row-major)."""
    grid = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), dim=-1)
    return grid.reshape(-1, 2)


def check_pixel_values(pixel_values: Any, channels: int) -> None:
    """Refuse what `forward` and `reconstruct` cannot take: paths or arrays (which `embed` takes), and
    uint8 pixels, which would be read as normalised values of 0 to 255."""
    if isinstance(pixel_values, torch.Tensor):
        if pixel_values.dim() == 4 and pixel_values.shape[1] == channels and pixel_values.is_floating_point():
            bad = first_non_finite(pixel_values)
            if bad is None:
                return
            raise InputError(f"pixel_values hold NaN or infinite values (image {bad[0]}, channel {bad[1]}, row "
                             f"{bad[2]}, column {bad[3]}); make them with encoder.preprocess(images), which refuses "
                             "such images by name")
        given = f"{pixel_values.dtype} pixel_values of shape {tuple(pixel_values.shape)}"
    else:
        given = f"pixel_values of type {type(pixel_values).__name__}"
    raise InputError(f"{given}; the encoder takes a float tensor (B, {channels}, H, W) of normalised images: make "
                     "them with encoder.preprocess(images), or call embed")


class GmmlEncoder(Encoder):
    """GMML ViT: images -> cls + patch tokens, with GMML's reconstruction head when present."""

    family = "gmml"
    modality = "vision"
    config_class = GmmlConfig
    processor_class = ImageProcessor
    pools = ("mean", "cls", "none")
    leading_tokens = 1  # the cls token
    unused_in_forward = ("reconstruction.",)

    def __init__(self, config: GmmlConfig, processor: Optional[ImageProcessor] = None) -> None:
        super().__init__(config, processor)
        self.check_processor_channels()
        self.backbone = VisionTransformer(
            config.image_size, config.patch_size, config.in_channels, config.hidden_size, config.depth,
            config.num_heads, config.mlp_ratio, config.qkv_bias, config.layer_norm_eps, config.drop_path_rate,
        )
        if config.reconstruction_head:
            self.reconstruction = ReconstructionHead(config.hidden_size, config.patch_size, config.in_channels)

    @classmethod
    def default_processor_settings(cls, config: GmmlConfig) -> dict[str, Any]:
        """Crop at the training size from a resize of its 1 / 0.875 (224 from 256), in the ViT's channels."""
        return {"crop_size": config.image_size, "resize_size": int(config.image_size / CROP_FRACTION),
                "channels": config.in_channels}

    def check_processor_channels(self) -> None:
        """The processor must make the crops the patch embedding reads: a 1-channel ViT fed RGB
        crops failed only at its first `embed`."""
        made, taken = self.processor.channels, self.config.in_channels
        if made != taken:
            raise ConfigError(f"the image processor makes {made}-channel crops (channels={made}) but the ViT takes "
                              f"in_channels={taken}; give it ImageProcessor(channels={taken}, ...) with {taken} "
                              f"image_mean / image_std values (in a saved folder: \"channels\": {taken} in "
                              "preprocessor_config.json)")

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """The h x w patch grid of an H x W image (pixels past the last full patch are unused)."""
        patch = self.config.patch_size
        if height < patch or width < patch:
            raise InputError(f"images of {height} x {width} pixels are smaller than one {patch}-pixel patch")
        return height // patch, width // patch

    def block_states(self, pixel_values: torch.Tensor, keep_all: bool = True) -> list[torch.Tensor]:
        """(B, C, H, W) -> the L + 1 states (B, T, D): input tokens, then every block's raw output
        (only the last block's with `keep_all=False`)."""
        check_pixel_values(pixel_values, self.config.in_channels)
        self.patch_grid(*pixel_values.shape[-2:])
        return self.backbone(pixel_values.to(self.backbone.cls_token.dtype), keep_all=keep_all)

    def pool(self, tokens: torch.Tensor, pool: str) -> torch.Tensor:
        """(..., T, D) -> (..., D): the cls token or the mean of the patch tokens."""
        if pool == "cls":
            return tokens[..., 0, :]
        if pool == "mean":
            return tokens[..., 1:, :].mean(-2)
        raise ConfigError(f"pool={pool!r}; use one of {POOLED}")

    def pool_tokens(self, tokens: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
        """As `embed` pools: "mean" leaves the cls token out (every image's tokens are valid)."""
        return self.pool(tokens, pool)

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool = False, pool: Optional[str] = None
    ) -> EncoderOutput:
        """Encode a batch of normalised images (any size; positions are interpolated).

        Args:
            pixel_values: (B, C, H, W), C = `in_channels`, as `preprocess` makes them.
            output_hidden_states: also return the L + 1 hidden states.
            pool: "cls" or "mean" for `pooled` (default: the config's).

        Shapes:
            last_hidden_state (B, T, D) (cls first), mask (B, T) all True, pooled (B, D).
        """
        states = self.block_states(pixel_values, keep_all=output_hidden_states)
        states[-1] = self.backbone.norm(states[-1])
        last = states[-1]
        mask = torch.ones(last.shape[:2], dtype=torch.bool, device=last.device)
        return EncoderOutput(last_hidden_state=last, mask=mask, pooled=self.pool(last, pool or self.config.pool),
                             hidden_states=tuple(states) if output_hidden_states else None)

    def reconstruction_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, T, D): the final LayerNorm of the mean of the `recons_blocks`
        outputs, cls included (upstream's `backbone(x, recons_blocks=...)` before it drops cls)."""
        self.config.check_recons_blocks()
        states = self.block_states(pixel_values)
        average = sum(states[block] for block in self.config.recons_blocks) / len(self.config.recons_blocks)
        return self.backbone.norm(average)

    def reconstruct(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) corrupted images -> (B, C, h * p, w * p) reconstructions, normalised
        like the input (checkpoints converted with their reconstruction head only)."""
        if not self.config.reconstruction_head:
            raise ConfigError("this GMML checkpoint has no reconstruction head; convert the training checkpoint "
                              "(its `head_recons.*` weights) to get one")
        features = self.reconstruction_features(pixel_values)
        return self.reconstruction(features[:, 1:], self.patch_grid(*pixel_values.shape[-2:]))

    def as_item_list(self, inputs: Any) -> list[Any]:
        """Single images, lists, folders and (B, ...) batches -> a list of single images."""
        return expand_images(inputs)

    @torch.no_grad()
    def embed(self, inputs: Any, layer: LayerSpec = None, pool: str = "mean",
              batch_size: Optional[int] = EMBED_BATCH_SIZE,
              device: Optional[str | torch.device] = None, progress: bool | tqdm = True,
              **prepare_kwargs: Any) -> torch.Tensor | list[torch.Tensor]:
        """Raw images in, one row per image out (see `Encoder.embed`).

        `pool` is "mean" (of the patch tokens: the cls token is left out), "cls", or
        "none" for each image's patch tokens (N, D) or (K, N, D) in row-major grid order
        (`embed_patches` adds their grid positions).

        A single (B, C, H, W) torch tensor (uint8, or float in [0, 1]) is prepared on the
        encoder's device, a `batch_size` chunk at a time (`ImageProcessor.prepare_batch`),
        and pooled there, so that only the rows come back; the rows are those of the same
        images passed one by one. Other inputs (lists, arrays, files) are prepared image by
        image on the CPU.
        """
        self.check_embed_options(layer, pool)
        batch_size = self.embed_batch_size if batch_size is None else batch_size
        options = {"batch_size": batch_size, "device": device, "progress": progress, **prepare_kwargs}
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and len(inputs):
            return self._embed_batch(inputs, layer, pool, **options)
        if pool != "none":
            return super().embed(inputs, layer=layer, pool=pool, **options)
        return [item[..., 1:, :] for item in super().embed(inputs, layer=layer, pool="none", **options)]

    def _embed_batch(self, images: torch.Tensor, layer: LayerSpec, pool: str, batch_size: int = EMBED_BATCH_SIZE,
                     device: Optional[str | torch.device] = None, progress: bool = True, **options: Any
                     ) -> torch.Tensor | list[torch.Tensor]:
        """`embed` of a (B, C, H, W) tensor: prepared, encoded and pooled on the device, `batch_size`
        images at a time; only the pooled rows (or the patch tokens for pool="none") come back."""
        check_batch_sizes(batch_size=batch_size)
        self.processor.check_options(options)
        indices, single_layer = self.check_embed_options(layer, pool), is_single_layer(layer)
        chunks = []
        with self.embedding(device), self.progress_bar(len(images), progress) as bar:
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                chunks.append(self._embed_chunk(chunk, start, indices, single_layer, pool))
                bar.update(len(chunk))
        rows = torch.cat(chunks)
        return list(rows) if pool == "none" else rows

    def _embed_chunk(self, images: torch.Tensor, first_index: int, indices: Optional[list[int]],
                     single_layer: bool, pool: str) -> torch.Tensor:
        """(b, C, H, W) raw images -> (b, [K,] D) pooled rows or (b, [K,] N, D) patch tokens, on the CPU."""
        pixel_values = self.processor.prepare_batch(images, self.device, first_index)
        output = self(**self.to_device({"pixel_values": pixel_values}), output_hidden_states=indices is not None)
        features = select_layers(output, indices).float()
        if single_layer:
            features = features[:, 0]
        pooled = features[..., 1:, :] if pool == "none" else self.pool(features, pool)
        self.check_finite_rows(pooled, first_index)  # as `embed` checks the rows of other inputs
        return pooled.cpu()

    def embed_patches(self, inputs: Any, layer: LayerSpec = None,
                      **embed_kwargs: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Raw images in; per image `(positions, features)` for dense tasks.

        `positions` (N, 2) holds each patch's (row, column) in the h x w grid of the
        processed crop (patch i covers pixels [row * p, (row + 1) * p) x [col * p, ...)),
        `features` is (N, D), or (K, N, D) when `layer` names several layers.
        """
        refuse_fixed_options("embed_patches", "every patch token", embed_kwargs)
        features = self.embed(inputs, layer=layer, pool="none", **embed_kwargs)
        rows, cols = self.patch_grid(self.processor.crop_size, self.processor.crop_size)
        return [(patch_positions(rows, cols), item) for item in features]


#: the paper's sizes (upstream's vit_tiny / vit_small / vit_base); `<family>-<variant>` names them
VARIANTS = {
    "vit-tiny-patch16": dict(hidden_size=192, depth=12, num_heads=3),
    "vit-small-patch16": dict(hidden_size=384, depth=12, num_heads=6),
    "vit-base-patch16": dict(hidden_size=768, depth=12, num_heads=12),
}
