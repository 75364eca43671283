"""`zoo probe`: embed a labelled set of files (or a Hub dataset's parquet files) and report a
linear probe, k-NN accuracy and RankMe, with labels and the train/test split read from the
file names or folders (or the label column and the train-*/test-* file names)."""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from zoo.errors import ConfigError, InputError, warn
from zoo.io import visible_files

if TYPE_CHECKING:
    from zoo.pooling import LayerSpec


def file_suffixes(encoder: Any, name: str, command: str, labelled: bool = False) -> tuple[str, ...]:
    """The kinds of file `encoder` reads, for `zoo COMMAND`; an encoder whose inputs are objects
    (graphs) reads none, which is said rather than every file in a folder being tried. With
    `labelled` (one labelled item per file: probe and finetune --data), an encoder whose files
    hold many items (a table's rows) is refused too."""
    if not encoder.processor.file_suffixes:
        raise ConfigError(f"{name} is a {encoder.modality} encoder: its inputs are objects, not files, so "
                          f"`zoo {command}` has none to read; use it from Python (graphs: PyG Data or a dataset of "
                          "them, with zoo.load(NAME).embed or zoo.for_token_classification), or name a dataset: "
                          "`zoo embed NAME --dataset cora --data ROOT -o out.npy`, `zoo probe NAME --dataset ...` "
                          "or `zoo finetune NAME --dataset ... -o OUT`")
    if labelled and encoder.processor.file_holds == "items":
        raise ConfigError(f"{name} is a table encoder: each of its files is a table of many rows, not one labelled "
                          f"item, so `zoo {command} --data` cannot label them; pass a labelled table instead "
                          f"(`zoo {command} NAME --table my.csv --target COLUMN`, or `--dataset adult`), or embed "
                          "the rows with `zoo embed NAME table.csv`")
    return encoder.processor.file_suffixes


def labelled_files(data: Path, label_regex: Optional[str], test_regex: Optional[str],
                   suffixes: Sequence[str] = (), feature: str = "") -> LabelledRows:
    """(item, label, is_test) for every input under `data`: the files ending in one of
    `suffixes` (the encoder's kinds of file; none: every file), so that notes or label lists
    beside them are not inputs; or, when `data` holds parquet files and the encoder reads a
    `datasets` `feature` (audio, images), the labelled records of a Hub dataset's train and test
    files, which are read from their files only when they are embedded (`labelled_records`).

    A file's label is the first group of `label_regex` on its name, else its folder's name; it
    is in the test split when `test_regex` matches its name, else when a folder on its path is
    called "test" (in any case: Test/ too). When a train/ folder is there as well, files in
    neither (a val/ folder) are left out, as a parquet dataset's other splits are.
    """
    if not data.is_dir():
        raise InputError(f"--data {str(data)!r} is not a folder")
    check_regexes(label_regex, test_regex)
    parquets = visible_files(data, (".parquet",)) if feature else []
    rows = parquet_dataset_rows(parquets, feature, data) if parquets else None
    if rows is not None and (label_regex or test_regex):
        raise ConfigError("--label-regex and --test-regex are for folders of files; a parquet dataset's labels "
                          "and splits come from its label column and its train-*/test-* file names")
    if rows is None:
        files = visible_files(data, suffixes or None)
        if not test_regex:
            files = files_in_split_folders(files, data)
        rows = LabelledRows.of([file_row(path, data, label_regex, test_regex) for path in files])
    if not len(rows):
        kinds = f" ({', '.join(suffixes)})" if suffixes else ""
        raise InputError(f"--data {str(data)!r} holds no files{kinds} the encoder reads")
    check_split(rows, test_regex)
    return rows


def parquet_dataset_rows(parquets: Sequence[Path], feature: str, data: Path) -> Optional[LabelledRows]:
    """The labelled records of the parquet files of a Hub dataset in `data`, saying which files hold
    none; None where none does, so that the folder's files are read instead: a stray .parquet
    (`zoo embed -o DATA/emb.parquet`) hid every file beside it."""
    records = {path: labelled_records(path, feature, data) for path in parquets}
    left_out = [path.name for path, path_rows in records.items() if not len(path_rows)]
    if left_out:
        print(f"zoo probe: left out {left_out}: neither train nor test files, or no labelled rows", file=sys.stderr)
    kept = [path_rows for path_rows in records.values() if len(path_rows)]
    return LabelledRows.joined(kept) if kept else None


