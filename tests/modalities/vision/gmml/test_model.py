"""GmmlEncoder on tiny configs: sizes, the encoder contract, interpolation, reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo import registry
from zoo.errors import ConfigError, InputError, UnknownModelError
from zoo.outputs import EncoderOutput

#: the paper's sizes at 224 pixels: (width, heads, parameters) of upstream's vit_tiny / small / base
PAPER_SIZES = {"vit-tiny-patch16": (192, 3, 5_524_416), "vit-small-patch16": (384, 6, 21_665_664),
               "vit-base-patch16": (768, 12, 85_798_656)}


@pytest.fixture
def tiny():
    """Patch 4 on 32 x 32 images (an 8 x 8 grid), width 24, 4 blocks, reconstruction head."""
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
    from modalities.vision.processing import ImageProcessor

    torch.manual_seed(0)
    config = GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=4, num_heads=3,
                        recons_blocks=(2, 4), reconstruction_head=True)
    encoder = GmmlEncoder(config, ImageProcessor(resize_size=36, crop_size=32)).eval()
    with torch.no_grad():
        encoder.backbone.pos_embed.normal_()
    return encoder


def images(count: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_architecture_names_build_the_paper_sizes(name):
    from modalities.vision.gmml.model import GmmlEncoder

    width, heads, params = PAPER_SIZES[name]
    config = registry.architecture_config(f"gmml-{name}")
    assert (config.hidden_size, config.num_heads, config.depth, config.patch_size) == (width, heads, 12, 16)
    with torch.device("meta"):
        encoder = GmmlEncoder(config)
    assert sum(p.numel() for p in encoder.parameters()) == params


def test_architecture_names_are_listed_and_checked():
    assert registry.list_architectures("gmml") == [f"gmml-{name}" for name in sorted(PAPER_SIZES)]
    config = registry.architecture_config("gmml-vit-small-patch16", image_size=32, patch_size=4)
    assert config.image_size == 32 and config.hidden_size == 384
    with pytest.raises(UnknownModelError, match="no size 'vit-huge'.*gmml-vit-base-patch16"):
        registry.architecture_config("gmml-vit-huge")
    with pytest.raises(UnknownModelError, match="names no family"):
        registry.architecture_config("vit-tiny")
    assert zoo.list_models("gmml-*") == ["gmml-vit-tiny-cifar10"]  # GMML released none: only the zoo's own


def test_config_checks_name_the_bad_value():
    from modalities.vision.gmml.model import GmmlConfig

    with pytest.raises(ConfigError, match="hidden_size 24 is not divisible by num_heads 5"):
        GmmlConfig(hidden_size=24, num_heads=5)
    with pytest.raises(ConfigError, match="image_size 30 is not a multiple of patch_size 4"):
        GmmlConfig(image_size=30, patch_size=4)
    with pytest.raises(ConfigError, match="pool='max'"):
        GmmlConfig(pool="max")
    with pytest.raises(ConfigError, match=r"recons_blocks \(6, 8\) must be 1-based block numbers in 1..4"):
        GmmlConfig(depth=4, recons_blocks=(6, 8), reconstruction_head=True)
    # num_heads=0 raised ZeroDivisionError (integer modulo by zero); image_size=0 passed and failed later
    with pytest.raises(ConfigError, match="num_heads=0; a model has at least one attention head"):
        GmmlConfig(hidden_size=24, num_heads=0)
    with pytest.raises(ConfigError, match="image_size 0 is smaller than one patch_size 4 patch"):
        GmmlConfig(image_size=0, patch_size=4)


def test_an_encoder_of_other_channels_embeds_through_a_processor_of_its_channels():
    """The processor made RGB only, so a 1-channel ViT (a converted grey-image checkpoint) could
    not embed; its processor now makes grey crops (more in tests/test_vision_channels.py)."""
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=1, num_heads=3,
                                     in_channels=1)).eval()
    assert encoder.embed(images(1), progress=False).shape == (1, 24)
    with torch.no_grad():
        assert encoder(torch.randn(1, 1, 32, 32)).last_hidden_state.shape == (1, 65, 24)
        with pytest.raises(InputError, match=r"pixel_values of shape \(1, 3, 32, 32\); the encoder takes a float "
                                             r"tensor \(B, 1,"):
            encoder(torch.randn(1, 3, 32, 32))


def test_forward_shapes_pooling_and_hidden_states(tiny):
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = tiny(pixels, output_hidden_states=True)
        cls = tiny(pixels, pool="cls").pooled
    assert output.last_hidden_state.shape == (2, 65, 24) and output.mask.all()
    assert len(output.hidden_states) == 5 and torch.equal(output.hidden_states[-1], output.last_hidden_state)
    assert torch.equal(cls, output.last_hidden_state[:, 0])
    assert torch.allclose(output.pooled, output.last_hidden_state[:, 1:].mean(1))
    images = list(torch.rand(2, 3, 32, 32))  # `pooled` is embed's default (it was the cls token, embed's the mean)
    with torch.no_grad():
        assert torch.allclose(tiny(**tiny.preprocess(images)).pooled, tiny.embed(images, progress=False), atol=1e-6)


def test_other_image_sizes_interpolate_positions(tiny):
    """32 x 32 at patch 4 uses the stored grid; other sizes resample it, DINO's way."""
    from modalities.vision.gmml.vit import interpolate_pos_embed

    stored = tiny.backbone.pos_embed
    assert interpolate_pos_embed(stored, 32, 32, 4) is stored
    for height, width in ((48, 48), (32, 48), (20, 36), (35, 33)):
        positions = interpolate_pos_embed(stored, height, width, 4)
        assert positions.shape == (1, (height // 4) * (width // 4) + 1, 24)
        assert torch.equal(positions[:, 0], stored[:, 0])
        with torch.no_grad():
            assert tiny(torch.randn(1, 3, height, width)).last_hidden_state.shape[1] == positions.shape[1]
    # a non-square image with the stored number of patches is still resampled (DINO's test needs H == W)
    resampled = interpolate_pos_embed(stored, 16, 64, 4)
    assert resampled.shape == stored.shape and not torch.equal(resampled, stored)
    expected = torch.nn.functional.interpolate(
        stored[:, 1:].reshape(1, 8, 8, 24).permute(0, 3, 1, 2), scale_factor=(4.1 / 8, 16.1 / 8), mode="bicubic")
    assert torch.equal(resampled[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 64, 24))


def test_embed_pools_layers_and_batches_give_the_same_rows(tiny):
    items = images(5)
    alone = torch.cat([tiny.embed([item], progress=False) for item in items])
    for batch_size in (2, 5):
        assert (tiny.embed(items, batch_size=batch_size, progress=False) - alone).abs().max() <= 1e-5
    tokens = tiny.embed(items, pool="none", progress=False)
    assert tokens[0].shape == (64, 24) and torch.allclose(alone[0], tokens[0].mean(0), atol=1e-6)
    cls = tiny.embed(items, pool="cls", progress=False)
    with torch.no_grad():
        output = tiny(**tiny.preprocess(items))
    assert torch.allclose(cls, output.last_hidden_state[:, 0], atol=1e-6)
    assert tiny.embed(items, layer="all", progress=False).shape == (5, 5, 24)
    assert tiny.embed(items, layer=[0, -1], pool="none", progress=False)[0].shape == (2, 64, 24)
    assert torch.allclose(tiny.embed(items, layer=-1, progress=False), alone, atol=1e-6)
    with pytest.raises(ConfigError, match="pool='max'"):
        tiny.embed(items, pool="max", progress=False)


def test_embed_patches_gives_grid_positions(tiny, tmp_path):
    from PIL import Image

    stack = np.stack(images(3))
    for index, image in enumerate(stack):
        Image.fromarray(image).save(tmp_path / f"{index}.png")
    assert torch.equal(tiny.embed(tmp_path, progress=False), tiny.embed(stack, progress=False))
    patches = tiny.embed_patches(stack, progress=False)
    assert len(patches) == 3
    positions, features = patches[1]
    assert positions.shape == (64, 2) and features.shape == (64, 24)
    assert positions[:9].tolist() == [[0, c] for c in range(8)] + [[1, 0]]
    with torch.no_grad():
        tokens = tiny(**tiny.preprocess(list(stack))).last_hidden_state[1, 1:]
    row, col = 3, 5
    assert torch.allclose(features[(positions == torch.tensor([row, col])).all(1)][0],
                          tokens.view(8, 8, 24)[row, col], atol=1e-6)


def test_reconstruction_round_trips_an_image_shape(tiny):
    pixels = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        features = tiny.reconstruction_features(pixels)
        states = tiny.block_states(pixels)
        image = tiny.reconstruct(pixels)
    assert torch.allclose(features, tiny.backbone.norm((states[2] + states[4]) / 2), atol=1e-6)
    assert image.shape == (2, 3, 32, 40)


def test_reconstruct_needs_the_head():
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=2, num_heads=3))
    with pytest.raises(ConfigError, match="no reconstruction head"):
        encoder.reconstruct(torch.randn(1, 3, 32, 32))
    with pytest.raises(InputError, match="smaller than one 4-pixel patch"):
        encoder(torch.randn(1, 3, 2, 32))
    for shape in ((1, 1, 32, 32), (3, 32, 32)):  # greyscale, or one image without its batch axis
        with pytest.raises(InputError, match=r"pixel_values of shape .*; the encoder takes a float tensor "
                                             r"\(B, 3, H, W\)"):
            encoder(torch.randn(*shape))
    raw = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)  # was read as normalised values of 0-255
    with pytest.raises(InputError, match=r"torch.uint8 pixel_values of shape \(1, 3, 32, 32\); "
                                         r".*encoder.preprocess\(images\)"):
        encoder(raw)
    for given in ([raw[0]], raw.numpy()):  # embed's inputs: were AttributeError 'list' has no attribute 'dim'
        with pytest.raises(InputError, match=r"^pixel_values of type (list|ndarray); the encoder takes a float tensor"):
            encoder(given)
    holed = torch.randn(2, 3, 32, 32)
    holed[1, 2, 5, 7] = float("nan")  # came out as NaN embeddings without a word
    with pytest.raises(InputError, match=r"NaN or infinite values \(image 1, channel 2, row 5, column 7\)"):
        encoder(holed)


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "ckpt")
    loaded = zoo.load(tmp_path / "ckpt")
    assert type(loaded) is type(tiny) and loaded.config == tiny.config and loaded.processor == tiny.processor
    items = images(2)
    assert torch.equal(loaded.embed(items, progress=False), tiny.embed(items, progress=False))
    half = zoo.load(tmp_path / "ckpt", dtype=torch.bfloat16)
    rows = half.embed(items, progress=False)
    assert rows.dtype == torch.float32 and (rows - tiny.embed(items, progress=False)).abs().max() < 0.1
    with torch.no_grad():
        assert half(torch.randn(1, 3, 48, 40)).last_hidden_state.dtype == torch.bfloat16


