"""Parity with the official GMML code on ../shared/golden/gmml (tiny random weights, width 24).

Both upstream files are converted: the training checkpoint (backbone + reconstruction
head, `module.` prefixes, pickled args) and the DINO-layout backbone (which needs
`num_heads=3`: width 24 is none of the paper's sizes). Every stage is compared at 224
pixels and at the two interpolated sizes (160 x 160, and 96 x 128, which is non-square).
Tolerance: max abs diff 1e-5 everywhere. Measured (torch 2.14, CPU, one thread): 0.0 for
tokens_embed and pos_embed_used; blocks at most 6.7e-6 and recons_avg_prenorm 4.8e-6
(torch's fused attention against upstream's explicit softmax); recons_features 2.0e-6,
tokens_final_norm 1.9e-6, cls_embedding 1.2e-6, mean_patch_embedding 4.8e-7,
head_mlp_out and recon_image 6.0e-7.
"""

from __future__ import annotations

import pytest
import torch
from helpers import shared_path

TOLERANCE = 1e-5
#: prefix of each golden image's outputs -> its input key
IMAGES = {"": "images", "res160.": "image160", "res96x128.": "image96x128"}


@pytest.fixture(scope="module")
def golden():
    from safetensors.torch import load_file

    folder = shared_path("golden", "gmml")
    return {"folder": folder, "inputs": load_file(str(folder / "inputs.safetensors")),
            "outputs": load_file(str(folder / "outputs.safetensors"))}


@pytest.fixture(scope="module", params=["training", "dino"])
def encoder(request, golden):
    from modalities.vision.gmml.convert import CONVERTERS

    if request.param == "training":
        return CONVERTERS["gmml"](golden["folder"] / "gmml_tiny_checkpoint.pth")
    return CONVERTERS["dino"](golden["folder"] / "gmml_tiny_backbone_dino_layout.pth", num_heads=3)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("prefix", list(IMAGES))
def test_tokens_positions_and_every_block(golden, encoder, prefix):
    images, reference = golden["inputs"][IMAGES[prefix]], golden["outputs"]
    with torch.no_grad():
        positions = encoder.backbone.positions_for(*images.shape[-2:])
        states = encoder.block_states(images)
    assert max_diff(positions, reference[f"{prefix}pos_embed_used"]) <= TOLERANCE
    assert max_diff(states[0], reference[f"{prefix}tokens_embed"]) <= TOLERANCE
    assert len(states) == 13
    for index, state in enumerate(states[1:]):
        assert max_diff(state, reference[f"{prefix}block_{index:02d}"]) <= TOLERANCE, index


@pytest.mark.parametrize("prefix", list(IMAGES))
def test_final_norm_cls_and_mean_patch_embeddings(golden, encoder, prefix):
    images, reference = golden["inputs"][IMAGES[prefix]], golden["outputs"]
    with torch.no_grad():
        output = encoder(images, output_hidden_states=True)
        cls = encoder(images, pool="cls").pooled
    assert max_diff(output.last_hidden_state, reference[f"{prefix}tokens_final_norm"]) <= TOLERANCE
    assert torch.equal(output.hidden_states[-1], output.last_hidden_state)
    assert max_diff(cls, reference[f"{prefix}cls_embedding"]) <= TOLERANCE
    assert max_diff(output.pooled, reference[f"{prefix}mean_patch_embedding"]) <= TOLERANCE  # the default pool


@pytest.mark.parametrize("prefix", list(IMAGES))
def test_reconstruction_features_average_blocks_6_8_10_12(golden, encoder, prefix):
    images, reference = golden["inputs"][IMAGES[prefix]], golden["outputs"]
    assert encoder.config.recons_blocks == (6, 8, 10, 12)
    with torch.no_grad():
        states = encoder.block_states(images)
        average = sum(states[block] for block in encoder.config.recons_blocks) / 4
        features = encoder.reconstruction_features(images)
    assert max_diff(average, reference[f"{prefix}recons_avg_prenorm"]) <= TOLERANCE
    assert max_diff(features[:, 1:], reference[f"{prefix}recons_features"]) <= TOLERANCE


@pytest.mark.parametrize("prefix", ["", "res160."])
def test_reconstruction_head_matches_official(golden, prefix):
    from modalities.vision.gmml.convert import CONVERTERS

    encoder = CONVERTERS["auto"](golden["folder"] / "gmml_tiny_checkpoint.pth")
    images, reference = golden["inputs"][IMAGES[prefix]], golden["outputs"]
    with torch.no_grad():
        features = encoder.reconstruction_features(images)[:, 1:]
        mlp_out = encoder.reconstruction.mlp(features)
        image = encoder.reconstruct(images)
    assert max_diff(mlp_out, reference[f"{prefix}head_mlp_out"]) <= TOLERANCE
    assert max_diff(image, reference[f"{prefix}recon_image"]) <= TOLERANCE


def test_last_block_attention_matches_official(golden, encoder):
    """The softmax attention of the last block at 160 pixels, recomputed from its qkv."""
    images = golden["inputs"]["image160"]
    block = encoder.backbone.blocks[-1]
    with torch.no_grad():
        tokens = block.norm1(encoder.block_states(images)[-2])
        heads, width = encoder.config.num_heads, encoder.config.hidden_size
        q, k, _ = block.attn.qkv(tokens).reshape(1, -1, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) * (width // heads) ** -0.5).softmax(-1)
    assert max_diff(attention, golden["outputs"]["res160.last_block_attn"]) <= TOLERANCE


def test_processor_reproduces_the_official_inputs(golden, encoder):
    """uint8 HWC images through the processor (no resize needed) equal ToTensor + Normalize."""
    from modalities.vision.processing import ImageProcessor

    inputs = golden["inputs"]
    for key, size in (("images", 224), ("image160", 160)):
        processor = ImageProcessor(resize_size=size, crop_size=size)
        batch = processor(inputs[f"{key}_u8"].numpy())["pixel_values"]
        assert max_diff(batch, inputs[key]) <= 1e-6
    processor = ImageProcessor(resize_size=96, crop_size=96)
    assert max_diff(processor.collate([processor.prepare(inputs["image96x128_u8"][0].numpy())])["pixel_values"],
                    inputs["image96x128"][..., 16:112]) <= 1e-6


def test_embed_from_uint8_images_matches_official(golden, encoder, monkeypatch):
    """The public path: raw uint8 images -> embed(pool=cls|mean) and embed_patches."""
    from modalities.vision.processing import ImageProcessor

    monkeypatch.setattr(encoder, "processor", ImageProcessor(resize_size=224, crop_size=224))
    images, reference = list(golden["inputs"]["images_u8"].numpy()), golden["outputs"]
    cls = encoder.embed(images, pool="cls", batch_size=1, progress=False)
    mean = encoder.embed(images, pool="mean", batch_size=2, progress=False)
    assert max_diff(cls, reference["cls_embedding"]) <= TOLERANCE
    assert max_diff(mean, reference["mean_patch_embedding"]) <= TOLERANCE
    (positions, patches), _ = encoder.embed_patches(images, progress=False)
    assert positions.shape == (196, 2) and positions[15].tolist() == [1, 1]
    assert max_diff(patches, reference["tokens_final_norm"][0, 1:]) <= TOLERANCE
    blocks = encoder.embed(images[:1], layer=[6, 12], pool="none", progress=False)[0]
    assert max_diff(blocks[0], reference["block_05"][0, 1:]) <= TOLERANCE
