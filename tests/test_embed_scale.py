"""`zoo embed` at scale, proved with counters instead of clocks: what a job holds in memory
must not grow with the number of inputs (benchmarks/bench_scale.py measures the same at size)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import ChunkRecordingEncoder

from zoo.embed_job import ChainedRows, rows_of_parquet_files, run_embed_job
from zoo.errors import InputError
from zoo.processing import ParquetRows


def write_image_parquet(path: Path, rows: int, row_group_size: int) -> Path:
    """A Hub-style parquet file: an Image struct column {bytes, path} in row groups of `row_group_size`."""
    records = [{"bytes": f"image {index}".encode(), "path": f"{index}.png"} for index in range(rows)]
    pq.write_table(pa.table({"img": records}), path, row_group_size=row_group_size)
    return path


class CountingReads:
    """Counts the parquet reads started (`ParquetFile.iter_batches`) and the rows they decode."""

    def __init__(self, monkeypatch) -> None:
        self.starts, self.rows, self.largest = 0, 0, 0
        original = pq.ParquetFile.iter_batches

        def iter_batches(parquet_file, *args, **kwargs):
            self.starts += 1
            for batch in original(parquet_file, *args, **kwargs):
                self.rows += batch.num_rows
                self.largest = max(self.largest, batch.num_rows)
                yield batch

        monkeypatch.setattr(pq.ParquetFile, "iter_batches", iter_batches)


class FakeEncoder(ChunkRecordingEncoder):
    """A row per item: the number its path starts with."""

    def embed(self, chunk, **options):
        return torch.tensor([[float(item["path"].split(".")[0])] for item in self.record(chunk)])


def test_parquet_rows_are_read_a_batch_at_a_time_as_shards_take_them(tmp_path, monkeypatch):
    """Listing Hub parquet files decodes no rows (it held every file's encoded images before the
    first was embedded: +510 MB for four CIFAR-10 train files); a job decodes each row once, in
    order, one read per file, as its shards reach it."""
    files = [write_image_parquet(tmp_path / f"train-{index}.parquet", 40, 10) for index in range(3)]
    reads = CountingReads(monkeypatch)
    inputs, names = rows_of_parquet_files([str(path) for path in files], "Image")
    assert reads.rows == 0 and len(inputs) == 120 and names[41] == f"{files[1]}#1"
    encoder = FakeEncoder()
    run_embed_job(encoder, inputs, tmp_path / "out.npy", names=names, shard_size=10, progress=False)
    assert (reads.starts, reads.rows) == (3, 120) and encoder.largest_chunk == 10
    assert np.load(tmp_path / "out.npy")[:, 0].tolist() == [float(index % 40) for index in range(120)]


def test_parquet_rows_hold_one_batch(tmp_path, monkeypatch):
    """Indexing holds one batch of BATCH_ROWS rows; a row behind it starts again at its row group,
    a row some row groups ahead skips the ones between."""
    monkeypatch.setattr(ParquetRows, "BATCH_ROWS", 4)
    inputs, _ = rows_of_parquet_files([str(write_image_parquet(tmp_path / "a.parquet", 45, 10))], "Image")
    reads = CountingReads(monkeypatch)
    assert [row["path"] for row in inputs[8:22]] == [f"{index}.png" for index in range(8, 22)]
    parquet_rows = inputs.segments[0]
    assert reads.largest <= 4 and len(parquet_rows.rows) <= 4 and reads.rows <= 24
    assert inputs[3]["path"] == "3.png" and reads.starts == 2  # behind: from row group 0 again
    decoded = reads.rows
    assert inputs[-1]["path"] == "44.png" and reads.starts == 3  # ahead: from row group 4, not through 1 to 3
    assert reads.rows - decoded <= 5 and parquet_rows.rows == [] and parquet_rows.batches is None  # read to its end
    with pytest.raises(IndexError):
        inputs[45]


def test_files_and_parquet_rows_keep_their_order(tmp_path):
    """Files around a parquet file keep their places, and names match the rows one for one."""
    parquet = write_image_parquet(tmp_path / "rows.parquet", 5, 2)
    inputs, names = rows_of_parquet_files(["a.png", "b.png", str(parquet), "c.png"], "Image")
    assert isinstance(inputs, ChainedRows) and len(inputs) == len(names) == 8
    assert inputs[1] == "b.png" and inputs[2]["path"] == "0.png" and inputs[7] == "c.png"
    assert inputs[1:4] == ["b.png", inputs[2], inputs[3]] and inputs[6:] == [inputs[6], "c.png"]
    assert names[2:4] == [f"{parquet}#0", f"{parquet}#1"]
    assert rows_of_parquet_files(["a.png", "b.png"], "Image") == (["a.png", "b.png"], ["a.png", "b.png"])


def test_an_unreadable_parquet_file_is_refused_when_listed(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="cannot read parquet file"):
        rows_of_parquet_files([str(broken)], "Image")
    pq.write_table(pa.table({"id": [0]}), tmp_path / "ids.parquet")
    with pytest.raises(InputError, match="has no Image column"):
        rows_of_parquet_files([str(tmp_path / "ids.parquet")], "Image")


class FakeTableEncoder(FakeEncoder):
    """A table encoder for `run_embed_job`: a table is a row count, read `chunk_rows` rows at a time."""

    def table_chunks(self, tables, chunk_rows):
        import pandas as pd

        for start in range(0, tables[0], chunk_rows):
            yield pd.DataFrame({"value": range(start, min(start + chunk_rows, tables[0]))})

    def embed(self, frame, **options):
        return torch.tensor(frame["value"].to_numpy(), dtype=torch.float32).unsqueeze(1).repeat(1, 3)


class LiveShards:
    """Wraps `read_shard` and counts, at each read, the shards read before that are still in memory."""

    def __init__(self, monkeypatch) -> None:
        import weakref

        import zoo.embed_job

        self.read, self.most_alive = [], 0
        original = zoo.embed_job.read_shard

        def read_shard(shard, load):
            self.most_alive = max(self.most_alive, sum(ref() is not None for ref in self.read))
            rows = original(shard, load)
            self.read.append(weakref.ref(rows if isinstance(rows, np.ndarray) else rows[0]))
            return rows

        monkeypatch.setattr(zoo.embed_job, "read_shard", read_shard)


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
@pytest.mark.parametrize("encoder, inputs", [(FakeEncoder(), [{"path": f"{index}.png"} for index in range(95)]),
                                             (FakeTableEncoder(), [95])], ids=["files", "table"])
def test_a_job_writes_its_output_a_shard_at_a_time(tmp_path, monkeypatch, suffix, encoder, inputs):
    """Joining a job's shards into OUT holds one shard (and the one before, until the writer lets it
    go), not every row: the join of a million table rows to .parquet took 873 MB over the rows' 256 MB."""
    live = LiveShards(monkeypatch)
    output = tmp_path / f"out{suffix}"
    shape = run_embed_job(encoder, inputs, output, shard_size=10, progress=False)
    assert len(live.read) == 10 and live.most_alive <= 1
    if suffix == ".npy":
        rows = np.load(output)
    else:
        table = pq.read_table(output)
        assert table["shape"].to_pylist() == [list(rows_shape) for rows_shape in [rows_shape_of(encoder)] * 95]
        rows = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert shape == f"array {(95, *rows_shape_of(encoder))}" and rows.shape == (95, *rows_shape_of(encoder))
    assert rows[:, 0].tolist() == [float(index) for index in range(95)]


