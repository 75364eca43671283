"""ImageProcessor: every input type to the same normalised crop, and clear errors for the rest."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from modalities.vision.processing import IMAGENET_MEAN, IMAGENET_STD, ImageProcessor
from zoo.errors import ConfigError, InputError


@pytest.fixture
def picture() -> np.ndarray:
    """A 40 x 56 RGB uint8 picture."""
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


@pytest.fixture
def processor() -> ImageProcessor:
    return ImageProcessor(resize_size=36, crop_size=32)


def expected_crop(picture: np.ndarray, processor: ImageProcessor) -> torch.Tensor:
    """Resize (bicubic, antialiased) the shorter side, centre-crop, normalise: by hand."""
    image = torch.from_numpy(picture).permute(2, 0, 1).float()[None] / 255
    resized = torch.nn.functional.interpolate(image, size=(36, 50), mode="bicubic", antialias=True).clamp(0, 1)
    crop = resized[0, :, 2:34, 9:41]
    return (crop - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def test_every_input_type_gives_the_same_crop(picture, processor, tmp_path):
    Image.fromarray(picture).save(tmp_path / "a.png")
    expected = expected_crop(picture, processor)
    as_float = picture.astype(np.float32) / 255
    inputs = [picture, as_float, Image.fromarray(picture), str(tmp_path / "a.png"), tmp_path / "a.png",
              torch.from_numpy(picture).permute(2, 0, 1), torch.from_numpy(as_float).permute(2, 0, 1),
              np.concatenate([picture, np.full((40, 56, 1), 7, np.uint8)], axis=-1),
              Image.fromarray(picture).convert("RGBA")]
    for item in inputs:
        assert (processor.prepare(item) - expected).abs().max() <= 1e-5, type(item)


def test_an_open_image_file_is_one_image(picture, processor, tmp_path):
    """`open(path, "rb")` and `io.BytesIO(data)` were iterated as collections, over their lines:
    "cannot decode image bytes (39 bytes)", the first line of a JPEG."""
    import io

    from modalities.vision.processing import expand_images

    Image.fromarray(picture).save(tmp_path / "a.png")
    expected = expected_crop(picture, processor)
    with open(tmp_path / "a.png", "rb") as handle:
        assert len(expand_images(handle)) == 1 and (processor(handle)["pixel_values"][0] - expected).abs().max() <= 1e-5
    buffer = io.BytesIO((tmp_path / "a.png").read_bytes())
    assert (processor([buffer])["pixel_values"][0] - expected).abs().max() <= 1e-5
    with pytest.raises(InputError, match="cannot decode image file object 'BytesIO': Pillow knows no image format"):
        processor([io.BytesIO(b"not an image")])


def test_batches_and_folders_expand_to_images(picture, processor, tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(picture).save(tmp_path / "b.jpg", quality=95)
    Image.fromarray(picture).save(tmp_path / "sub" / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._b.jpg").write_bytes(b"macOS resource fork, not a JPEG")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.fromarray(picture).save(tmp_path / ".ipynb_checkpoints" / "b.jpg")
    (tmp_path / "e.png").symlink_to(tmp_path / "gone.png")
    with pytest.warns(UserWarning) as caught:  # said nothing, where `zoo embed` of the folder names both
        assert processor(tmp_path)["pixel_values"].shape == (2, 3, 32, 32)
    assert sorted(str(warning.message).split(" that ")[0] for warning in caught) == [
        f"left out 1 entry in '{tmp_path}'", f"left out 1 file(s) in '{tmp_path}'"]
    (tmp_path / "e.png").unlink()
    (tmp_path / "notes.txt").unlink()
    Image.fromarray(picture).save(tmp_path / "c.jfif", format="JPEG")  # was left out of the folder, read by path
    Image.fromarray(picture).save(tmp_path / "d.tga")
    assert processor(tmp_path)["pixel_values"].shape == (4, 3, 32, 32)
    (tmp_path / "c.jfif").unlink()
    (tmp_path / "d.tga").unlink()
    assert processor(np.stack([picture] * 3))["pixel_values"].shape == (3, 3, 32, 32)
    tensors = torch.from_numpy(np.stack([picture] * 2)).permute(0, 3, 1, 2)
    assert processor([tensors, picture])["pixel_values"].shape == (3, 3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        processor(tmp_path / "empty")
    with pytest.raises(InputError, match="no images to make a batch of"):  # was torch.stack's RuntimeError
        processor([])


def test_an_empty_path_is_refused_not_read_as_the_current_folder(picture, processor, tmp_path, monkeypatch):
    """Path("") is ".": embed("") read every image of the working folder."""
    Image.fromarray(picture).save(tmp_path / "holiday.jpg")
    monkeypatch.chdir(tmp_path)
    for inputs in ("", [" "], ["holiday.jpg", ""]):
        with pytest.raises(InputError, match="is an empty path; pass a file or folder name"):
            processor(inputs)


def test_datasets_columns_and_generators_expand_to_images(picture, processor):
    """A `datasets` Dataset gives its Image column (decoded or not, or in torch / numpy format), a
    column or a generator its items, and PNG bytes decode: the same crops as the PIL images themselves."""
    import datasets

    images = [Image.fromarray(picture), Image.fromarray(picture[::-1].copy())]
    expected = processor(images)["pixel_values"]
    dataset = datasets.Dataset.from_dict({"img": images, "label": [0, 1]}).cast_column("img", datasets.Image())
    undecoded = dataset.cast_column("img", datasets.Image(decode=False))
    pngs = [row["bytes"] for row in undecoded["img"]]
    for inputs in (dataset, dataset["img"], dataset.with_format("torch"), dataset.with_format("numpy"),
                   (image for image in images), undecoded, pngs):
        assert torch.equal(processor(inputs)["pixel_values"], expected)
    with pytest.raises(InputError, match="cannot decode image bytes \\(5 bytes\\): Pillow knows no image format in "
                                         "it; are they") as err:
        processor(b"junk!")
    assert "BytesIO" not in str(err.value)  # PIL's text named the buffer by its address
    with pytest.raises(InputError, match="no Image column; its features are .*'label'"):
        processor(dataset.remove_columns("img"))
    with pytest.raises(InputError, match="type dict \\(keys \\['img', 'label'\\]: a dataset row\\? pass the image"):
        processor(dataset[0])


def test_greyscale_becomes_three_equal_channels(picture, processor):
    grey = picture[..., 0]
    for item in (grey, grey[..., None], Image.fromarray(grey), torch.from_numpy(grey),
                 Image.fromarray((grey.astype(np.uint16) * 257)).convert("I;16")):
        crop = processor.prepare(item)
        unnormalised = crop * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        assert torch.allclose(unnormalised[0], unnormalised[1], atol=1e-6)
        assert torch.allclose(unnormalised[0], unnormalised[2], atol=1e-6)


def test_a_mode_i_image_is_read_as_16_bit_and_values_it_cannot_hold_are_named(picture, processor):
    """Mode "I" is how older Pillow opens 16-bit PNGs. Values past 16 bits came out above 1 (or
    below 0), and 8-bit values (`convert("I")` of an "L" image) nearly black, both silently."""
    grey = picture[..., 0]
    sixteen = Image.fromarray(grey.astype(np.int32) * 257)
    assert sixteen.mode == "I" and torch.allclose(processor.prepare(sixteen), processor.prepare(grey), atol=1e-6)
    for values, shown in ((grey.astype(np.int32) * 1000, "from 0 to 255000"), (grey.astype(np.int32) - 5, "from -5")):
        with pytest.raises(InputError, match=f"mode 'I' image with values {shown}.*rescale it"):
            processor.prepare(Image.fromarray(values))
    with pytest.warns(UserWarning, match="mode 'I' image whose values are at most 255: read as 16-bit .* nearly "
                                         "black; if it holds 8-bit values, pass image.convert\\('L'\\)"):
        processor.prepare(Image.fromarray(grey).convert("I"))
    eight_bit = grey.astype(np.uint16)  # both were read as 16-bit silently: 4.0 off in the embedding
    with pytest.warns(UserWarning, match="uint16 array whose values are at most 255: .* pass array.astype\\(np.uint8"):
        processor.prepare(eight_bit)
    with pytest.warns(UserWarning, match="mode 'I;16' image whose values are at most 255"):
        processor.prepare(Image.fromarray(eight_bit))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real 16-bit values are read without a word
        processor.prepare(grey.astype(np.uint16) * 257)


def test_grey_with_alpha_drops_its_alpha_as_rgba_does(picture, processor, tmp_path):
    """An LA image (a grey PNG with transparency) was refused as 2 channels, from a file too."""
    grey = Image.fromarray(picture[..., 0])
    with_alpha = grey.convert("LA")
    with_alpha.save(tmp_path / "grey.png")
    for item in (with_alpha, str(tmp_path / "grey.png")):
        assert torch.equal(processor.prepare(item), processor.prepare(grey))


def test_exif_orientation_turns_a_photo_upright(picture):
    """A JPEG whose EXIF says "rotate 90 degrees clockwise to show" (orientation 6, as phones write
    it) comes out as shown: the same pixels as the file without the tag, turned."""
    import io

    from modalities.vision.processing import load_image

    image = Image.fromarray(picture[:, :20])
    tagged, plain = io.BytesIO(), io.BytesIO()
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tagged, format="JPEG", exif=exif)
    image.save(plain, format="JPEG")
    upright = load_image(tagged.getvalue())
    assert upright.shape[1:] == (20, picture.shape[0])
    assert torch.equal(upright, torch.rot90(load_image(plain.getvalue()), k=-1, dims=(1, 2)))
    opened = Image.open(tagged)  # a PIL image of the same file was not turned (0.40 off the path's embedding)
    assert torch.equal(load_image(opened), upright)
    assert torch.equal(load_image(ImageOps.exif_transpose(opened)), upright)  # turned once, not twice


def test_palette_images_go_through_rgb(picture, processor):
    palette = Image.fromarray(picture).quantize(16)
    assert processor.prepare(palette).shape == (3, 32, 32)


def test_palette_images_keep_their_colours(picture, processor):
    """A palette ("P") image without transparency is read as the RGB image it shows: its crop
    equals the crop of palette.convert("RGB") exactly (read as grey, a red-and-blue picture
    would lose its colours and still have three channels)."""
    palette = Image.fromarray(picture).quantize(16)
    assert torch.equal(processor.prepare(palette), processor.prepare(np.asarray(palette.convert("RGB"))))


def test_center_crop_rounds_its_offset_as_torchvision():
    """torchvision's centre crop starts at round((H - S) / 2): 7 rows cropped to 4 start at row 2
    (round(1.5)), and 10 columns cropped to 4 at column 3; flooring would start the rows at 1,
    a one-pixel shift from the reference preprocessing."""
    from modalities.vision.processing import center_crop

    image = torch.arange(7.0)[:, None] * 100 + torch.arange(10.0)
    crop = center_crop(image[None], 4)[0]
    assert crop[0, 0].item() == 203.0 and crop.shape == (4, 4)


def test_no_resize_when_the_shorter_side_already_fits(picture):
    processor = ImageProcessor(resize_size=40, crop_size=40)
    crop = processor.prepare(picture)
    expected = torch.from_numpy(picture[:, 8:48]).permute(2, 0, 1).float() / 255
    assert torch.allclose(crop * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1),
                          expected, atol=1e-6)


@pytest.mark.parametrize("item, message", [
    (np.zeros((8, 8, 2), np.uint8), "2 channels .grey \\+ alpha"),
    (torch.zeros(2, 8, 8), "2 channels"),
    (np.zeros((0, 8, 3), np.uint8), "empty \\(0 x 8 pixels\\)"),
    (torch.zeros(3, 8, 0), "empty \\(8 x 0 pixels\\)"),
    (np.full((8, 8, 3), np.nan, np.float32), "192 NaN or infinite"),
    (np.full((8, 8, 3), 200.0, np.float32), "values in \\[200, 200\\].*divide 0-255 values by 255"),
    (np.zeros((3, 16, 16), np.uint8), "looks channels-first"),
    (np.zeros((8, 8, 3), np.int64), "dtype int64"),
    (np.zeros((2, 2, 8, 8, 3), np.uint8), "shape \\(2, 2, 8, 8, 3\\)"),
    (torch.zeros(3, 8, 8, dtype=torch.int32), "dtype torch.int32"),
    (torch.zeros(8, 8, 3), "looks channels-last; torch images are \\(C, H, W\\)"),
    ({"image": 1}, "type dict \\(keys \\[.image.\\]: a dataset row.*is not supported"),
])
def test_bad_inputs_are_named(item, message):
    with pytest.raises(InputError, match=message):
        ImageProcessor(resize_size=8, crop_size=8).prepare(item)


def test_bad_files_are_named(tmp_path, processor):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="cannot decode image file '.*broken.png'"):
        processor.prepare(tmp_path / "broken.png")
    with pytest.raises(InputError, match="'.*missing.jpg' does not exist"):
        processor.prepare(str(tmp_path / "missing.jpg"))
    with pytest.raises(InputError, match="image input 'https://example.com/cat.jpg' is a URL; the zoo reads local"):
        processor.prepare("https://example.com/cat.jpg")  # was "'https:/example.com/cat.jpg' does not exist"
    with pytest.raises(InputError, match="is a parquet dataset, not one image file; pass its rows"):
        processor.prepare(tmp_path / "test-00000-of-00001.parquet")  # was "cannot decode image file"


def test_an_image_beyond_pillows_pixel_limit_is_named(picture, processor, tmp_path, monkeypatch):
    """PIL's DecompressionBombError came through bare, without the input's number or a fix."""
    from PIL import Image as PILImage

    Image.fromarray(picture).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", picture.shape[0] * picture.shape[1] // 3)
    with pytest.raises(InputError, match="image file '.*big.png' is too large to decode safely .*raise "
                       "PIL.Image.MAX_IMAGE_PIXELS"):
        processor.prepare(tmp_path / "big.png")


def test_errors_name_the_input_and_bad_settings_are_refused(processor):
    with pytest.raises(InputError, match="image array of shape \\(4, 2, 3\\) has"):
        processor.prepare(np.zeros((4, 2, 3), np.float32) + np.nan)
    with pytest.raises(ConfigError, match="resize_size 16 must be at least crop_size 32"):
        ImageProcessor(resize_size=16, crop_size=32)
    with pytest.raises(ConfigError, match="image_std"):
        ImageProcessor(image_std=(0.2, 0.0, 0.2))
    with pytest.raises(ConfigError, match="resize_size 1000000 is above 8192 pixels"):  # 12 TB at the first image
        ImageProcessor(resize_size=10**6)
    with pytest.raises(ConfigError, match=r"image_mean \(nan, 0.5, 0.5\) and image_std .* must be finite"):
        ImageProcessor(image_mean=(float("nan"), 0.5, 0.5))  # blamed the image: "pixel_values hold NaN"


def test_settings_round_trip_through_json(processor, tmp_path):
    processor.save(tmp_path)
    assert ImageProcessor.from_file(tmp_path / "preprocessor_config.json") == processor


def test_embed_names_the_bad_item(picture):
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=1, num_heads=3))
    with pytest.raises(InputError, match="input 1: image array .* 2 channels"):
        encoder.embed([picture, np.zeros((40, 40, 2), np.uint8)], progress=False)


def test_an_audio_option_given_to_an_image_encoder_is_refused_by_name(picture):
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=1, num_heads=3))
    with pytest.raises(InputError, match="image inputs take no options; got sampling_rate=: drop it"):
        encoder.embed([picture], sampling_rate=16000, progress=False)
    batch = torch.zeros(2, 3, 32, 32)
    with pytest.raises(InputError, match="^image inputs take no options; got sampling_rate="):  # was a TypeError
        encoder.embed(batch, sampling_rate=16000, progress=False)
    for inputs in ([picture], batch):  # a misspelt option is the call's fault, not input 0's
        with pytest.raises(InputError, match=r"^image inputs take no options; got pooling=: drop it \(embed's own"):
            encoder.embed(inputs, pooling="cls", progress=False)


def test_prepare_batch_equals_prepare_image_by_image(processor):
    batch = torch.randint(0, 256, (4, 4, 50, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    alone = torch.stack([processor.prepare(image) for image in batch])
    for images in (batch, batch.float() / 255):
        prepared = processor.prepare_batch(images, "cpu")
        assert prepared.shape == (4, 3, 32, 32) and (prepared - alone).abs().max() <= 1e-6


def test_prepare_batch_refuses_what_is_not_a_batch(processor):
    with pytest.raises(InputError, match="image batch of shape \\(3, 8, 8\\) is not a batch"):
        processor.prepare_batch(torch.zeros(3, 8, 8))
    with pytest.raises(InputError, match="image batch of shape \\(0, 3, 8, 8\\) is not a batch"):
        processor.prepare_batch(torch.zeros(0, 3, 8, 8))
    with pytest.raises(InputError, match="input 12: image tensor of shape \\(3, 8, 8\\) has values in"):
        processor.prepare_batch(torch.stack([torch.zeros(3, 8, 8), torch.full((3, 8, 8), 2.0)]), first_index=11)


def test_the_processor_names_the_bad_image_of_a_batch():
    """`processor([...])` in a training loop said an image held NaN, not which one."""
    images = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), np.nan, np.float32)]
    with pytest.raises(InputError, match=r"^input 1: image array of shape \(8, 8, 3\) has 192 NaN"):
        ImageProcessor(resize_size=32, crop_size=32)(images)
