"""Image collections for pretraining: folders, parquet, MNIST idx, saved `datasets`, and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from helpers import shared_path

from modalities.vision.image_sets import mnist_split, open_images, read_idx
from zoo.errors import InputError


def save_png(path, value: int, size=(6, 5), mode="RGB"):
    from PIL import Image

    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def parquet_of(folder, name: str, count: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for index in range(count):
        save_png(folder / "tmp.png", index * 20)
        rows.append({"bytes": (folder / "tmp.png").read_bytes(), "path": f"{index}.png"})
    (folder / "tmp.png").unlink()
    pq.write_table(pa.table({"img": rows, "label": list(range(count))}), folder / name)


def test_folder_images_are_rgb_and_bad_files_are_named(tmp_path):
    (tmp_path / "sub").mkdir()
    save_png(tmp_path / "a.png", 10)
    save_png(tmp_path / "sub" / "b.png", 200, mode="L")
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    images = open_images(tmp_path)
    assert len(images) == 3
    assert images.load(0).shape == (3, 5, 6) and torch.equal(images.load(2)[0], images.load(2)[2])
    with pytest.raises(InputError, match="c.jpg"):
        images.load(1)


def test_a_parquet_file_without_images_beside_image_files_is_left_out_saying_so(tmp_path, capsys):
    """`zoo embed -o DATA/emb.parquet` beside the images hid all of them: pretraining said "has no
    Image column" and the probe "holds no files ... the encoder reads" of a folder of 8 images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zoo.probe_job import labelled_files

    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            save_png(tmp_path / split / label / "1.png", 10)
    pq.write_table(pa.table({"input": ["x"], "embedding": [[0.5, 0.25]]}), tmp_path / "emb.parquet")
    with pytest.warns(UserWarning, match=r"left out \['emb.parquet'\], parquet files without an image column"):
        assert len(open_images(tmp_path)) == 2 and len(open_images(tmp_path, "all")) == 4
    rows = labelled_files(tmp_path, None, None, (".png",), "Image")
    assert len(rows) == 4 and "left out ['emb.parquet']" in capsys.readouterr().err


def test_parquet_files_and_splits(tmp_path):
    parquet_of(tmp_path, "train-00000-of-00001.parquet", 3)
    parquet_of(tmp_path, "test-00000-of-00001.parquet", 2)
    assert len(open_images(tmp_path)) == 3 and len(open_images(tmp_path, "test")) == 2
    image = open_images(tmp_path / "test-00000-of-00001.parquet").load(1)
    assert image.shape == (3, 5, 6) and float(image[0, 0, 0]) == pytest.approx(20 / 255)
    with pytest.raises(InputError, match="split 'validation'"):
        open_images(tmp_path, "validation")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(InputError, match="broken.parquet"):
        open_images(tmp_path / "broken.parquet")


def test_parquet_files_named_by_their_split_alone_are_read_by_split(tmp_path):
    """train.parquet (3 rows) and test.parquet (2) are the two splits, as `<split>.parquet` is
    documented: matching only `<split>-*` names or `<split>/` folders found neither and refused
    both folders' default --split train."""
    parquet_of(tmp_path, "train.parquet", 3)
    parquet_of(tmp_path, "test.parquet", 2)
    assert len(open_images(tmp_path)) == 3 and len(open_images(tmp_path, "test")) == 2


def test_a_parquet_row_that_is_not_an_image_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_of(tmp_path, "good.parquet", 1)
    good = pq.read_table(tmp_path / "good.parquet").to_pylist()[0]["img"]
    rows = [good, {"bytes": b"\x89PNG truncated", "path": "bad.png"}]
    pq.write_table(pa.table({"img": rows, "label": [0, 1]}), tmp_path / "mixed.parquet")
    images = open_images(tmp_path / "mixed.parquet")
    assert images.load(0).shape == (3, 5, 6)
    with pytest.raises(InputError, match=r"cannot decode image 1 of .*mixed.parquet.*drop that row or re-encode it"):
        images.load(1)


def test_parquet_image_column_is_found_by_metadata_then_by_type(tmp_path):
    """The Hub's metadata names the Image column even when another bytes struct comes first (an
    Audio column); without metadata, a plain binary column of encoded images is read too."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_of(tmp_path, "images.parquet", 2)
    images = pq.read_table(tmp_path / "images.parquet").column("img").to_pylist()
    sounds = [{"bytes": b"RIFF not an image", "path": "a.wav"}] * 2
    features = {"sound": {"_type": "Audio"}, "img": {"_type": "Image"}}
    table = pa.table({"sound": sounds, "img": images})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp_path / "both.parquet")
    assert open_images(tmp_path / "both.parquet").load(1).shape == (3, 5, 6)
    pq.write_table(pa.table({"png": [row["bytes"] for row in images]}), tmp_path / "binary.parquet")
    binary, structs = open_images(tmp_path / "binary.parquet"), open_images(tmp_path / "images.parquet")
    assert torch.equal(binary.load(1), structs.load(1))
    pq.write_table(pa.table({"label": [0, 1]}), tmp_path / "labels.parquet")
    with pytest.raises(InputError, match=r"has no Image column \(a struct with 'bytes'\); its columns are \['label'\]"):
        open_images(tmp_path / "labels.parquet")


def test_mnist_idx_and_its_manifest_split(tmp_path):
    images = np.arange(20 * 4 * 4, dtype=np.uint8).reshape(20, 4, 4)
    labels = np.repeat(np.arange(2, dtype=np.uint8), 10)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    header = bytes([0, 0, 8, 1]) + (20).to_bytes(4, "big")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + labels.tobytes()))
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    train, test = open_images(tmp_path, "train"), open_images(tmp_path, "test")
    assert (len(train), len(test)) == (16, 4) and len(open_images(tmp_path, "all")) == 20
    assert train.load(0).shape == (3, 4, 4)
    split = mnist_split(labels, "train")
    assert (labels[split] == 0).sum() == 8 and not set(split) & set(mnist_split(labels, "test"))


def test_shared_mnist_and_cifar10_read():
    mnist = open_images(shared_path("data", "mnist_test"))
    assert len(mnist) == 8000 and mnist.load(0).shape == (3, 28, 28)
    cifar = open_images(shared_path("data", "cifar10"), "test")
    assert len(cifar) == 5000 and cifar.load(4999).shape == (3, 32, 32)


def test_saved_datasets_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    save_png(tmp_path / "a.png", 50)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    dataset = datasets.Dataset.from_dict({"image": [str(tmp_path / "a.png")] * 2, "label": [0, 1]},
                                         features=features)
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "saved"))
    assert open_images(tmp_path / "saved").load(1).shape == (3, 5, 6)
    with pytest.raises(InputError, match="splits are \\['train'\\]"):
        open_images(tmp_path / "saved", "test")


def test_missing_and_wrong_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_images(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not .parquet"):
        open_images(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="holds no image files"):
        open_images(tmp_path)
