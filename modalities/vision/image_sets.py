"""Image collections for pretraining: a folder of files, parquet files (Hugging Face's image
layout), MNIST's idx files, or a `datasets` dataset saved with `save_to_disk`.

Every reader keeps images encoded (or as one uint8 array) and decodes one on `load(i)`, so a
50000-image set costs its file size in memory, and a broken image is reported by name when
it is reached. Images come out as (3, H, W) float in [0, 1] (greyscale repeated).

Shapes: N images, H x W pixels.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from modalities.vision.processing import array_to_tensor, decode_image, image_files, read_image_file, to_rgb
from zoo.errors import InputError, warn
from zoo.processing import parquet_feature_column, reading_parquet, undecoded_rows
from zoo.run_folders import data_record

#: MNIST's idx files (the only MNIST data in ../shared/data is the 10000-image test set)
MNIST_IMAGES, MNIST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
#: ../shared/data/MANIFEST.md's split of MNIST's test set: 8000 for pretraining and probe
#: training, 2000 for probe tests, stratified, seed 0
MNIST_TRAIN_SHARE, MNIST_SEED = 0.8, 0
#: splits that a parquet file name may start with
SPLIT_NAMES = ("train", "test", "validation", "valid", "val")


class ImageFiles:
    """Image files read with PIL."""

    def __init__(self, paths: Sequence[Path], name: str) -> None:
        self.paths, self.name = list(paths), name

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        """Image `index` as (3, H, W) float in [0, 1], decoded when a batch draws it."""
        return to_rgb(read_image_file(self.paths[index]), f"image file {str(self.paths[index])!r}")

    def digest(self) -> str:
        """Each file's name under the folder and its size, as `zoo finetune` records its files:
        the folder may move, and reading every file of a large set again at each resume would
        take minutes."""
        names = (f"{path.relative_to(self.name).as_posix() if path.is_relative_to(self.name) else path.name}:"
                 f"{path.stat().st_size}\n" for path in self.paths)
        return images_digest(len(self), (name.encode("utf-8", "surrogateescape") for name in names))


class EncodedImages:
    """Encoded image files (PNG, JPEG, ...) held as bytes, e.g. the rows of a parquet column."""

    def __init__(self, blobs: Sequence[bytes], name: str) -> None:
        self.blobs, self.name = list(blobs), name

    def __len__(self) -> int:
        return len(self.blobs)

    def load(self, index: int) -> torch.Tensor:
        where = f"image {index} of {self.name}"
        return to_rgb(decode_image(io.BytesIO(self.blobs[index]), where, "drop that row or re-encode it"), where)

    def digest(self) -> str:
        """The images' bytes, which are in memory already (0.2 s for CIFAR-10's 50,000)."""
        return images_digest(len(self), (len(blob).to_bytes(8, "little") + blob for blob in self.blobs))


class ArrayImages:
    """uint8 images (N, H, W) or (N, H, W, C) already in memory."""

    def __init__(self, array: np.ndarray, name: str) -> None:
        self.array, self.name = array, name

    def __len__(self) -> int:
        return len(self.array)

    def load(self, index: int) -> torch.Tensor:
        where = f"image {index} of {self.name}"
        return to_rgb(array_to_tensor(self.array[index], where), where)

    def digest(self) -> str:
        """The array's shape and bytes."""
        return images_digest(len(self), [repr(self.array.shape).encode(), np.ascontiguousarray(self.array).tobytes()])


ImageSet = ImageFiles | EncodedImages | ArrayImages


def images_digest(count: int, parts: Iterable[bytes]) -> str:
    """What a run's images are, wherever they lie, as `zoo pretrain gmml` records them: a resumed
    run on other images of the same number (another parquet file) mixed the two into one run."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return data_record(count, "images", digest)


def open_images(path: str | Path, split: str = "train") -> ImageSet:
    """The images at `path`: a parquet file, a folder of parquet files (the `split` ones), an
    MNIST idx folder, a `datasets` folder from `save_to_disk`, or a folder of image files (its
    `split` subfolder where it has split folders)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputError(f"--data {str(path)!r} is a file but not .parquet; pass a parquet file or a folder")
        return parquet_images([path])
    if not path.is_dir():
        raise InputError(f"--data {str(path)!r} does not exist; pass an image folder, a parquet file or a dataset")
    if (path / MNIST_IMAGES).is_file():
        return mnist_images(path, split)
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return saved_dataset_images(path, split)
    parquets = sorted(path.rglob("*.parquet"))
    imageless = [file for file in parquets if not holds_images(file)]
    if imageless and (len(imageless) < len(parquets) or image_files(path)):  # e.g. zoo embed's own output
        warn(f"--data {str(path)!r}: left out {[file.name for file in imageless]}, parquet files without an image "
             "column")
        parquets = [file for file in parquets if file not in imageless]
    if parquets:
        return parquet_images(split_files(parquets, split, path))
    return folder_images(path, split)


