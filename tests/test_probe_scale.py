"""`zoo probe --data` on a Hub parquet dataset, proved with counters instead of clocks: listing
reads only the label column, and the records are read a batch at a time as chunks of them are
embedded (holding them all from the listing on took +242 MB for CIFAR-10's 55,000 images)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import ChunkRecordingEncoder

import zoo.embed_job
from zoo.errors import InputError
from zoo.probe_job import LabelledRows, item_names, labelled_files, run_probe
from zoo.processing import ParquetRows

CLASSES = ["cat", "dog", "frog"]
FEATURES = {"img": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": CLASSES}}


def write_split(path: Path, labels: list[int], first: int) -> Path:
    """A Hub image parquet file (Image struct and ClassLabel, `datasets`' metadata) in row groups of 10;
    row i holds the bytes b"image {first + i}" and the path "{first + i}.png"."""
    records = [{"bytes": f"image {first + index}".encode(), "path": f"{first + index}.png"}
               for index in range(len(labels))]
    table = pa.table({"img": records, "label": pa.array(labels, pa.int64())})
    metadata = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path, row_group_size=10)
    return path


@pytest.fixture
def hub_set(tmp_path) -> Path:
    """Two train files and a test file of 40 rows (rows 3 and 38 of the second train file unlabelled),
    and a validation file that is no split of the probe's."""
    labels = [index % 3 for index in range(40)]
    holes = [-1 if index in (3, 38) else label for index, label in enumerate(labels)]
    write_split(tmp_path / "train-00000-of-00002.parquet", labels, 0)
    write_split(tmp_path / "train-00001-of-00002.parquet", holes, 40)
    write_split(tmp_path / "test-00000-of-00001.parquet", labels, 80)
    write_split(tmp_path / "validation-00000-of-00001.parquet", labels[:5], 120)
    return tmp_path


class ImageReads:
    """Counts the reads of the image column: whole-table reads of it, and the rows its batched
    reads decode (`ParquetFile.iter_batches`, as `ParquetRows` streams them)."""

    def __init__(self, monkeypatch) -> None:
        self.whole, self.starts, self.rows, self.largest = 0, 0, 0, 0
        iter_batches, read, read_table = pq.ParquetFile.iter_batches, pq.ParquetFile.read, pq.read_table

        def counted_iter_batches(parquet_file, *args, **kwargs):
            self.starts += 1
            for batch in iter_batches(parquet_file, *args, **kwargs):
                if "img" in batch.schema.names:
                    self.rows += batch.num_rows
                    self.largest = max(self.largest, batch.num_rows)
                yield batch

        def counted_read(parquet_file, columns=None, **kwargs):
            self.whole += columns is None or "img" in columns
            return read(parquet_file, columns=columns, **kwargs)

        def counted_read_table(source, columns=None, **kwargs):
            self.whole += columns is None or "img" in columns
            return read_table(source, columns=columns, **kwargs)

        monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted_iter_batches)
        monkeypatch.setattr(pq.ParquetFile, "read", counted_read)
        monkeypatch.setattr(pq, "read_table", counted_read_table)


class RowNumberEncoder(ChunkRecordingEncoder):
    """Embeds a record as (its row number, the square of that number mod 7)."""

    def embed(self, chunk, **options):
        numbers = torch.tensor([float(item["path"].split(".")[0]) for item in self.record(chunk)])
        return torch.stack([numbers, (numbers % 7) ** 2], dim=1)


def every_record(folder: Path) -> list[tuple[dict, str, bool]]:
    """The labelled (record, label, is_test) rows of `hub_set`, read whole, as the probe listed them before."""
    rows = []
    for name in ("test-00000-of-00001", "train-00000-of-00002", "train-00001-of-00002"):
        table = pq.read_table(folder / f"{name}.parquet").to_pylist()
        rows += [(row["img"], CLASSES[row["label"]], name.startswith("test")) for row in table if row["label"] >= 0]
    return rows


def test_listing_a_hub_parquet_dataset_reads_only_its_label_column(hub_set, monkeypatch):
    """Was: every record of every train and test file read and kept while listing."""
    reads = ImageReads(monkeypatch)
    rows = labelled_files(hub_set, None, None, (".png",), "Image")
    assert (reads.whole, reads.rows) == (0, 0)
    expected = every_record(hub_set)
    assert (rows.labels, rows.tests) == ([label for _, label, _ in expected], [test for _, _, test in expected])
    assert len(rows) == len(rows.items) == 118


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cache"])
def test_a_probe_reads_the_records_a_batch_at_a_time_as_chunks_are_embedded(hub_set, tmp_path, monkeypatch, cached):
    """Each record is decoded once per pass (the cache's content digests are one pass, its embedding
    job another), a batch of BATCH_ROWS at a time, and given to the encoder a chunk of SHARD_SIZE at a
    time; the results are those of the records listed whole, and a rerun reuses the cache."""
    monkeypatch.setattr(ParquetRows, "BATCH_ROWS", 4)
    monkeypatch.setattr(zoo.embed_job, "SHARD_SIZE", 16)
    expected = run_probe(RowNumberEncoder(), every_record(hub_set), k=3)
    rows = labelled_files(hub_set, None, None, (".png",), "Image")
    reads, encoder = ImageReads(monkeypatch), RowNumberEncoder()
    cache = tmp_path / "cache" if cached else None
    assert run_probe(encoder, rows, k=3, cache=cache) == expected
    passes = 2 if cached else 1
    assert reads.whole == 0 and reads.rows == 120 * passes and reads.largest <= 4 and encoder.largest_chunk == 16
    if cached:
        assert run_probe(encoder, labelled_files(hub_set, None, None, (".png",), "Image"), k=3, cache=cache) == expected
        assert reads.rows == 120 * 3  # the digests again, no embedding