def test_default_processor_follows_the_image_size():
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=1, num_heads=3))
    assert (encoder.processor.resize_size, encoder.processor.crop_size) == (36, 32)
    assert (GmmlEncoder.default_processor_settings(GmmlConfig()) == {"crop_size": 224, "resize_size": 256,
                                                                      "channels": 3})


def embed_both_ways(encoder, batch, **kwargs):
    """`embed` of a (B, C, H, W) tensor (the batched path) and of its images as a list (per image)."""
    return encoder.embed(batch, progress=False, **kwargs), encoder.embed(list(batch), progress=False, **kwargs)


def max_abs_diff(batched, alone) -> float:
    if isinstance(batched, list):
        assert [row.shape for row in batched] == [row.shape for row in alone]
        return max(float((x - y).abs().max()) for x, y in zip(batched, alone))
    assert batched.shape == alone.shape
    return float((batched - alone).abs().max())


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(300, 260), (36, 44)], ids=["resize", "crop-only"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_embed_of_a_tensor_batch_equals_embed_image_by_image(tiny, channels, size, dtype, monkeypatch):
    batch = torch.randint(0, 256, (5, channels, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    if dtype.is_floating_point:
        batch = batch.to(dtype) / 255
    prepare_batch, chunks = tiny.processor.prepare_batch, []

    def counting_prepare_batch(images, *args):
        chunks.append(len(images))
        return prepare_batch(images, *args)

    monkeypatch.setattr(tiny.processor, "prepare_batch", counting_prepare_batch)
    for pool in ("mean", "cls", "none"):
        for layer in (None, [0, -1], "all"):
            batched, alone = embed_both_ways(tiny, batch, layer=layer, pool=pool, batch_size=2)
            # measured 0.0 on CPU (torch 2.14, one thread): the same kernels on the same values;
            # 1e-6 leaves room for a kernel that vectorises a batch differently
            assert max_abs_diff(batched, alone) <= 1e-6, (pool, layer)
    assert chunks == [2, 2, 1] * 9  # only the tensor batches went through prepare_batch, in chunks of 2


def test_embed_of_a_tensor_batch_keeps_the_embed_options(tiny):
    batch = torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8)
    tiny.train()
    rows = tiny.embed(batch, batch_size=2, device="cpu", progress=True)
    assert tiny.training and rows.shape == (3, 24)
    patches = tiny.embed_patches(batch, layer=[1, 2], progress=False)
    assert len(patches) == 3 and patches[0][0].shape == (64, 2) and patches[0][1].shape == (2, 64, 24)
    with pytest.raises(ConfigError, match="embed_patches gives every patch token, so it takes no pool='cls'; drop"):
        tiny.embed_patches(batch, pool="cls", progress=False)  # was "got multiple values for keyword argument"
    with pytest.raises(InputError, match="image inputs take no options; got sampling_rate="):  # was a TypeError
        tiny.embed(batch, sampling_rate=16000, progress=False)


def test_bad_images_in_a_tensor_batch_are_named_as_image_by_image(tiny):
    nan_in_third = torch.rand(8, 3, 36, 36)
    nan_in_third[3, 1, 2, 2] = float("nan")
    out_of_range = torch.rand(8, 3, 36, 36)
    out_of_range[5] *= 255
    cases = [(nan_in_third, "input 3: image tensor of shape \\(3, 36, 36\\) has 1 NaN or infinite values"),
             (out_of_range, "input 5: image tensor .* has values in \\[.*, 255\\]; float images must be in \\[0, 1\\]"),
             (torch.rand(8, 2, 36, 36), "input 0: image tensor .* has 2 channels \\(grey \\+ alpha"),
             (torch.rand(8, 3, 0, 36), "input 0: image tensor .* is empty \\(0 x 36 pixels\\)"),
             (torch.zeros(4, 3, 36, 36, dtype=torch.int32), "input 0: image tensor .* has dtype torch.int32"),
             (torch.zeros(4, 36, 36, 3), "input 0: image tensor .* looks channels-last.*permute\\(0, 3, 1, 2\\)"),
             (torch.rand(0, 3, 36, 36), "got no inputs \\(an empty list or dataset\\)")]
    for batch, message in cases:
        for inputs in (batch, list(batch)):
            with pytest.raises(InputError, match=message):
                tiny.embed(inputs, batch_size=3, progress=False)
    for batch_size in (0, 2.5):
        with pytest.raises(ConfigError, match=f"batch_size={batch_size}; use a positive number"):
            tiny.embed(torch.rand(2, 3, 36, 36), batch_size=batch_size, progress=False)


def test_zoo_probe_and_embed_read_a_hub_image_dataset(tiny, tmp_path, capsys):
    """A Hub image dataset (train-*/test-* parquet files, an Image column and a ClassLabel):
    `zoo probe --data DIR` probes on its records and `zoo embed FILE.parquet` embeds them, each
    as the images themselves (both read the parquet files as images, or found no files)."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from zoo.cli import main

    def encoded(picture: np.ndarray) -> dict:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    features = {"img": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": ["dark", "light"]}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    splits = {"train": 12, "test": 6, "validation": 2}
    pictures = {}
    for split, count in splits.items():
        labels = [index % 2 for index in range(count)]
        pictures[split] = [np.full((40, 48, 3), 40 + 170 * label, np.uint8) + picture // 8
                           for label, picture in zip(labels, images(count, seed=count))]
        unlabelled = [encoded(images(1)[0])] if split == "test" else []  # label -1: `datasets`' "no label"
        table = pa.table({"img": [encoded(picture) for picture in pictures[split]] + unlabelled,
                          "label": labels + [-1] * len(unlabelled)})
        pq.write_table(table.replace_schema_metadata(metadata), tmp_path / f"{split}-00000-of-00001.parquet")
    tiny.save_pretrained(tmp_path / "model")
    assert main(["probe", str(tmp_path / "model"), "--data", str(tmp_path), "--k", "3"]) == 0
    said = capsys.readouterr()
    report = json.loads(said.out)
    assert (report["train_items"], report["test_items"], report["classes"]) == (12, 6, 2)  # no validation, no -1
    assert "left out ['validation-00000-of-00001.parquet']" in said.err
    assert report["linear_probe_accuracy"] == 1.0
    assert main(["embed", str(tmp_path / "model"), str(tmp_path / "test-00000-of-00001.parquet"),
                 "-o", str(tmp_path / "test.npy")]) == 0
    expected = tiny.embed(pictures["test"], progress=False).numpy()
    assert np.abs(np.load(tmp_path / "test.npy")[:6] - expected).max() <= 1e-6  # embed keeps every record
    assert main(["probe", str(tmp_path / "model"), "--data", str(tmp_path), "--test-regex", "x"]) == 2
    assert "--label-regex and --test-regex are for folders of files" in capsys.readouterr().err


def test_torch_export_gives_the_eager_outputs(tiny):
    """torch.export refused EncoderOutput ("register a pytree"), and the NaN check of `forward`
    branched on the values, which a traced graph cannot."""
    pixels = torch.randn(2, 3, 32, 40)
    exported = torch.export.export(tiny, (pixels,)).module()
    with torch.no_grad():
        got, expected = exported(pixels), tiny(pixels)
    assert isinstance(got, EncoderOutput)
    assert (got.last_hidden_state - expected.last_hidden_state).abs().max() <= 1e-5  # measured 0.0
    assert (got.pooled - expected.pooled).abs().max() <= 1e-5