def rows_shape_of(encoder) -> tuple[int, ...]:
    return (3,) if isinstance(encoder, FakeTableEncoder) else (1,)


def test_a_job_of_no_inputs_is_refused(tmp_path):
    with pytest.raises(InputError, match="no inputs"):
        run_embed_job(FakeEncoder(), [], tmp_path / "out.npy", progress=False)


def test_parquet_rows_stream_a_row_group_rather_than_buffer_it(tmp_path):
    """pyarrow reads a whole row group's column into its buffers unless told to stream: CIFAR-10's
    single 50,000-row group peaked at +110 MB, streamed at +40 MB. Here 24 MB in one row group
    must pass through under a third of that in pyarrow's pool."""
    blobs = [{"bytes": np.random.default_rng(index).bytes(8192), "path": f"{index}.jpg"} for index in range(3000)]
    pq.write_table(pa.table({"img": blobs}), tmp_path / "one-group.parquet", row_group_size=3000, compression="none",
                   use_dictionary=False, write_batch_size=64)  # pages of 0.5 MB, as a Hub file has
    code = ("import sys, pyarrow as pa; from zoo.processing import ParquetRows\n"
            "rows = ParquetRows(sys.argv[1], 'img')\n"
            "assert sum(len(rows[i]['bytes']) for i in range(len(rows))) == 3000 * 8192\n"
            "print(pa.default_memory_pool().max_memory())")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "one-group.parquet")], capture_output=True,
                          text=True, check=True)
    assert int(done.stdout) < 8 * 2**20, f"pyarrow's pool peaked at {int(done.stdout) / 2**20:.1f} MiB"


