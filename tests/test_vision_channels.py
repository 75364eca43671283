"""ViTs of other input channels than RGB: the image processor gives the model the channels its
config says (`ImageProcessor.channels`).

Before, the processor always made 3-channel crops, so a GMML/DINO/timm ViT converted or built
with `in_channels=1` (an MNIST model) or 4 built, but `embed` raised InputError "pixel_values of
shape (1, 3, 28, 28); the encoder takes (B, 1, H, W) normalised images: the image processor
makes RGB (3 channels), so embed and preprocess cannot feed a 1-channel ViT", and `zoo pretrain
gmml --set in_channels=1` failed the same way at its first step, after writing args.json and
log.jsonl.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import shared_path
from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
from modalities.vision.processing import IMAGENET_MEAN, IMAGENET_STD, ImageProcessor
from zoo.errors import ConfigError, InputError

#: ViTModel and the zoo's ViT on the same weights and 16 grey MNIST crops (measured max abs diff:
#: 2.4e-7 on the cls tokens, 3.0e-8 on the patch tokens)
TRANSFORMERS_TOLERANCE = 1e-5
#: PIL's "L" rounds the luma to 8 bits; `luminance` keeps it in float (measured: 0.499 / 255)
EIGHT_BIT_ROUNDING = 0.5 / 255 + 1e-6


def grey_vit(**overrides) -> GmmlEncoder:
    """A random 2-block ViT for 28-pixel grey images (patch 7: a 4 x 4 grid)."""
    torch.manual_seed(0)
    fields = dict(image_size=28, patch_size=7, in_channels=1, hidden_size=24, depth=2, num_heads=3)
    return GmmlEncoder(GmmlConfig(**{**fields, **overrides})).eval()


def mnist_images(count: int) -> np.ndarray:
    """The first `count` MNIST test digits, (count, 28, 28) uint8."""
    from modalities.vision.image_sets import MNIST_IMAGES, read_idx

    return read_idx(shared_path("data", "mnist_test") / MNIST_IMAGES)[:count].copy()


def test_a_grey_vit_embeds_mnist_as_transformers_vit_computes():
    from modalities.vision.gmml.transformers_vit import to_transformers_vit

    encoder, digits = grey_vit(), mnist_images(16)
    assert encoder.processor.channels == 1
    assert (encoder.processor.image_mean, encoder.processor.image_std) == ((0.449,), (0.226,))
    rows = encoder.embed(list(digits), pool="cls", progress=False)
    tokens = encoder.embed(list(digits), pool="none", progress=False)
    pixel_values = encoder.preprocess(list(digits))["pixel_values"]
    assert pixel_values.shape == (16, 1, 28, 28)
    with torch.no_grad():
        reference = to_transformers_vit(encoder)(pixel_values=pixel_values).last_hidden_state
    assert (rows - reference[:, 0]).abs().max() <= TRANSFORMERS_TOLERANCE
    assert max((mine - theirs).abs().max() for mine, theirs in zip(tokens, reference[:, 1:])) <= TRANSFORMERS_TOLERANCE
    batched = encoder.embed(torch.from_numpy(digits)[:, None], pool="cls", progress=False)  # (B, 1, H, W) uint8
    assert torch.equal(batched, rows)


def test_grey_images_stay_grey_and_match_the_rgb_processor():
    """A grey image's crop is the RGB processor's crop of it (three equal channels), channel 0."""
    digit = mnist_images(1)[0]
    grey = ImageProcessor(resize_size=32, crop_size=28, channels=1, image_mean=(0.5,), image_std=(0.25,))
    rgb = ImageProcessor(resize_size=32, crop_size=28, image_mean=(0.5,) * 3, image_std=(0.25,) * 3)
    crop = grey.prepare(digit)
    assert crop.shape == (1, 28, 28)
    assert torch.equal(crop[0], rgb.prepare(digit)[0])
    assert torch.equal(grey.prepare(torch.from_numpy(digit)), crop)


def test_colour_becomes_its_luminance_as_pil_l_makes_it():
    from PIL import Image

    colour = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    processor = ImageProcessor(resize_size=28, crop_size=28, channels=1, image_mean=(0.0,), image_std=(1.0,))
    pil_l = torch.from_numpy(np.asarray(Image.fromarray(colour).convert("L"), dtype=np.float32) / 255)
    for item in (colour, Image.fromarray(colour), Image.fromarray(colour).convert("RGBA"),
                 torch.from_numpy(colour).permute(2, 0, 1)):
        crop = processor.prepare(item)
        assert crop.shape == (1, 28, 28)
        assert (crop[0] - pil_l).abs().max() <= EIGHT_BIT_ROUNDING
    batch = processor.prepare_batch(torch.from_numpy(colour).permute(2, 0, 1)[None])
    assert torch.equal(batch[0], processor.prepare(colour))


def test_other_channel_counts_take_only_arrays_and_tensors_of_that_count(tmp_path):
    from PIL import Image

    encoder = grey_vit(in_channels=4)
    assert encoder.processor.image_mean == (0.449,) * 4
    four = np.random.default_rng(0).integers(0, 256, (28, 28, 4), dtype=np.uint8)
    rows = encoder.embed([four, torch.from_numpy(four).permute(2, 0, 1)], progress=False)
    assert rows.shape == (2, 24) and torch.allclose(rows[0], rows[1])
    with pytest.raises(InputError, match=r"image array of shape \(28, 28, 3\) has 3 channels, but this model takes "
                                         r"4-channel images; pass a numpy array \(H, W, 4\)"):
        encoder.embed([four[..., :3]], progress=False)
    with pytest.raises(InputError, match=r"image tensor of shape \(1, 28, 28\) has 1 channels"):
        encoder.embed(torch.zeros(2, 1, 28, 28), progress=False)
    Image.fromarray(four).save(tmp_path / "rgba.png")  # 4 channels, but alpha: no model channel
    with pytest.raises(InputError, match=r"rgba.png' decodes to a \(4, 28, 28\) \(C, H, W\) image, but this model "
                                         r"takes 4-channel images, from numpy arrays \(H, W, 4\) or torch tensors"):
        encoder.embed([str(tmp_path / "rgba.png")], progress=False)


def test_normalisation_needs_one_value_per_channel():
    with pytest.raises(ConfigError, match=r"image_mean \(0.485, 0.456, 0.406\) and image_std \(0.229, 0.224, 0.225\) "
                                          r"need one value per channel, 1 each \(channels=1\)"):
        ImageProcessor(channels=1, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    with pytest.raises(ConfigError, match=r"image_mean \(0.5,\) and image_std \(0.5, 0.5, 0.5\) need one value"):
        ImageProcessor(image_mean=(0.5,), image_std=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="channels=0; give the model's input channels"):
        ImageProcessor(channels=0)


def test_an_encoder_refuses_a_processor_of_other_channels():
    with pytest.raises(ConfigError, match=r"makes 3-channel crops \(channels=3\) but the ViT takes in_channels=1; "
                                          r"give it ImageProcessor\(channels=1"):
        GmmlEncoder(GmmlConfig(image_size=28, patch_size=7, in_channels=1, hidden_size=24, depth=1, num_heads=3),
                    ImageProcessor(resize_size=32, crop_size=28))


def test_channels_are_saved_and_a_processor_without_them_is_rgb(tmp_path):
    encoder = grey_vit()
    encoder.save_pretrained(tmp_path / "grey")
    saved = json.loads((tmp_path / "grey" / "preprocessor_config.json").read_text())
    assert (saved["channels"], saved["image_mean"], saved["image_std"]) == (1, [0.449], [0.226])
    loaded = GmmlEncoder.from_pretrained(tmp_path / "grey")
    digits = list(mnist_images(4))
    assert torch.equal(loaded.embed(digits, progress=False), encoder.embed(digits, progress=False))
    old = {"processor_type": "image", "resize_size": 36, "crop_size": 32, "image_mean": list(IMAGENET_MEAN),
           "image_std": list(IMAGENET_STD)}
    assert ImageProcessor.from_dict(old).channels == 3


def test_the_embedded_vit_loads_its_saved_processor_and_embeds_as_before():
    """zoo/checkpoints/gmml-vit-tiny-cifar10 saved its processor without `channels`: it still means
    RGB, and the rows are those of the processor spelt out as before (max abs diff 0.0)."""
    import zoo
    from zoo.demo import example_inputs

    encoder = zoo.load("gmml-vit-tiny-cifar10")
    assert encoder.processor == ImageProcessor(resize_size=36, crop_size=32, image_mean=IMAGENET_MEAN,
                                               image_std=IMAGENET_STD, channels=3)
    images = [str(path) for path in example_inputs("vision")]
    crops = torch.stack([encoder.processor.prepare(path) for path in images])
    assert crops.shape == (4, 3, 32, 32)
    with torch.no_grad():
        direct = encoder(crops.to(encoder.dtype), pool="mean").pooled.float()
    assert torch.equal(encoder.embed(images, progress=False), direct)


def test_gmml_pretrains_a_grey_vit_on_mnist(tmp_path):
    from zoo.cli import main

    out = tmp_path / "run"
    assert main(["pretrain", "gmml", "--data", str(shared_path("data", "mnist_test")), "-o", str(out),
                 "--set", "image_size=28", "--set", "patch_size=7", "--set", "in_channels=1", "--set", "depth=2",
                 "--set", "hidden_size=24", "--set", "num_heads=3", "--steps", "2", "--batch-size", "4",
                 "--no-progress"]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))
    trained = GmmlEncoder.from_pretrained(out / "encoder")
    assert trained.processor.channels == 1 and trained.reconstruction.to_pixels.out_channels == 1
    assert trained.embed(list(mnist_images(2)), progress=False).shape == (2, 24)
