"""`embed(dataset)` reads a `datasets` Dataset's rows as it reaches them (`DatasetRows`): it held
every row's encoded bytes (audio) or decoded image (vision) first, CIFAR-10's 50,000 training
images +404 MB and 7.5 s before the first was embedded."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import torch

from zoo.errors import InputError
from zoo.processing import DatasetRows, undecoded_rows

datasets = pytest.importorskip("datasets")


def wav_bytes(seconds: float, seed: int) -> bytes:
    buffer = io.BytesIO()
    samples = (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)
    soundfile.write(buffer, samples, 16000, format="WAV")
    return buffer.getvalue()


@pytest.fixture
def audio_dataset():
    rows = [{"bytes": wav_bytes(0.1 + 0.01 * index, index), "path": f"{index}.wav"} for index in range(11)]
    return datasets.Dataset.from_dict({"audio": rows, "label": list(range(11))}).cast_column(
        "audio", datasets.Audio(decode=False)).cast_column("audio", datasets.Audio(sampling_rate=16000))


def test_rows_are_read_a_batch_at_a_time_and_equal_the_whole_column(audio_dataset, monkeypatch):
    monkeypatch.setattr(DatasetRows, "BATCH_ROWS", 4)
    rows = DatasetRows(audio_dataset, "Audio")
    assert len(rows) == 11 and rows.rows == []  # nothing read yet
    assert rows[5] == undecoded_rows(audio_dataset, "Audio")[5] and (rows.first, len(rows.rows)) == (4, 4)
    assert list(rows) == undecoded_rows(audio_dataset, "Audio")
    assert rows[-1]["path"] == "10.wav" and [row["path"] for row in rows[2:9:3]] == ["2.wav", "5.wav", "8.wav"]
    with pytest.raises(IndexError):
        rows[11]


def test_embed_of_a_dataset_and_of_its_column_equal_embed_of_its_files(audio_dataset, micro_hubert, tmp_path):
    paths = []
    for row in undecoded_rows(audio_dataset, "Audio"):
        paths.append(tmp_path / row["path"])
        paths[-1].write_bytes(row["bytes"])
    expected = micro_hubert.embed([str(path) for path in paths], progress=False)
    for given in (audio_dataset, audio_dataset["audio"]):
        assert isinstance(micro_hubert.as_item_list(given), DatasetRows)
        assert torch.equal(micro_hubert.embed(given, progress=False), expected)


def test_a_streamed_dataset_embeds_as_the_dataset_does(audio_dataset, micro_hubert):
    """`load_dataset(..., streaming=True)` gives an IterableDataset, which iterated decodes audio
    through torchcodec: an ImportError where that is not installed."""
    expected = micro_hubert.embed(audio_dataset, progress=False)
    assert torch.equal(micro_hubert.embed(audio_dataset.to_iterable_dataset(), progress=False), expected)
    with pytest.raises(InputError, match="the IterableDataset has no Audio column"):
        micro_hubert.embed(audio_dataset.select_columns(["label"]).to_iterable_dataset(), progress=False)


def test_a_dataset_of_two_audio_columns_is_refused_and_either_column_embeds(audio_dataset, micro_hubert):
    """The first Audio column was embedded without a word."""
    rows = undecoded_rows(audio_dataset, "Audio")
    both = datasets.Dataset.from_dict({"audio": rows, "noisy": rows[::-1]})
    for column in ("audio", "noisy"):
        both = both.cast_column(column, datasets.Audio(decode=False)).cast_column(column, datasets.Audio(16000))
    with pytest.raises(InputError, match=r"has 2 Audio columns \['audio', 'noisy'\]; pass the one to embed, e\.g\. "
                                         r"dataset\['audio'\]"):
        micro_hubert.embed(both, progress=False)
    noisy = micro_hubert.embed(both["noisy"], progress=False)
    assert torch.equal(noisy, micro_hubert.embed(audio_dataset, progress=False).flip(0))


def test_an_image_dataset_and_its_column_are_read_as_reached():
    """They were decoded into a list of PIL images first (the crops are unchanged: see
    tests/modalities/vision/test_processing.py)."""
    from PIL import Image

    from modalities.vision.processing import expand_images

    images = [Image.fromarray(np.full((8, 8, 3), value, np.uint8)) for value in (0, 255)]
    dataset = datasets.Dataset.from_dict({"img": images}).cast_column("img", datasets.Image())
    for given in (dataset, dataset["img"]):
        rows = expand_images(given)
        assert isinstance(rows, DatasetRows) and rows.rows == [] and sorted(rows[1]) == ["bytes", "path"]