class LabelledRows(Sequence):
    """A probe's inputs with their labels and splits held apart from them: `items` may be records
    streamed from parquet files (`ParquetRows`), so that listing, checking the split and scoring
    read only the labels, and records are read when a chunk of them is embedded.

    Taken as (item, label, is_test) tuples, as finetuning takes them (in any order, and keeping
    every record it trains on), the items are first read once, in order, into a list."""

    def __init__(self, items: Sequence[Any], labels: Sequence[str], tests: Sequence[bool]) -> None:
        self.items, self.labels, self.tests = items, list(labels), list(tests)
        self._held: Optional[list[Any]] = None

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, str, bool]]) -> LabelledRows:
        """`rows` as they are when labelled already, else the (item, label, is_test) tuples given."""
        if isinstance(rows, LabelledRows):
            return rows
        return cls([item for item, _, _ in rows], [label for _, label, _ in rows], [test for _, _, test in rows])

    @classmethod
    def joined(cls, parts: Sequence[LabelledRows]) -> LabelledRows:
        """The rows of `parts` one after another, their items chained without being read."""
        from zoo.embed_job import ChainedRows

        return cls(ChainedRows([part.items for part in parts]), [label for part in parts for label in part.labels],
                   [test for part in parts for test in part.tests])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        if self._held is None:
            self._held = list(self.items)
        return self._held[index], self.labels[index], self.tests[index]


class SelectedRows(Sequence):
    """The rows of `rows` at `positions` (increasing), read from `rows` only when indexed: a
    parquet file's labelled records, still streamed in order."""

    def __init__(self, rows: Sequence[Any], positions: Sequence[int]) -> None:
        self.rows, self.positions = rows, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.rows[position] for position in self.positions[index]]
        return self.rows[self.positions[index]]


def split_folder(path: Path, data: Path) -> Optional[str]:
    """"train" or "test" when a folder on the file's path under `data` is so called, in any case
    (Train/, TEST/), as datasets' layouts vary; else None."""
    folders = [part.lower() for part in path.relative_to(data).parts[:-1]]
    return next((split for split in ("test", "train") if split in folders), None)


def files_in_split_folders(files: Sequence[Path], data: Path) -> list[Path]:
    """With a train/ folder, the files in train/ or test/ (the others, such as a val/ folder's,
    would otherwise be trained on silently; they are counted on stderr); without one, all of
    them: the files outside test/ are the training split."""
    splits = [split_folder(path, data) for path in files]
    if "train" not in splits:
        return list(files)
    left_out = [path for path, split in zip(files, splits) if split is None]
    if left_out:
        folders = sorted({str(path.relative_to(data).parent) for path in left_out})
        print(f"zoo probe: left out {len(left_out)} files in neither a train/ nor a test/ folder (in {folders[:5]})",
              file=sys.stderr)
    return [path for path, split in zip(files, splits) if split is not None]


def check_regexes(label_regex: Optional[str], test_regex: Optional[str]) -> None:
    """Bad patterns are named before any file is read: one that does not compile, or a label
    pattern without the group that holds the label."""
    for option, pattern in (("--label-regex", label_regex), ("--test-regex", test_regex)):
        try:
            compiled = re.compile(pattern or "")
        except re.error as err:
            raise ConfigError(f"{option} '{pattern}' is not a regular expression ({err})") from err
        if option == "--label-regex" and pattern and compiled.groups < 1:
            raise ConfigError(f"--label-regex '{pattern}' has no group: put the label's part of the file name in "
                              r"parentheses, e.g. '^(\w+)_'")


def file_row(path: Path, data: Path, label_regex: Optional[str], test_regex: Optional[str]) -> tuple[Path, str, bool]:
    """A file's (path, label, is_test), as `labelled_files` reads them."""
    if label_regex:
        match = re.search(label_regex, path.name)
        if match is None or match.group(1) is None:
            part = "does not match" if match is None else "matches, but its first group takes no part in the match of"
            raise InputError(f"--label-regex {label_regex!r} {part} file {path.name!r}: every file needs a label; "
                             "make the group match in every file name, or move the files without one elsewhere")
        label = match.group(1)
    else:
        label = path.parent.name
        if path.parent != data and split_folder(path, data) == label.lower():
            raise InputError(f"file {str(path.relative_to(data))!r} lies in its split folder itself, so no folder "
                             f"names its label (it would be {label!r}): put the files in {label}/LABEL/ folders, or "
                             "give --label-regex to read each label from its file name")
    is_test = bool(re.search(test_regex, path.name)) if test_regex else split_folder(path, data) == "test"
    return path, unicodedata.normalize("NFC", label), is_test  # macOS copies spell 'café' in NFD: two labels