def test_the_cache_keys_of_records_are_their_content_digests_as_before(hub_set):
    """A cache written before records were streamed is reused: its keys are each record's sha256."""
    rows = labelled_files(hub_set, None, None, (".png",), "Image")
    assert item_names(rows) == [hashlib.sha256(record["bytes"]).hexdigest() for record, _, _ in every_record(hub_set)]


def test_records_differing_past_their_headers_have_other_cache_keys():
    """A record's key digests all its bytes: images of one format and size share their first
    bytes (a PNG's first 64 here), and keyed by those, a --cache of a dataset replaced by other
    images of that size gave the old images' embeddings to the new ones."""
    header = b"\x89PNG\r\n\x1a\n" + bytes(56)
    rows = [({"bytes": header + b"cat", "path": "0.png"}, "cat", False),
            ({"bytes": header + b"dog", "path": "0.png"}, "dog", True)]
    first, second = item_names(rows)
    assert first != second and first == hashlib.sha256(header + b"cat").hexdigest()


def test_rows_taken_as_tuples_are_the_records_read_once_in_order(hub_set, monkeypatch):
    """Finetuning takes the rows as (record, label, is_test) tuples in any order: each file is read
    once, whatever the order."""
    rows = labelled_files(hub_set, None, None, (".png",), "Image")
    reads = ImageReads(monkeypatch)
    expected = every_record(hub_set)
    assert [rows[index] for index in (117, 3, 60, 0)] == [expected[index] for index in (117, 3, 60, 0)]
    assert list(rows) == expected and rows[-2:] == expected[-2:]
    assert reads.starts == 3 and reads.rows == 120
    assert LabelledRows.of(expected).labels == rows.labels


def test_a_non_finite_record_is_named_without_reading_the_others(hub_set, monkeypatch):
    rows = labelled_files(hub_set, None, None, (".png",), "Image")

    class NanAt7(RowNumberEncoder):
        def embed(self, chunk, **options):
            rows = super().embed(chunk, **options)
            return torch.where(rows[:, :1] == 87.0, float("nan"), rows)  # record 7 is row 87, the test file's 7th

    with pytest.raises(InputError, match=r"NaN or infinite values for 1 of 118 items, the first item 7, record 7"):
        run_probe(NanAt7(), rows, k=3)


def test_a_truncated_parquet_file_is_refused_by_name(hub_set, capsys):
    """Was a pyarrow ArrowInvalid traceback ("Parquet magic bytes not found in footer")."""
    test_file = hub_set / "test-00000-of-00001.parquet"
    test_file.write_bytes(test_file.read_bytes()[:300])
    with pytest.raises(InputError, match=r"cannot read parquet file '.*test-00000-of-00001.parquet' .*is it complete"):
        labelled_files(hub_set, None, None, (".png",), "Image")


def test_a_probe_of_files_embeds_its_list_in_one_call(tmp_path):
    """A folder of files is listed as their paths and embedded as before, in one `embed` call."""
    calls = []

    class Recorder:
        def embed(self, items, **options):
            calls.append(list(items))
            return torch.tensor([[float(index), float(index % 2)] for index in range(len(items))])

    rows = [(tmp_path / f"{index}.wav", str(index % 2), index >= 8) for index in range(12)]
    report = run_probe(Recorder(), rows, k=2)
    assert calls == [[str(path) for path, _, _ in rows]] and report["train_items"] == 8
    assert np.isfinite(report["rankme"])


def test_folder_labels_spelt_in_nfd_and_nfc_are_one_label(tmp_path):
    """train/café (NFC) and test/café (NFD, as some macOS copies spell it) were two labels that
    print the same: "test labels ['café'] have no training files (training labels: ['café', ...])"."""
    import unicodedata

    for split, spelling in (("train", "NFC"), ("test", "NFD"), ("train", "NFC"), ("test", "NFC")):
        for label in (unicodedata.normalize(spelling, "café"), "thé"):
            (tmp_path / split / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / split / label / "1.wav").write_bytes(b"")
    rows = labelled_files(tmp_path, None, None, (".wav",))
    assert sorted(label for _, label, _ in rows) == ["café"] * 3 + ["thé"] * 2
