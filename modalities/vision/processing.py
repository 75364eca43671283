"""Images in: PIL images, arrays, tensors, files or folders -> normalised (C, S, S) crops.

Every input becomes a float32 tensor in [0, 1] of the processor's `channels` first, whatever
its type, so that the same picture gives the same crop from a PNG, a uint8 array or a float
tensor. Then, as in DINO's evaluation transform: resize the shorter side to `resize_size`
(bicubic with antialiasing, torch's kernel, clamped back to [0, 1] as an 8-bit image would
be), take the central `crop_size` square and normalise with `image_mean` / `image_std`.

Channels (`to_channels`): for an RGB model (3, the default) greyscale gains three equal
channels; for a greyscale model (1) colour becomes its luminance; an alpha channel is dropped
(not composited). A model of any other channel count takes arrays and tensors of exactly
that many channels.

Arrays are HWC (numpy's and PIL's layout), tensors are CHW (torch's); a 4-dimensional
array or tensor is a batch of images, a folder stands for the image files in it.
`ImageProcessor.prepare_batch` prepares a (B, C, H, W) tensor at once on a device (a GPU),
with the same results as `prepare` image by image.

Shapes: B images, C channels, H x W pixels, S crop side.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import ConfigError, InputError, naming_input, warn
from zoo.io import folder_files
from zoo.processing import (
    DatasetRows, Processor, check_file_input, column_as_dataset, is_dataset, is_file_object,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the largest side an image processor resizes to (a ViT reading 8192 px has 262,144 patches of 16)
MAX_IMAGE_SIDE = 8192
#: file name endings of photo and raster formats, by the Pillow plugin that opens them
FORMAT_SUFFIXES = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"), "BMP": (".bmp",), "GIF": (".gif",),
                   "TIFF": (".tif", ".tiff"), "WEBP": (".webp",), "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
                   "AVIF": (".avif",), "TGA": (".tga",), "JPEG2000": (".jp2", ".j2k")}


def decodable_suffixes() -> tuple[str, ...]:
    """The image file endings this machine's Pillow opens (AVIF from Pillow 11.3): a folder's
    files are read where a path to one would be. Icons, PSD and EPS are left out of folders."""
    from PIL import Image

    Image.init()
    return tuple(suffix for name, suffixes in FORMAT_SUFFIXES.items() if name in Image.OPEN for suffix in suffixes)


#: file name endings read as images when a folder is given
IMAGE_SUFFIXES = decodable_suffixes()
#: the EXIF tag that says how to turn a photo upright (1: as stored)
EXIF_ORIENTATION = 0x0112
#: channel counts an image may have: grey, RGB, RGBA
CHANNELS = (1, 3, 4)
#: channel counts a model may take from any image (others only from arrays and tensors of that count)
IMAGE_CHANNELS = (1, 3)
#: ITU-R 601-2 luma weights of R, G, B: PIL's "L" conversion (L = R * 299/1000 + G * 587/1000 + B * 114/1000)
LUMA = (0.299, 0.587, 0.114)
#: how far a float image may stray outside [0, 1] (rounding of upstream maths)
RANGE_SLACK = 1e-3
#: integer dtypes and the value of full white
INTEGER_WHITE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def default_statistic(values: Optional[Sequence[float]], rgb: tuple[float, float, float],
                      channels: int) -> tuple[float, ...]:
    """Normalisation values as given, else ImageNet's `rgb` for 3 channels and their average on each
    of other counts (timm's `adapt_to_chs`: 0.449 / 0.226 for a grey model)."""
    if values is not None:
        return tuple(float(value) for value in values)
    return rgb if channels == 3 else (round(sum(rgb) / 3, 6),) * channels


def image_files(folder: Path) -> list[Path]:
    """The image files under `folder` (recursively, sorted, hidden ones left out), warning of
    the others, as `zoo embed` does; an empty folder is an error."""
    return folder_files(folder, IMAGE_SUFFIXES, "image")


def expand_images(inputs: Any) -> Sequence[Any]:
    """Raw inputs as a sequence of single images: folders become their files, 4-d arrays and
    tensors their images, a `datasets` Dataset (or its Image column, `dataset[NAME]`) the
    undecoded images of that column, read as they are reached (`DatasetRows`), and other
    collections (lists, generators) their items; anything else is one image."""
    if isinstance(inputs, (str, Path)):
        check_file_input(inputs, "image")
        if Path(inputs).is_dir():
            return [str(path) for path in image_files(Path(inputs))]
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return list(inputs) if inputs.ndim == 4 else [inputs]
    if is_dataset(inputs):
        return DatasetRows(inputs, "Image")
    column_source = column_as_dataset(inputs, "Image")
    if column_source is not None:
        return DatasetRows(column_source, "Image")
    if isinstance(inputs, (str, Path, bytes, dict)) or type(inputs).__module__.startswith("PIL.") or is_file_object(
            inputs):  # a file object is iterable too: over its lines, each taken for an image
        return [inputs]
    if isinstance(inputs, Iterable):
        return [image for item in inputs for image in expand_images(item)]
    return [inputs]


def read_image_file(path: str | Path) -> torch.Tensor:
    """Decode an image file with PIL into a (C, H, W) float tensor in [0, 1]."""
    check_file_input(path, "image")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {str(path)!r} does not exist; check the path")
    return decode_image(path, f"image file {str(path)!r}", "is it a complete image? Replace or remove it")


def decode_image(source: str | Path | BinaryIO, where: str, fix: str) -> torch.Tensor:
    """Decode an encoded image (a file or a buffer of its bytes) with PIL into (C, H, W) in
    [0, 1], turned upright by its EXIF orientation (as viewers show a phone photo, and as
    transformers' `load_image` does); PIL's errors for broken data become one `InputError`
    naming `where` and `fix`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.load()
            return pil_to_tensor(upright(image), where)
    except Image.DecompressionBombError as err:
        raise InputError(f"{where} is too large to decode safely ({err}); if you trust it, raise "
                         "PIL.Image.MAX_IMAGE_PIXELS, or shrink it first") from err
    except UnidentifiedImageError as err:  # its text names a buffer by its address
        raise InputError(f"cannot decode {where}: Pillow knows no image format in it; {fix}") from err
    except (OSError, SyntaxError) as err:  # PIL's errors for broken data
        raise InputError(f"cannot decode {where} ({err}); {fix}") from err


def upright(image: Any) -> Any:
    """A PIL image turned as its EXIF orientation says, for a file decoded here and for a PIL
    image opened by the caller alike (`ImageOps.exif_transpose` drops the tag, so an image it
    turned already is left as is)."""
    from PIL import ImageOps

    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # exif_transpose alone copies every image
        return ImageOps.exif_transpose(image)
    return image


def pil_to_tensor(image: Any, name: str = "PIL image") -> torch.Tensor:
    """A PIL image as (C, H, W) float in [0, 1]: 16-bit and float modes keep their range,
    palette and other modes go through RGB (RGBA keeps its alpha, dropped later; grey + alpha
    drops it here, as a 2-channel array is refused)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "I":
            check_sixteen_bits(values, name)
        warn_if_eight_bit(values, f"{name} is a mode {image.mode!r} image",
                          "pass image.convert('L') or the uint8 array")
        return array_to_tensor(values / 65535.0, name)
    if image.mode == "F":
        return array_to_tensor(np.asarray(image, dtype=np.float32), name)
    if image.mode in ("LA", "La"):
        image = image.getchannel("L")
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    return array_to_tensor(np.asarray(image), name)


def check_sixteen_bits(values: np.ndarray, name: str) -> None:
    """Mode "I" (32-bit integers) is read as 16-bit, as Pillow opens 16-bit PNGs in it: values
    beyond 0-65535 are refused."""
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise InputError(f"{name} is a mode 'I' image with values from {low:g} to {high:g}; mode 'I' is read as "
                         "16-bit (0-65535): rescale it to that range, or to 8 bits and convert('L')")


def warn_if_eight_bit(values: np.ndarray, what: str, fix: str) -> None:
    """Warn about a 16-bit image (`what`: a mode "I" or "I;16" image, a uint16 array) whose values
    are all 8-bit, as `convert("I")` of an "L" image or `array.astype(np.uint16)` make: read as
    16-bit it comes out nearly black (4.0 max abs diff in the embedding)."""
    high = float(values.max()) if values.size else 0.0
    if 0 < high <= 255:
        warn(f"{what} whose values are at most {high:g}: read as 16-bit (0-65535) it is nearly black; if "
             f"it holds 8-bit values, {fix}")


def image_channel_counts(channels: int) -> tuple[int, ...]:
    """The channel counts of the images a `channels`-channel model takes: grey, RGB and RGBA for
    a grey or an RGB model, exactly `channels` for any other."""
    return CHANNELS if channels in IMAGE_CHANNELS else (channels,)


def array_to_tensor(array: np.ndarray, name: str = "array", channels: int = 3) -> torch.Tensor:
    """An HW or HWC array (uint8, uint16 or float in [0, 1]) as (C, H, W) float32; `channels`
    (the model's) tells which C are images, for the channels-first guess."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InputError(f"{name} has shape {array.shape}; an image array is (H, W) or (H, W, C)")
    counts = image_channel_counts(channels)
    if array.shape[-1] not in counts and array.shape[0] in counts:
        raise InputError(f"{name} has shape {array.shape}, which looks channels-first; numpy images are "
                         "(H, W, C): pass array.transpose(1, 2, 0), or a torch tensor (C, H, W)")
    if array.dtype == np.uint16:
        warn_if_eight_bit(array, f"{name} is a uint16 array", "pass array.astype(np.uint8)")
    if array.dtype in INTEGER_WHITE:
        return torch.from_numpy(array.astype(np.float32) / INTEGER_WHITE[array.dtype]).permute(2, 0, 1)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name} has dtype {array.dtype}; pass uint8, uint16 or float in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)


def tensor_to_image(tensor: torch.Tensor, name: str = "tensor", channels: int = 3) -> torch.Tensor:
    """An HW or CHW tensor (uint8 or float in [0, 1]) as (C, H, W) float32; `channels` (the
    model's) tells which C are images, for the channels-last guess."""
    tensor = tensor.detach().cpu()
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3:
        raise InputError(f"{name} has shape {tuple(tensor.shape)}; an image tensor is (H, W), (C, H, W) "
                         "or a batch (B, C, H, W)")
    counts = image_channel_counts(channels)
    if tensor.shape[0] not in counts and tensor.shape[-1] in counts:
        raise InputError(f"{name} looks channels-last; torch images are (C, H, W): pass tensor.permute(2, 0, 1) "
                         "(a batch: permute(0, 3, 1, 2)), or a numpy array (H, W, C)")
    return to_float(tensor, name)


def to_float(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """A uint8 (0-255) or float tensor of any shape as float32 (uint8 divided by 255), on its device."""
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)  # in place in its own copy: 256 images at 224 px are 154 MB a copy
    if not tensor.is_floating_point():
        raise InputError(f"{name} has dtype {tensor.dtype}; pass uint8 or float in [0, 1]")
    return tensor.float()


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) luma with PIL's "L" weights (`LUMA`), in float: the
    values of `Image.convert("L")` before its rounding to 8 bits (at most 0.5 / 255 apart)."""
    weights = torch.tensor(LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(-3, keepdim=True)


def check_channels(image: torch.Tensor, name: str, channels: int) -> None:
    """Refuse an image whose channel count a `channels`-channel model cannot take, naming the fix."""
    count = image.shape[-3]
    if count in image_channel_counts(channels):
        return
    if channels not in IMAGE_CHANNELS:
        raise InputError(f"{name} has {count} channels, but this model takes {channels}-channel images; pass a "
                         f"numpy array (H, W, {channels}) or a torch tensor ({channels}, H, W) with exactly "
                         f"{channels} channels")
    hint = " (grey + alpha? convert it to 'L' or 'RGB' first)" if count == 2 else ""
    raise InputError(f"{name} has {count} channels{hint}; images need 1 (grey), 3 (RGB) or 4 (RGBA)")


def to_channels(image: torch.Tensor, name: str, channels: int = 3) -> torch.Tensor:
    """Check a (C, H, W) or (B, C, H, W) float image and give it the model's `channels`.

    For 3 (RGB): grey is repeated, alpha dropped. For 1 (grey): grey stays, colour becomes its
    luminance as PIL's "L" conversion makes it (`luminance`), alpha dropped first (as "L"
    ignores it). Any other count is taken only as it is.
    """
    check_channels(image, name, channels)
    height, width = image.shape[-2:]
    if height == 0 or width == 0:
        raise InputError(f"{name} is empty ({height} x {width} pixels); drop it")
    low, high = (float(value) for value in torch.aminmax(image))
    if not (np.isfinite(low) and np.isfinite(high)):  # min and max are NaN or infinite iff some value is
        bad = int((~torch.isfinite(image)).sum())
        raise InputError(f"{name} has {bad} NaN or infinite values; clean it (e.g. np.nan_to_num) first")
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        raise InputError(f"{name} has values in [{low:.3g}, {high:.3g}]; float images must be in [0, 1] "
                         "(divide 0-255 values by 255, and pass raw pixels, not normalised ones)")
    if low < 0.0 or high > 1.0:  # a copy only where one is needed (never for uint8 pixels)
        image = image.clamp(0.0, 1.0)
    if channels not in IMAGE_CHANNELS:
        return image
    if channels == 1:
        return image if image.shape[-3] == 1 else luminance(image[..., :3, :, :])
    return image.expand(*image.shape[:-3], 3, -1, -1) if image.shape[-3] == 1 else image[..., :3, :, :]


def to_rgb(image: torch.Tensor, name: str) -> torch.Tensor:
    """Check a (C, H, W) or (B, C, H, W) float image and make it RGB: grey repeated, alpha dropped."""
    return to_channels(image, name, 3)


def load_image(item: Any, channels: int = 3) -> torch.Tensor:
    """One raw image (path, PIL image, HWC array, CHW tensor, the bytes of an image file or the
    file open, or `datasets`' undecoded {"bytes", "path"}) as (`channels`, H, W) float in [0, 1] (`to_channels`).

    A model of a channel count other than 1 or 3 takes only arrays and tensors: the pixels of
    files and PIL images are grey, RGB or RGBA, not its channels (an RGBA file is no RGB +
    infrared image)."""
    if isinstance(item, dict) and set(item) == {"bytes", "path"}:
        item = item["bytes"] if item["bytes"] is not None else item["path"]
    if isinstance(item, np.ndarray):
        name = f"image array of shape {item.shape}"
        return to_channels(array_to_tensor(item, name, channels), name, channels)
    if isinstance(item, torch.Tensor):
        name = f"image tensor of shape {tuple(item.shape)}"
        return to_channels(tensor_to_image(item, name, channels), name, channels)
    name = encoded_image_name(item)
    image = decode_input(item, name)
    if channels not in IMAGE_CHANNELS:
        raise InputError(f"{name} decodes to a {tuple(image.shape)} (C, H, W) image, but this model takes "
                         f"{channels}-channel images, from numpy arrays (H, W, {channels}) or torch tensors "
                         f"({channels}, H, W) only: pass the image's {channels} channels as one")
    return to_channels(image, name, channels)


def encoded_image_name(item: Any) -> str:
    """How errors name a file, the bytes of one or a PIL image; other inputs are refused here."""
    if isinstance(item, (str, Path)):
        return f"image file {str(item)!r}"
    if isinstance(item, (bytes, bytearray)):
        return f"image bytes ({len(item)} bytes)"
    if is_file_object(item):
        return f"image file object {getattr(item, 'name', type(item).__name__)!r}"
    if type(item).__module__.startswith("PIL."):
        return f"PIL image ({item.mode}, {item.size[0]} x {item.size[1]})"
    row = ""
    if isinstance(item, dict):
        row = f" (keys {sorted(map(str, item))}: a dataset row? pass the image, e.g. row[key])"
    raise InputError(f"image input of type {type(item).__name__}{row} is not supported; pass a file path, a folder, "
                     "a PIL image, a numpy array (H, W, C), a torch tensor (C, H, W) or an image file's bytes")


def decode_input(item: Any, name: str) -> torch.Tensor:
    """A file, the bytes of one or a PIL image (named `name`) as its (C, H, W) pixels in [0, 1]."""
    if isinstance(item, (str, Path)):
        return read_image_file(item)
    if isinstance(item, (bytes, bytearray)):
        return decode_image(io.BytesIO(item), name, "are they a complete image file?")
    if is_file_object(item):
        return decode_image(item, name, "is it a complete image file, read from its start?")
    return pil_to_tensor(upright(item))


def raise_first_bad_image(images: torch.Tensor, first_index: int = 0, channels: int = 3) -> None:
    """Check the images of a batch one by one (for a `channels`-channel model) and raise the first
    one's error, prefixed `input {first_index + i}: `; returns if every image passes."""
    for position, image in enumerate(images):
        with naming_input(first_index + position):
            load_image(image, channels)


def resize_shorter_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) or (B, C, H, W) -> the shorter side `size`, aspect kept (torchvision's rounding);
    no-op if it already is. Images of a batch are resized independently, as one by one."""
    height, width = image.shape[-2:]
    if min(height, width) == size:
        return image
    if height <= width:
        target = (size, int(size * width / height))
    else:
        target = (int(size * height / width), size)
    batch = image if image.dim() == 4 else image[None]
    resized = F.interpolate(batch, size=target, mode="bicubic", align_corners=False, antialias=True)
    resized = resized.clamp(0.0, 1.0)
    return resized if image.dim() == 4 else resized[0]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size square of (..., H, W) (torchvision's rounding); smaller images are an error."""
    height, width = image.shape[-2:]
    if height < size or width < size:
        raise InputError(f"image of {height} x {width} pixels is smaller than the {size}-pixel crop")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image[..., top : top + size, left : left + size]


@dataclasses.dataclass
class ImageProcessor(Processor):
    """Images for vision encoders.

    Args:
        resize_size: the shorter side is resized to this (default: 256).
        crop_size: side of the central square crop the encoder sees (default: 224).
        image_mean / image_std: normalisation, one value per channel (default: ImageNet's for 3
            channels; for other counts their average on each channel, as timm's `adapt_to_chs`).
        channels: the channels C of the crops, the model's input channels: 3 (RGB), 1 (grey:
            colour becomes its luminance, as PIL's "L"), or another count, taken only from
            arrays and tensors of exactly that many channels (default: 3; a
            preprocessor_config.json without it was saved for RGB).
    """

    processor_type = "image"
    file_suffixes = IMAGE_SUFFIXES
    dataset_feature = "Image"

    resize_size: int = 256
    crop_size: int = 224
    image_mean: Optional[tuple[float, ...]] = None
    image_std: Optional[tuple[float, ...]] = None
    channels: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.channels, int) or isinstance(self.channels, bool) or self.channels < 1:
            raise ConfigError(f"channels={self.channels!r}; give the model's input channels, e.g. 3 (RGB) or 1 (grey)")
        self.image_mean = default_statistic(self.image_mean, IMAGENET_MEAN, self.channels)
        self.image_std = default_statistic(self.image_std, IMAGENET_STD, self.channels)
        if self.resize_size < self.crop_size or self.crop_size < 1:
            raise ConfigError(f"resize_size {self.resize_size} must be at least crop_size {self.crop_size} (> 0)")
        if self.resize_size > MAX_IMAGE_SIDE:  # 10**6 asked for 12 TB at the first image
            raise ConfigError(f"resize_size {self.resize_size} is above {MAX_IMAGE_SIDE} pixels; give the side the "
                              "model reads, e.g. 224 (ImageNet) or 32 (CIFAR-10)")
        if len(self.image_mean) != self.channels or len(self.image_std) != self.channels:
            raise ConfigError(f"image_mean {self.image_mean} and image_std {self.image_std} need one value per "
                              f"channel, {self.channels} each (channels={self.channels}); give {self.channels} "
                              "values to each, or set channels to their length")
        if min(self.image_std) <= 0:
            raise ConfigError(f"image_std {self.image_std} must be positive")
        if not all(math.isfinite(value) for value in (*self.image_mean, *self.image_std)):
            raise ConfigError(f"image_mean {self.image_mean} and image_std {self.image_std} must be finite numbers")

    def prepare(self, item: Any, **options: Any) -> torch.Tensor:
        """One image -> (C, S, S) normalised crop."""
        self.check_options(options)
        return self.crop_and_normalise(load_image(item, self.channels))

    def prepare_batch(self, images: torch.Tensor, device: str | torch.device | None = None,
                      first_index: int = 0) -> torch.Tensor:
        """A (B, C, H, W) uint8 or float batch -> (B, channels, S, S) normalised crops on `device`.

        Exists because `prepare` works one image at a time on one CPU thread, which held a
        GPU `embed` to about 300 images/s against 9,000 for the forward alone
        (benchmarks/bench_gmml.py). Here uint8 crosses to the device as bytes and the
        whole batch is converted, checked, resized, cropped and normalised there in a few
        kernels, with the same results as `prepare` image by image. When a batch-wide check
        fails, the images are checked one by one so that the error is `prepare`'s, prefixed
        `input {first_index + i}: `.

        Args:
            images: (B, C, H, W), C = 1 (grey), 3 (RGB) or 4 (RGBA, alpha dropped), or the
                processor's `channels` (`to_channels`).
            device: where to prepare (default: where `images` are).
            first_index: the index of `images[0]` among the caller's inputs, for errors.
        """
        name = f"image batch of shape {tuple(images.shape)}"
        if images.dim() != 4 or len(images) == 0:
            raise InputError(f"{name} is not a batch (B, C, H, W) of at least one image; pass one "
                             "(or a single image to `prepare`)")
        try:
            pixels = to_channels(to_float(images.detach().to(device), name), name, self.channels)
        except InputError:
            raise_first_bad_image(images, first_index, self.channels)
            raise
        return self.crop_and_normalise(pixels)

    def crop_and_normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) or (B, C, H, W) in [0, 1], C = `channels` -> (C, S, S) or (B, C, S, S) normalised crops."""
        image = center_crop(resize_shorter_side(image, self.resize_size), self.crop_size)
        return self.normalise(image)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) in [0, 1] -> normalised with `image_mean` / `image_std`."""
        mean = torch.tensor(self.image_mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.tensor(self.image_std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return (image - mean).div_(std)  # one new tensor, not two

    def size(self, piece: torch.Tensor) -> int:
        """A crop's pixels: `embed` sorts pieces by size (all crops share one here)."""
        return piece.shape[-1] * piece.shape[-2]

    def collate(self, pieces: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Crops of one size stacked into {"pixel_values": (B, C, S, S)}."""
        return {"pixel_values": torch.stack(list(pieces))}

    def batch(self, inputs: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Images, folders or batches -> one batch {"pixel_values": (B, C, S, S)}."""
        images = expand_images(inputs)
        if not images:
            raise InputError("no images to make a batch of; pass at least one")
        return self.collate(self.prepare_each(images, **kwargs))