def labelled_records(path: Path, feature: str, data: Path) -> LabelledRows:
    """The (record, label, is_test) rows of one parquet file of a Hub dataset: its split from
    its name (`train-*`, `test-*`, or a train/ or test/ folder; other splits are left out), its
    labels from `parquet_labels`. Rows without a label (None, or -1 as `datasets` marks an
    unlabelled ClassLabel) are left out. Only the label column is read here; the records stay in
    the file (`ParquetRows`) until they are embedded, as holding them took +242 MB for
    CIFAR-10's 55,000 images (52 MB of files)."""
    from zoo.processing import ParquetRows

    parts = [part.lower() for part in path.relative_to(data).parts]
    split = next((name for name in ("test", "train") if parts[-1].startswith(name) or name in parts[:-1]), None)
    if split is None:
        return LabelledRows([], [], [])
    records = ParquetRows(path, feature)  # checks the file and its feature column
    values, names = parquet_labels(records.reader(), path)
    kept = [position for position, value in enumerate(values) if value is not None and not (names and value < 0)]
    labels = [names[values[position]] if names else str(values[position]) for position in kept]
    return LabelledRows(SelectedRows(records, kept), labels, [split == "test"] * len(kept))


def parquet_labels(reader: Any, path: Path) -> tuple[list[Any], Optional[list[str]]]:
    """The values of a parquet file's label column (the one its metadata calls a ClassLabel, else
    one called "label"), read alone, and the ClassLabel's names when it has them."""
    from zoo.processing import columns_of_type, parquet_features, reading_parquet

    schema = reader.schema_arrow
    features = parquet_features(schema)
    column = (columns_of_type(features, "ClassLabel") or ["label"])[0]
    if column not in schema.names:
        raise InputError(f"parquet file {str(path)!r} has no label column (a ClassLabel, or one called 'label'); "
                         f"its columns are {schema.names}")
    with reading_parquet(path):
        values = reader.read(columns=[column]).column(column).to_pylist()
    return values, features.get(column, {}).get("names")


def item_names(rows: Sequence[tuple[Any, str, bool]]) -> list[str]:
    """What identifies each row's input for an embedding cache: a file's path (its size and
    modification time are the cache's and each shard's stamps, `file_stamp`, so a file rewritten
    under the same name is embedded again, and a mended file keeps the finished shards), or a
    dataset record's content digest, so that a dataset moved or downloaded again keeps its cache.
    Records are read in order, a batch at a time, for their digests. Labels and splits are left
    out: the embeddings do not depend on them, and the probe takes them from `rows` on every run."""

    def key(item: Any) -> str:
        content = item.get("bytes") if isinstance(item, dict) else None
        if isinstance(content, bytes):
            return hashlib.sha256(content).hexdigest()
        return str(item)

    return [key(item) for item in LabelledRows.of(rows).items]


def check_split(rows: Sequence[tuple[Any, str, bool]], test_regex: Optional[str] = None) -> None:
    """Refuse a probe that cannot be scored: no test or train split, test labels never trained on,
    or a single training label."""
    rows = LabelledRows.of(rows)
    splits = set(rows.tests)
    if splits == {True}:
        raise InputError(f"all {len(rows)} files are in the test split, none is left for training: narrow "
                         "--test-regex, or keep the training files out of test/ folders")
    if splits != {True, False} and test_regex:
        raise InputError(f"--test-regex {test_regex!r} matches none of the {len(rows)} file names, so the test "
                         "split is empty: fix the pattern (it is searched for in each file's name, not its path)")
    if splits != {True, False}:
        raise InputError(f"{len(rows)} files but no train/test split: give --test-regex or a test/ folder")
    trained = {label for label, is_test in zip(rows.labels, rows.tests) if not is_test}
    unseen = sorted({label for label, is_test in zip(rows.labels, rows.tests) if is_test} - trained)
    if unseen:
        raise InputError(f"test labels {unseen} have no training files (training labels: {sorted(trained)}); "
                         "no probe can get them right: add training files or drop them from the test split")
    if len(trained) < 2:
        raise InputError(f"the training split has one label, {sorted(trained)}; a probe or a classifier needs at "
                         "least two")


