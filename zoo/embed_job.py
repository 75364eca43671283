"""`zoo embed` as a resumable job: inputs are embedded shard by shard into `OUT.parts/`,
each shard written atomically, and joined into OUT at the end, so an interrupted job
rerun with the same arguments skips the shards it already wrote (`OUT.parts/job.json`
records those arguments; a rerun with others is refused). Each shard's `.stamp` records the
size and modification time of its input files: a shard whose file changed since is made
again, and a shard of files mended after a failure is kept. Table encoders (those with
`table_chunks`) give one row per table row, and a shard is a chunk of rows."""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import sys
import zipfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from zoo import registry
from zoo.errors import CheckpointError, ConfigError, InputError, counting_from
from zoo.io import (NAME_MAX, atomic_write_text, atomic_write_with, check_writable_file, held, name_bytes,
                    printable_name, remove_folder, waited_for)
from zoo.pooling import LayerSpec, check_batch_sizes
from zoo.processing import IndexedRows
from zoo.saving import weights_fingerprint

FORMATS = (".npy", ".parquet")
JOB_FILE = "job.json"
#: the file in a job's shard folder that one job at a time holds (`job_lock`)
LOCK_FILE = "job.lock"
#: inputs per shard, by default
SHARD_SIZE = 1024
#: inputs per shard of token rows (pool="none") of files, by default: a shard holds its rows until
#: it is written, and 1,024 five-minute recordings' beats-tiny tokens are 11.8 GB (64: 740 MB)
TOKEN_SHARD_SIZE = 64
#: the suffix of a shard's record of its input files' stamps
STAMP_SUFFIX = ".stamp"


def run_embed_job(encoder: Any, inputs: Sequence[Any], output: Path, layer: LayerSpec = None, pool: str = "mean",
                  batch_size: Optional[int] = None, shard_size: Optional[int] = None,
                  names: Optional[Sequence[str]] = None, progress: bool = True, **prepare_kwargs: Any) -> str:
    """Embed `inputs` into `output` (.npy or .parquet); returns a description of the shape.
    `batch_size` None is the encoder's own (`embed_batch_size`); `shard_size` None is
    `SHARD_SIZE` inputs, or `TOKEN_SHARD_SIZE` files for token rows.

    `names` (default: the inputs as text) identify the inputs in job.json and in a parquet
    output's "input" column: rows read from a parquet file are named `FILE#ROW`. One progress
    bar covers the whole job; a resumed job's bar starts at the items its shards already hold."""
    token_rows = pool == "none" and not hasattr(encoder, "table_chunks")
    check_output(output, pool_none=token_rows)
    check_batch_sizes(batch_size=batch_size, shard_size=shard_size)
    shard_size = shard_size or (TOKEN_SHARD_SIZE if token_rows else SHARD_SIZE)
    if not len(inputs):
        raise InputError("nothing to embed: no inputs; pass at least one file or item")
    encoder.check_embed_options(layer, pool)
    batch_size = batch_size or encoder.embed_batch_size
    parts = output.with_name(output.name + ".parts")
    names = [str(item) for item in inputs] if names is None else names
    with job_lock(parts, output):
        claim_parts(parts, job_settings(encoder, names, layer, pool, shard_size, prepare_kwargs))
        if hasattr(encoder, "table_chunks"):
            return _run_table_job(encoder, inputs, output, parts, layer, pool, batch_size, shard_size, progress)
        return _run_job(encoder, inputs, output, parts, names, layer, pool, batch_size, shard_size, progress,
                        prepare_kwargs)


@contextmanager
def job_lock(parts: Path, output: Path) -> Iterator[None]:
    """Hold `parts` for this job alone: two jobs writing one output took each other's shards for
    their own (a --layer 1 job wrote 20 of its 24 rows from the last layer) or left shards without
    their job.json, which every rerun then refused. The lock file goes with `parts` at the end."""
    parts.mkdir(parents=True, exist_ok=True)
    with held(parts / LOCK_FILE, f"another job is writing {str(output)!r} now (it holds {str(parts)!r}); wait for "
                                 "it to finish, or write to another output path"):
        yield