def holds_images(file: Path) -> bool:
    """Whether a parquet file has a column of encoded images; one that cannot be read counts as
    having one, so that reading it gives its own error. A stray .parquet (`zoo embed -o
    DATA/emb.parquet`) hid every image file of its folder: "has no Image column"."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(file)
    except Exception:  # pyarrow raises several types for unreadable files
        return True
    try:
        image_column(schema, str(file))
    except InputError:
        return False
    return True


def folder_images(folder: Path, split: str) -> ImageFiles:
    """The image files of `folder/<split>/` where the folder is split into such subfolders (the
    layout `zoo probe` and `zoo finetune` read: a run read test/ beside train/), else of the whole
    folder, which only the default split "train" and "all" may stand for."""
    splits = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name in SPLIT_NAMES)
    if split == "all":
        return ImageFiles(image_files(folder), str(folder))
    if split in splits:
        return ImageFiles(image_files(folder / split), str(folder / split))
    if splits:
        raise InputError(f"--split {split!r}: {str(folder)!r} has no {split}/ folder (its split folders: "
                         f"{', '.join(splits)}); pass --split with one of them, or all")
    if split != "train":
        raise InputError(f"--split {split!r}: {str(folder)!r} is not split into folders ({', '.join(SPLIT_NAMES)}), "
                         "so its images are read whole with the default --split train; drop --split")
    return ImageFiles(image_files(folder), str(folder))


def split_files(files: Sequence[Path], split: str, folder: Path) -> list[Path]:
    """The parquet files of `split`: named `<split>-*.parquet` / `<split>.parquet` or in a `<split>/` folder;
    a single file with no split in its name serves every split."""
    chosen = [f for f in files if f.name.startswith(f"{split}-") or f.stem == split or f.parent.name == split]
    if chosen:
        return chosen
    if len(files) == 1 and not files[0].name.startswith(SPLIT_NAMES):
        return list(files)
    names = ", ".join(f.name for f in files)
    raise InputError(f"no parquet file of split {split!r} in {str(folder)!r} (found {names}); pass --split "
                     "with one of their prefixes")


def image_column(schema, path: str) -> str:
    """The column of encoded images: the one the file's Hugging Face metadata calls an Image, else
    the first struct with `bytes` (`zoo.processing.parquet_feature_column`), else a binary column."""
    import pyarrow as pa

    binary = [field.name for field in schema if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type)]
    try:
        return parquet_feature_column(schema, "Image", path)
    except InputError:
        if binary:
            return binary[0]
        raise


def parquet_images(files: Sequence[Path]) -> EncodedImages:
    """Encoded images from the image column of parquet files, in file then row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    blobs: list[Optional[bytes]] = []
    for file in files:
        with reading_parquet(file):
            schema = pq.read_schema(file)
            column_name = image_column(schema, str(file))
            column = pq.read_table(file, columns=[column_name]).column(column_name).combine_chunks()
        blobs.extend(column.field("bytes").to_pylist() if pa.types.is_struct(column.type) else column.to_pylist())
    name = files[0].name if len(files) == 1 else f"{len(files)} parquet files in {str(files[0].parent)!r}"
    missing = [index for index, blob in enumerate(blobs) if blob is None]
    if missing:
        raise InputError(f"{name}: rows {missing[:5]} hold no image bytes (only paths?); embed the images")
    if not blobs:
        raise InputError(f"{name} holds no images")
    return EncodedImages(blobs, name)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format: magic, big-endian sizes, uint8 data) as an array."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist_split(labels: np.ndarray, split: str) -> np.ndarray:
    """Indices of the MANIFEST's stratified 80/20 split ("train" / "test"), or of all ("all")."""
    if split == "all":
        return np.arange(len(labels))
    if split not in ("train", "test"):
        raise InputError(f"--split {split!r}: MNIST's test set splits into 'train' (80 %), 'test' (20 %) or 'all'")
    rng = np.random.default_rng(MNIST_SEED)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(MNIST_TRAIN_SHARE * len(members))
        chosen.append(members[:cut] if split == "train" else members[cut:])
    return np.sort(np.concatenate(chosen))


def mnist_images(folder: Path, split: str) -> ArrayImages:
    """The images of MNIST's idx files in `folder`, of the MANIFEST's `split` (`mnist_split`)."""
    images, labels = read_idx(folder / MNIST_IMAGES), read_idx(folder / MNIST_LABELS)
    return ArrayImages(images[mnist_split(labels, split)], f"MNIST {split} split in {str(folder)!r}")


def saved_dataset_images(folder: Path, split: str) -> EncodedImages:
    """The image column of a `datasets` Dataset (or a DatasetDict's `split`) saved to disk."""
    try:
        import datasets
    except ImportError as err:
        raise InputError(f"{str(folder)!r} is a saved `datasets` dataset; pip install datasets to read it") from err
    dataset = datasets.load_from_disk(str(folder))
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise InputError(f"--split {split!r} is not in {str(folder)!r}; its splits are {sorted(dataset)}")
        dataset = dataset[split]
    rows = undecoded_rows(dataset, "Image", repr(str(folder)))
    blobs = [row["bytes"] if row["bytes"] is not None else Path(row["path"]).read_bytes() for row in rows]
    if not blobs:
        raise InputError(f"{str(folder)!r} holds no images")
    return EncodedImages(blobs, f"dataset {str(folder)!r}")