def test_token_rows_go_to_parquet_in_row_groups_without_a_dictionary(tmp_path):
    """One dictionary-encoded row group per shard took pyarrow's pool to 131 MiB for these 37 MB of
    token rows, and the file was 10 % larger than them (a 30-minute recording's 69 MB: 1.7 GB, 64 %)."""
    code = ("import sys, numpy as np, pyarrow as pa; from pathlib import Path\n"
            "from zoo.embed_job import _write_parquet\n"
            "rows = [np.random.default_rng(i).standard_normal((4000, 192)).astype(np.float32) for i in range(12)]\n"
            "_write_parquet(Path(sys.argv[1]), [f'{i}.wav' for i in range(12)], [rows[:6], rows[6:]])\n"
            "print(pa.default_memory_pool().max_memory())")
    output = tmp_path / "tokens.parquet"
    done = subprocess.run([sys.executable, "-c", code, str(output)], capture_output=True, text=True, check=True)
    assert int(done.stdout) < 80 * 2**20, f"pyarrow's pool peaked at {int(done.stdout) / 2**20:.1f} MiB"
    metadata = pq.ParquetFile(output).metadata
    assert metadata.num_rows == 12 and metadata.num_row_groups == 4  # 16 MiB of rows a group at most: 5, 1, 5, 1
    assert output.stat().st_size < 1.01 * 12 * 4000 * 192 * 4
    table = pq.read_table(output)
    assert table["input"].to_pylist() == [f"{i}.wav" for i in range(12)]
    assert np.array_equal(np.asarray(table["embedding"][11].values).reshape(4000, 192),
                          np.random.default_rng(11).standard_normal((4000, 192)).astype(np.float32))


def test_token_rows_of_files_are_embedded_64_inputs_a_shard(tmp_path, monkeypatch):
    """A shard holds its rows until it is written: 1,024 five-minute recordings' tokens were 11.8 GB."""
    import zoo.embed_job

    sizes = []
    monkeypatch.setattr(zoo.embed_job, "_run_job", lambda *args: sizes.append(args[8]) or "")
    monkeypatch.setattr(zoo.embed_job, "_run_table_job", lambda *args: sizes.append(args[7]) or "")
    for encoder, pool, output in [(FakeEncoder(), "none", "e.parquet"), (FakeEncoder(), "mean", "e.npy"),
                                  (FakeTableEncoder(), "none", "t.parquet")]:
        run_embed_job(encoder, [1], tmp_path / output, pool=pool, progress=False)
    assert sizes == [64, 1024, 1024]