def _run_job(encoder: Any, inputs: Sequence[Any], output: Path, parts: Path, names: Sequence[str], layer: LayerSpec,
             pool: str, batch_size: int, shard_size: int, progress: bool, prepare_kwargs: dict[str, Any]) -> str:
    """Files or items: shards of up to `shard_size` inputs, each made unless a current one is there,
    then joined into `output`; returns a description of the rows."""
    shards = [parts / f"shard-{index:05d}.npz" for index in range(-(-len(inputs) // shard_size))]
    with encoder.progress_bar(len(inputs), progress) as bar:
        for index, shard in enumerate(shards):
            chunk = list(inputs[index * shard_size : (index + 1) * shard_size])
            chunk_names = names[index * shard_size : (index + 1) * shard_size]
            advanced = bar.n
            if not is_current(shard, chunk_names):
                with counting_from(index * shard_size):
                    make_shard(shard, encoder.embed(chunk, layer=layer, pool=pool, batch_size=batch_size,
                                                    progress=bar, **prepare_kwargs))
                write_stamp(shard, chunk_names)
            bar.update(len(chunk) - (bar.n - advanced))  # what embed did not advance: a shard already written
    shapes = join_shards(output, names, (read_shard(shard, _load_npz) for shard in shards),
                         embedding_record(encoder, layer, pool))
    remove_folder(parts)
    if pool != "none":
        return f"array {(len(shapes), *shapes[0])}"
    token_axis = len(shapes[0]) - 2  # 1 when the rows stack several layers: (K, T, D)
    lengths = [shape[token_axis] for shape in shapes]
    layers = f"{shapes[0][0]} layers of " if token_axis else ""
    return f"{len(shapes)} rows of {layers}{min(lengths)} to {max(lengths)} tokens of width {shapes[0][-1]}"


def make_shard(shard: Path, rows: Sequence[Any]) -> None:
    """Write a shard's rows; a function of its own so that they are let go when it is written,
    not held while the shards are joined (the last shard's 30-minute token rows were)."""
    arrays = [row.numpy() for row in rows]
    atomic_write_with(shard, lambda tmp: _save_npz(tmp, arrays))


def check_output(output: Path, pool_none: bool) -> None:
    """An output file type the zoo writes, and one that holds rows of varying length when asked for."""
    if output.suffix not in FORMATS:
        raise InputError(f"output {str(output)!r} must end in one of {FORMATS}")
    if output.suffix == ".npy" and pool_none:
        raise InputError("pool='none' gives one array per input of varying length; write .parquet instead of .npy")
    parts = len(os.fsencode(output.name + ".parts"))
    if parts > NAME_MAX:  # found after the model had loaded, as a raw "File name too long"
        raise InputError(f"output name {output.name[:40]!r}... is too long: its shards folder OUT.parts/ would be a "
                         f"name of {parts} bytes, over the {NAME_MAX} a file system takes; use a shorter name")
    check_writable_file(output, "output")


def write_embeddings(output: Path, names: Sequence[str], rows: Sequence[np.ndarray],
                     record: Optional[dict[str, Any]] = None) -> str:
    """Write rows made in one pass (no shards) to .npy or .parquet, atomically; returns the shape.
    `record` (`embedding_record`) goes into a parquet file's metadata."""
    check_output(output, pool_none=False)
    shapes = join_shards(output, names, [np.stack(rows)], record)
    return f"array {(len(shapes), *shapes[0])}"


def join_shards(output: Path, names: Sequence[str], shards: Iterable[Any],
                record: Optional[dict[str, Any]] = None) -> list[tuple[int, ...]]:
    """Write the rows of `shards` (each an array of rows, or a list of them), taken one shard at a
    time, to `output` (.npy or .parquet, with `record` in its metadata) atomically; returns the rows'
    shapes. The output is written as the shards come, so a job's memory does not grow with its rows:
    a million table rows to .parquet took 873 MB over their own 256 MB when they were joined first."""
    shapes: list[tuple[int, ...]] = []
    write = _write_npy if output.suffix == ".npy" else partial(_write_parquet, record=record)
    atomic_write_with(output, lambda tmp: shapes.extend(write(tmp, names, shards)))
    return shapes


def embedding_record(encoder: Any, layer: Any, pool: Optional[str]) -> dict[str, Any]:
    """What a parquet output says of how its rows were made, under its metadata key "zoo": the
    model (its Hub repo, where `zoo.load` knows one), family, layer, pool (None: the checkpoint's
    own) and zoo version. A file of rows named only by their inputs said nothing of the model or
    layer behind them."""
    from zoo._version import __version__

    origin = getattr(encoder, "origin", None)
    return {"model": origin.base_model if origin is not None else None, "family": encoder.family,
            "layer": layer if layer is None or isinstance(layer, (int, str)) else [int(i) for i in layer],
            "pool": pool, "zoo_version": __version__}


def dataset_rows(encoder: Any, dataset: str, data_root: Optional[str | Path], **embed: Any) -> tuple[list[str], list]:
    """A named dataset's (names, embedded rows), by the encoder's modality's `datasets.embed_dataset`."""
    embed_dataset = registry.modality_part(encoder.modality, "datasets", "embed_dataset")
    if embed_dataset is None:
        raise ConfigError(f"--dataset names graph and table datasets; {encoder.modality} encoders read files: "
                          "pass them as INPUTS")
    return embed_dataset(encoder, dataset, data_root, **embed)


def job_settings(encoder: Any, names: Sequence[str], layer, pool: str, shard_size: int,
                 prepare_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a job's rows depend on (the model's config and weights, the inputs, layer, pool, shard
    size and preprocessing), as plain JSON values."""
    settings = {"encoder": encoder.config_dict_to_save(), "weights": weights_fingerprint(encoder),
                "inputs": inputs_digest(names), "layer": layer, "pool": pool, "shard_size": shard_size,
                "prepare": prepare_kwargs}
    return json.loads(json.dumps(settings, default=str))


#: the lock a probe holds its --cache folder with
CACHE_LOCK_FILE = ".cache.lock"


def cached_embeddings(encoder: Any, inputs: Sequence[Any], folder: Path, names: Sequence[str], layer: LayerSpec = None,
                      pool: str = "mean", batch_size: Optional[int] = None,
                      progress: bool = True) -> tuple[np.ndarray, bool]:
    """(N, D) embeddings of `inputs` kept in `folder`: made there by an embedding job (so an
    interrupted one goes on from its shards), and reused while the model, the inputs (`names`),
    layer and pool are the same. Returns them and whether they were reused. A probe finding the
    folder held by another waits for it, saying so, then reuses what it wrote: it was refused
    with advice to write "to another output path", which a probe has no option for."""
    output, record = folder / "embeddings.npy", folder / "embeddings.json"
    settings = {**job_settings(encoder, names, layer, pool, SHARD_SIZE, {}), "stamps": stamps_digest(names)}
    folder.mkdir(parents=True, exist_ok=True)
    with waited_for(folder / CACHE_LOCK_FILE, f"zoo probe: waiting for another probe filling --cache {str(folder)!r}"):
        if output.is_file() and record.is_file():
            if json.loads(record.read_text(encoding="utf-8")) == settings:
                return np.load(output), True
            print(f"zoo probe: the embeddings in {folder} were made with another model, other files, layer or pool "
                  "(or by an older zoo); they are made again", file=sys.stderr)
        record.unlink(missing_ok=True)
        run_embed_job(encoder, inputs, output, layer=layer, pool=pool, batch_size=batch_size, shard_size=SHARD_SIZE,
                      names=names, progress=progress)
        atomic_write_text(record, json.dumps(settings))
        return np.load(output), False


def rows_of_parquet_files(inputs: Sequence[str], feature: str) -> tuple[Sequence[Any], list[str]]:
    """Inputs with each .parquet file among them replaced by the rows of its `feature` column
    (a Hub dataset's audio or images), and the names of all: a file's path, a row's `FILE#ROW`.
    A parquet file's rows are read when a shard takes them (`ParquetRows`), so a job over many
    such files holds one row group of them at a time."""
    from zoo.processing import ParquetRows

    segments: list[Sequence[Any]] = []
    names: list[str] = []
    for item in inputs:
        if feature and str(item).endswith(".parquet"):
            segments.append(ParquetRows(item, feature))
            names.extend(f"{item}#{index}" for index in range(len(segments[-1])))
        else:
            if not segments or not isinstance(segments[-1], list):
                segments.append([])
            segments[-1].append(item)
            names.append(str(item))
    if all(isinstance(segment, list) for segment in segments):  # no parquet file: the inputs as they are
        return list(inputs), names
    return ChainedRows(segments), names


class ChainedRows(IndexedRows):
    """Sequences read one after another as one (files, then a parquet file's rows, ...), indexed
    and sliced without copying them into a list first."""

    where = "the inputs"

    def __init__(self, segments: Sequence[Sequence[Any]]) -> None:
        self.segments = list(segments)
        self.starts = [0]
        for segment in self.segments:
            self.starts.append(self.starts[-1] + len(segment))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: Any) -> Any:
        """A slice of step 1 is each segment's own slice (a parquet file's rows read in order)."""
        if not isinstance(index, slice) or index.indices(len(self))[2] != 1:
            return super().__getitem__(index)
        start, stop, _ = index.indices(len(self))
        return [row for segment, first in zip(self.segments, self.starts) if first < stop
                and first + len(segment) > start for row in segment[max(start - first, 0) : stop - first]]

    def row(self, position: int) -> Any:
        segment = bisect.bisect_right(self.starts, position) - 1
        return self.segments[segment][position - self.starts[segment]]


def inputs_digest(inputs: Sequence[Any]) -> str:
    """How many inputs, and the sha256 of their names in order: a million paths stay 80 bytes."""
    digest = hashlib.sha256(name_bytes("\n".join(str(item) for item in inputs))).hexdigest()
    return f"{len(inputs)} inputs, sha256 {digest}"


def stamps_digest(names: Sequence[Any]) -> str:
    """The sha256 of the names' files' stamps (`file_stamp`), in order: it changes when a file is
    rewritten under the same name, so its old rows are not taken for it."""
    return hashlib.sha256(name_bytes("\n".join(file_stamp(name) for name in names))).hexdigest()


def is_current(shard: Path, names: Sequence[Any]) -> bool:
    """Whether `shard` was written, with its stamp, for the present content of its inputs' files."""
    stamp = shard.with_name(shard.name + STAMP_SUFFIX)
    return shard.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == stamps_digest(names)


def write_stamp(shard: Path, names: Sequence[Any]) -> None:
    """Record the stamps of the files `shard` was made from, after the shard itself: a job stopped
    between the two makes the shard again."""
    atomic_write_text(shard.with_name(shard.name + STAMP_SUFFIX), stamps_digest(names))


def read_shard(shard: Path, load: Any) -> Any:
    """A finished shard's rows, or a zoo error naming a damaged one (a disk that filled up, a copy
    cut short) and the fix, where numpy's own error would name neither."""
    try:
        return load(shard)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"the shard {shard} of an interrupted job is damaged ({type(err).__name__}: {err}); "
                              "delete it and rerun the same command, which makes it again") from err


def file_stamp(name: Any) -> str:
    """The size and modification time (os.stat) of the file `name` names, or of FILE for a
    parquet row's `FILE#ROW`; '' for other inputs. As make and the Hugging Face cache do, this
    tells a changed file from its old content without reading it."""
    path = str(name)
    if not os.path.isfile(path) and "#" in path:
        path = path.rsplit("#", 1)[0]
    if not os.path.isfile(path):
        return ""
    stat = os.stat(path)
    return f"{stat.st_size} {stat.st_mtime_ns}"


def claim_parts(parts: Path, settings: dict[str, Any]) -> None:
    """Create `parts` for this job, or check that the job that left shards there had the same
    settings: another model, inputs, layer, pool or shard size would mix two jobs' rows. A job
    that failed before its first shard leaves nothing to mix, and is replaced."""
    record = parts / JOB_FILE
    settings = json.loads(json.dumps(settings, default=str))
    shards = any(path.is_file() for path in parts.rglob("shard-*"))  # a predict job's are in a job's folder
    if shards and not record.is_file():
        raise CheckpointError(f"{parts} holds shards but not the {JOB_FILE} that says which job made them; "
                              f"delete {parts} to start this job")
    before = json.loads(record.read_text(encoding="utf-8")) if shards else {}
    if shards and "weights" not in before:  # an older zoo named the weights by their sum, which tells too little
        print(f"zoo: {parts} holds shards of a job an older zoo began, which named the weights otherwise; they are "
              "made again", file=sys.stderr)
        clear_parts(parts)
        shards = False
    if shards:  # a job that wrote no shard has nothing to mix in
        changed = sorted(key for key in settings if before.get(key) != settings[key])
        if changed:
            raise InputError(f"{parts} holds shards of an interrupted job with other {', '.join(changed)}; rerun it "
                             f"with the same arguments to finish it, or delete {parts} to start this one")
        return
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(settings))


def clear_parts(parts: Path) -> None:
    """Delete what a job's `parts` holds but the lock file, which this job holds."""
    for entry in parts.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _run_table_job(encoder: Any, inputs: Sequence[Any], output: Path, parts: Path, layer, pool: str,
                   batch_size: int, shard_size: int, progress: bool) -> str:
    """Tables: one output row per table row, named `FILE#ROW` as `zoo predict` names them; a shard
    is up to `shard_size` rows of one input file, the files read in order."""
    shards, names = [], []
    with encoder.progress_bar(None, progress, unit="row") as bar:
        for table in inputs:
            done = 0  # rows of this table so far
            for frame in encoder.table_chunks([table], shard_size):
                if not len(frame):  # a file of only a header line: its columns are checked, it gives no rows
                    encoder.processor.transform(frame)
                    continue
                shard = parts / f"shard-{len(shards):05d}.npy"
                if not is_current(shard, [table]):
                    with counting_from(done):  # a bad row is named by its row in the table, as `names` are
                        rows = encoder.embed(frame, layer=layer, pool=pool, batch_size=batch_size,
                                             progress=False).numpy()
                    atomic_write_with(shard, lambda tmp: _save_npy(tmp, rows))
                    write_stamp(shard, [table])
                shards.append(shard)
                names += [f"{table}#{row}" for row in range(done, done + len(frame))]
                done += len(frame)
                bar.update(len(frame))
    if not shards:
        raise InputError(f"the tables {list(inputs)} hold no rows")
    shapes = join_shards(output, names, (read_shard(shard, np.load) for shard in shards),
                         embedding_record(encoder, layer, pool))
    remove_folder(parts)
    return f"array {(len(shapes), *shapes[0])}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)


def _save_npz(path: Path, arrays: list[np.ndarray]) -> None:
    with path.open("wb") as handle:
        np.savez(handle, *arrays)


def _load_npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{index}"] for index in range(len(data.files))]


def _write_npy(path: Path, names: Sequence[str], shards: Iterable[Any]) -> list[tuple[int, ...]]:
    """One (N, ...) array, N = len(names): the header from the first shard, then each shard's bytes."""
    shapes: list[tuple[int, ...]] = []
    with path.open("wb") as handle:
        for shard in shards:
            block = np.ascontiguousarray(np.stack(list(shard)) if isinstance(shard, list) else shard)
            if not shapes:
                header = {"descr": np.lib.format.dtype_to_descr(block.dtype), "fortran_order": False,
                          "shape": (len(names), *block.shape[1:])}
                np.lib.format.write_array_header_1_0(handle, header)
            handle.write(block.tobytes())
            shapes += [block.shape[1:]] * len(block)
    return shapes


#: bytes of embeddings in a row group of a parquet output, at most (or one row, if larger)
ROW_GROUP_BYTES = 16 * 2**20


def _write_parquet(path: Path, names: Sequence[str], shards: Iterable[Any],
                   record: Optional[dict[str, Any]] = None) -> list[tuple[int, ...]]:
    """Columns "input", "shape" and "embedding" (float32, flattened), written a row group of up to
    `ROW_GROUP_BYTES` at a time, without dictionary encoding (no value of a float column repeats):
    a shard's 30-minute token rows as one dictionary-encoded group took 25 times their size.
    `record` is the schema's metadata under "zoo" (JSON)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("input", pa.string()), ("shape", pa.list_(pa.int64())),
                        ("embedding", pa.list_(pa.float32()))],
                       metadata=None if record is None else {"zoo": json.dumps(record)})
    shapes: list[tuple[int, ...]] = []
    with pq.ParquetWriter(path, schema, use_dictionary=False) as writer:
        for shard in shards:
            for rows in row_groups(list(shard), ROW_GROUP_BYTES):
                writer.write_table(pa.table({
                    "input": [printable_name(str(name)) for name in names[len(shapes) : len(shapes) + len(rows)]],
                    "shape": [list(row.shape) for row in rows],
                    "embedding": [row.astype(np.float32, copy=False).ravel() for row in rows],
                }, schema=schema))
                shapes += [row.shape for row in rows]
    return shapes


def row_groups(rows: list[np.ndarray], limit: int) -> Iterator[list[np.ndarray]]:
    """`rows` in runs of at most `limit` bytes of float32 (a longer row alone)."""
    group: list[np.ndarray] = []
    size = 0
    for row in rows:
        if group and size + 4 * row.size > limit:
            yield group
            group, size = [], 0
        group.append(row)
        size += 4 * row.size
    if group:
        yield group