def run_probe(encoder: Any, rows: Sequence[tuple[Any, str, bool]], layer: LayerSpec = None, batch_size: int = 8,
              k: int = 20, pool: str = "mean", cache: Optional[Path] = None, progress: bool = True) -> dict[str, float]:
    """Embed every item once (with a progress bar, unless `progress` is False), then fit the probes
    on the train split and score the test split.

    Both are deterministic (L-BFGS logistic regression, k-NN), so there is no seed. k-NN uses
    `k` neighbours, or every training item when there are fewer. With a `cache`
    folder the embeddings are kept there (`zoo.embed_job.cached_embeddings`): an interrupted
    probe goes on from the shards written, and a rerun with other probe settings reuses them.
    """
    import numpy as np

    from zoo.embed_job import cached_embeddings
    from zoo.evaluation import knn_accuracy, linear_probe, rankme

    if k < 1:  # before the embedding, which may take hours
        raise ConfigError(f"k={k}: k-NN needs at least one neighbour")
    rows = LabelledRows.of(rows)
    items = rows.items
    if isinstance(items, list):
        items = [str(item) if isinstance(item, Path) else item for item in items]
    if cache is None:
        embeddings = embedded(encoder, items, layer, pool, batch_size, progress)
    else:
        embeddings, reused = cached_embeddings(encoder, items, cache, item_names(rows), layer, pool, batch_size,
                                               progress)
        print(f"zoo probe: {'reused' if reused else 'wrote'} the embeddings in {cache}", file=sys.stderr)
    check_finite(embeddings, rows)
    labels, test = np.array(rows.labels), np.array(rows.tests, dtype=bool)
    training = int((~test).sum())
    if k > training:  # every neighbour votes: the classes' sizes and the tie-break decide, not the embeddings
        warn(f"--k {k} is more than the {training} training items; k-NN uses k={training}, where every item votes")
        k = training
    return {
        "linear_probe_accuracy": linear_probe(embeddings[~test], labels[~test], embeddings[test], labels[test]),
        "knn_accuracy": knn_accuracy(embeddings[~test], labels[~test], embeddings[test], labels[test], k=k),
        "knn_k": k,
        "rankme": rankme(embeddings),
        "train_items": int((~test).sum()),
        "test_items": int(test.sum()),
        "classes": int(len(set(rows.labels))),
    }


def embedded(encoder: Any, items: Sequence[Any], layer, pool: str, batch_size: int, progress: bool = True) -> Any:
    """(N, D) embeddings of `items`: a list (files) in one `embed` call; records streamed from
    parquet files a chunk of `SHARD_SIZE` at a time, as `zoo embed` takes them, so that one chunk
    of them is held (`embed` would list them all first), each chunk's rows written into the
    output as they come. A chunk is a whole number of the groups `embed` prepares and batches
    together where each item is one piece (an image, a clip under a window), so the rows are
    those of one call; long recordings' windows may batch otherwise (float rounding)."""
    import numpy as np

    from zoo import embed_job
    from zoo.errors import counting_from

    if isinstance(items, list):
        return encoder.embed(items, layer=layer, pool=pool, batch_size=batch_size, progress=progress).numpy()
    embeddings = None
    with encoder.progress_bar(len(items), progress) as bar:
        for start in range(0, len(items), embed_job.SHARD_SIZE):
            chunk = items[start : start + embed_job.SHARD_SIZE]
            advanced = bar.n
            with counting_from(start):
                rows = encoder.embed(chunk, layer=layer, pool=pool, batch_size=batch_size, progress=bar).numpy()
            if embeddings is None:
                embeddings = np.empty((len(items), *rows.shape[1:]), rows.dtype)
            embeddings[start : start + len(rows)] = rows
            bar.update(len(chunk) - (bar.n - advanced))  # what embed did not advance
    return embeddings


def check_finite(embeddings: Any, rows: LabelledRows) -> None:
    """Name the first input whose embedding holds NaN or infinite values: the probes would
    refuse it by its index in one split, which does not say which file to look at."""
    from zoo.evaluation import non_finite_rows

    bad = non_finite_rows(embeddings)
    if len(bad):
        item = rows.items[bad[0]]
        shown = f"file {str(item)!r}" if isinstance(item, (str, Path)) else f"record {bad[0]}"
        raise InputError(f"the encoder gave NaN or infinite values for {len(bad)} of {len(rows)} items, the first "
                         f"item {bad[0]}, {shown}; check that input, or the encoder with --dtype float32")