class StoppingEncoder(FakeEncoder):
    """`FakeEncoder` whose embed call numbered `stop_at` (from 1) raises KeyboardInterrupt, as Ctrl-C mid-job."""

    def __init__(self, stop_at: int = 0) -> None:
        self.stop_at, self.calls = stop_at, 0

    def embed(self, chunk, **options):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().embed(chunk, **options)


class FileEncoder(StoppingEncoder):
    """A row per file: the number the file holds, read when it is embedded."""

    def embed(self, chunk, **options):
        return super().embed([{"path": f"{Path(name).read_text()}.png"} for name in chunk], **options)


def test_a_resumed_job_makes_again_a_later_shard_whose_file_changed(tmp_path):
    """Each shard's stamp must cover its own files: stamped with files 1 and 2 instead of 2 and 3,
    shard 1 of 2-file shards kept file 3's old row (3.0) after file 3 was rewritten to hold 30."""
    files = [tmp_path / f"{index}.txt" for index in range(6)]
    for index, path in enumerate(files):
        path.write_text(str(index))
    output = tmp_path / "e.npy"
    with pytest.raises(KeyboardInterrupt):  # shards 0 and 1 written, stopped in shard 2
        run_embed_job(FileEncoder(stop_at=3), [str(path) for path in files], output, shard_size=2, progress=False)
    files[3].write_text("30")  # another size: another stamp, whatever the clock's resolution
    run_embed_job(FileEncoder(), [str(path) for path in files], output, shard_size=2, progress=False)
    assert np.load(output)[:, 0].tolist() == [0.0, 1.0, 2.0, 30.0, 4.0, 5.0]


@pytest.mark.parametrize("change, said", [({"order": True}, "inputs"), ({"pool": "max"}, "pool"),
                                          ({"sampling_rate": 8000}, "prepare")])
def test_a_resumed_job_with_other_input_order_pool_or_preprocessing_is_refused(tmp_path, change, said):
    """Each of these changes the rows: a rerun over the same 4 items reversed took shard 0's rows
    (items 0 and 1) for items 3 and 2, and one with another pool or preprocessing mixed its rows
    with the first job's. The rerun is refused, naming what changed."""
    items = [{"path": f"{index}.png"} for index in range(4)]
    output = tmp_path / "e.npy"
    with pytest.raises(KeyboardInterrupt):  # shard 0 written, stopped in shard 1
        run_embed_job(StoppingEncoder(stop_at=2), items, output, shard_size=2, progress=False)
    options = {key: value for key, value in change.items() if key != "order"}
    rerun = items[::-1] if change.get("order") else items
    with pytest.raises(InputError, match=f"holds shards of an interrupted job with other {said}; rerun it"):
        run_embed_job(StoppingEncoder(), rerun, output, shard_size=2, progress=False, **options)


def test_a_row_over_a_row_groups_size_starts_no_empty_row_group(tmp_path, monkeypatch):
    """A row larger than `ROW_GROUP_BYTES` (a 30-minute recording's 69 MB of tokens, over 16 MiB)
    goes alone in its row group: it must not first close an empty group, which wrote a row group
    of 0 rows into the file before it (here 3 groups of 0, 1 and 1 rows, not 2 of 1)."""
    import zoo.embed_job

    monkeypatch.setattr(zoo.embed_job, "ROW_GROUP_BYTES", 16)  # a row of 10 float32 is 40 bytes
    output = tmp_path / "tokens.parquet"
    zoo.embed_job._write_parquet(output, ["a.wav", "b.wav"], [[np.zeros((2, 5), np.float32)] * 2])
    metadata = pq.ParquetFile(output).metadata
    assert [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)] == [1, 1]
    assert pq.read_table(output)["input"].to_pylist() == ["a.wav", "b.wav"]
