"""The processor protocol: raw inputs -> validated items -> pieces -> padded batch tensors.

A processor is saved as `preprocessor_config.json`. `Encoder.embed` drives it in four
steps so that every modality gets batching, chunking and progress for free:

1. `prepare(item, **kwargs)`: read and validate one raw input (a path, an array, a graph...);
2. `split(item)`: cut it into pieces the model can take at once (long audio -> windows);
3. `size(piece)`: a length used to batch pieces of similar size together;
4. `collate(pieces)`: pad pieces into the keyword arguments of `Encoder.forward`.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional, Sequence, TypeVar

import torch

from zoo.config import check_keys, read_json
from zoo.errors import ConfigError, InputError, naming_input
from zoo.io import atomic_write_text

P = TypeVar("P", bound="Processor")

FILE_NAME = "preprocessor_config.json"


def require_items(items: Sequence[Any]) -> None:
    """Refuse an empty list or dataset before a model is run: the same words whichever method
    (`embed`, `embed_frames`, `embed_patches`, `tokenize`) was given it."""
    if not items:
        raise InputError("got no inputs (an empty list or dataset); pass at least one item")


def first_non_finite(values: torch.Tensor) -> Optional[list[int]]:
    """The index of `values`' first NaN or infinite entry, or None. A NaN input otherwise came out as NaN
    embeddings without a word. Every `forward` runs this on its batch, so all-finite values cost one sum
    (a NaN or infinity makes it non-finite; 0.03 s for 256 images of 224 px, where `isfinite().all()`
    took 0.9 s), and only a sum that is not finite, or overflows, is searched."""
    if torch.compiler.is_compiling() or values.numel() == 0 or bool(torch.isfinite(values.sum())):
        return None  # a traced graph (torch.compile, torch.export) cannot branch on the values
    bad = (~torch.isfinite(values)).nonzero()
    return bad[0].tolist() if len(bad) else None


def is_file_object(item: Any) -> bool:
    """An open file or buffer (`open(path, "rb")`, `io.BytesIO`), read as an encoded file (an image
    or a recording); one input, though iterable (over its lines)."""
    return callable(getattr(item, "read", None))


def check_file_input(path: str | Path, kind: str) -> None:
    """Refuse, before it is read as a missing or broken `kind` file, a path that is not one: a
    URL (the zoo downloads no inputs; Path would also fold its "//") or a parquet dataset file,
    whose rows `zoo embed` reads but which is no single recording or picture; or an empty string,
    which Path reads as the current folder."""
    text = str(path)
    if not text.strip():
        raise InputError(f"{kind} input {text!r} is an empty path; pass a file or folder name")
    if text.startswith(("http://", "https://")):
        raise InputError(f"{kind} input {text!r} is a URL; the zoo reads local files: download it first (e.g. "
                         "urllib.request.urlretrieve) and pass its path")
    if text.endswith(".parquet"):
        raise InputError(f"{kind} input {text!r} is a parquet dataset, not one {kind} file; pass its rows: "
                         "datasets.Dataset.from_parquet(path), or `zoo embed MODEL FILE.parquet` for a row each")


@dataclasses.dataclass
class Processor:
    """Base class; subclasses are dataclasses whose fields are their saved settings."""

    processor_type: ClassVar[str] = ""
    #: file endings `zoo embed` keeps when it is given a folder (empty: every file)
    file_suffixes: ClassVar[tuple[str, ...]] = ()
    #: the `datasets` feature (e.g. "Audio") whose column `embed` reads from a whole Dataset
    dataset_feature: ClassVar[str] = ""
    #: what one input file holds: "item" (a recording, an image) or "items" (a table's rows),
    #: which a folder of labelled files cannot label one by one
    file_holds: ClassVar[str] = "item"
    #: the options `prepare` takes (e.g. an audio recording's sampling_rate=)
    option_names: ClassVar[tuple[str, ...]] = ()

    def prepare(self, item: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse by name an option `prepare` does not take (an audio encoder's sampling_rate= for
        an image, a misspelt pool=), not drop it or leave it to fail as a TypeError. `embed` calls
        this before any input is read (the option was named as input 0's fault, where it is the
        call's), and every `prepare` for callers that prepare items themselves."""
        unknown = sorted(set(options) - set(self.option_names))
        if not unknown:
            return
        given = ", ".join(f"{key}=" for key in unknown)
        takes = f"take one option, {self.option_names[0]}=" if len(self.option_names) == 1 else "take no options"
        hint = ("sampling_rate= is for audio encoders" if "sampling_rate" in unknown
                else "embed's own are layer=, pool=, batch_size=, device= and progress=")
        raise InputError(f"{self.processor_type} inputs {takes}; got {given}: drop it ({hint})")

    def prepare_lazily(self, item: Any, **kwargs: Any) -> Any:
        """What `embed` and a training batch hold of an item until its pieces are collated:
        `prepare`'s result, unless a processor can leave a long item where it is and read only the
        pieces it needs (`AudioProcessor`: a long recording file)."""
        return self.prepare(item, **kwargs)

    def split(self, item: Any) -> list[Any]:
        return [item]

    def size(self, piece: Any) -> int:
        return 1

    def collate(self, pieces: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, inputs: Sequence[Any] | Any, return_tensors: str = "pt",
                 **kwargs: Any) -> dict[str, torch.Tensor]:
        """Raw inputs as one batch of torch tensors (`batch`). transformers' `return_tensors="pt"`
        is taken, so that its `processor(x, return_tensors="pt")` runs as written (it was refused
        as `input 0: ... drop it`); the zoo gives no other kind."""
        if return_tensors != "pt":
            raise ConfigError(f"return_tensors={return_tensors!r}; the zoo's processors give torch tensors "
                              "(return_tensors='pt'): convert them yourself, e.g. batch['input_values'].numpy()")
        return self.batch(inputs, **kwargs)

    def batch(self, inputs: Sequence[Any] | Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Turn a list of raw inputs into one batch (no chunking)."""
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if not inputs:
            raise InputError("no inputs to make a batch of; pass at least one")
        return self.collate(self.prepare_each(inputs, **kwargs))

    def training_batch(self, inputs: Sequence[Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        """A training batch of raw inputs (a head's `training_collate`): the batch `self(inputs)`
        makes; an audio processor's holds a random window of each long recording."""
        return self(inputs, **kwargs)

    def prepare_each(self, items: Sequence[Any], lazily: bool = False, **kwargs: Any) -> list[Any]:
        """Every item prepared (`prepare_lazily` if `lazily`), a bad one named by its place
        (`input N: `) as `embed` names it: a training loop's `encoder.preprocess(batch)` said what
        was wrong but not with which item."""
        prepare = self.prepare_lazily if lazily else self.prepare
        prepared = []
        for index, item in enumerate(items):
            with naming_input(index):
                prepared.append(prepare(item, **kwargs))
        return prepared

    def to_dict(self) -> dict[str, Any]:
        return {"processor_type": self.processor_type, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[P], data: dict[str, Any]) -> P:
        data = {k: v for k, v in data.items() if k != "processor_type"}
        check_keys(cls, data, f"{FILE_NAME} of {cls.__name__}")
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_file(cls: type[P], path: str | Path) -> P:
        return cls.from_dict(read_json(path))


def is_dataset(inputs: Any) -> bool:
    """A Hugging Face `datasets` Dataset (one can only exist if `datasets` was imported, so
    `import zoo` does not import it)."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(inputs, datasets.Dataset)


def is_iterable_dataset(inputs: Any) -> bool:
    """A `datasets` IterableDataset, what `load_dataset(..., streaming=True)` gives."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(inputs, datasets.IterableDataset)


def iterable_dataset_rows(dataset: Any, feature: str) -> list[Any]:
    """The undecoded {"bytes", "path"} rows of an IterableDataset's `feature` column, listed as
    `embed` lists any iterable: iterating the dataset itself decoded audio through torchcodec,
    an ImportError where it is not installed."""
    column, undecoded = undecoded_column(dataset, feature, "the IterableDataset")
    return [row[column] for row in undecoded]


def column_as_dataset(inputs: Any, feature: str) -> Any:
    """`dataset[NAME]` (a lazy `datasets` Column, datasets >= 4) of a `feature` column as the
    one-column Dataset it comes from, so that its rows are read undecoded as a Dataset's are
    (iterating it decodes audio through torchcodec, which the zoo does not need); else None."""
    datasets = sys.modules.get("datasets")
    column_type = getattr(getattr(datasets, "arrow_dataset", None), "Column", None)
    if column_type is None or not isinstance(inputs, column_type) or not is_dataset(inputs.source):
        return None
    if type(inputs.features).__name__ != feature:
        return None
    return inputs.source.select_columns([inputs.column_name])


def feature_column(dataset: Any, feature: str, name: str = "the dataset") -> str:
    """The column of a `datasets` Dataset whose feature is a `feature` ("Audio", "Image"). Of two
    or more, none is guessed: the first was embedded without a word (a dataset of clean and
    noisy versions of each clip gave the clean ones)."""
    features = dict(dataset.features or {})  # a streamed dataset may not know its features
    columns = [column for column, kind in features.items() if type(kind).__name__ == feature]
    if not columns:
        raise InputError(f"{name} has no {feature} column; its features are {features}: cast one "
                         f"with dataset.cast_column(NAME, datasets.{feature}()) or pass dataset[NAME]")
    if len(columns) > 1:
        raise InputError(f"{name} has {len(columns)} {feature} columns {columns}; pass the one to embed, e.g. "
                         f"dataset[{columns[0]!r}] or dataset.select_columns([{columns[0]!r}])")
    return columns[0]


def undecoded_column(dataset: Any, feature: str, name: str = "the dataset") -> tuple[str, Any]:
    """The name of a (streamed or not) dataset's `feature` column, and the dataset of that column
    alone cast not to decode: the zoo decodes its {"bytes", "path"} rows itself (`datasets` >= 4
    decodes audio only through torchcodec)."""
    import datasets

    column = feature_column(dataset, feature, name)
    return column, dataset.select_columns([column]).cast_column(column, getattr(datasets, feature)(decode=False))


def undecoded_rows(dataset: Any, feature: str, name: str = "the dataset") -> list[dict[str, Any]]:
    """The {"bytes", "path"} rows of a Dataset's `feature` column, read without decoding them."""
    column, undecoded = undecoded_column(dataset, feature, name)
    return list(undecoded[column])


class IndexedRows(Sequence):
    """Rows a subclass reads in batches as they are indexed (`row`), indexed as a list's:
    slices, negative indices, and an IndexError past the end naming `where` they come from."""

    where = "the rows"

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"row {index} of {len(self)} in {self.where}")
        return self.row(position)

    def row(self, position: int) -> Any:
        raise NotImplementedError


class DatasetRows(IndexedRows):
    """The undecoded {"bytes", "path"} rows of a `datasets` Dataset's `feature` column, read
    `BATCH_ROWS` at a time as they are indexed (the zoo decodes them itself: `datasets` >= 4
    decodes audio only through torchcodec). `embed(dataset)` held every row before the first was
    embedded: CIFAR-10's 50,000 training images took +404 MB and 7.5 s to list."""

    #: rows read from the Dataset's Arrow table at a time
    BATCH_ROWS = 256
    where = "a Dataset"

    def __init__(self, dataset: Any, feature: str, name: str = "the dataset") -> None:
        self.column, self.dataset = undecoded_column(dataset, feature, name)
        self.first, self.rows = 0, []  # the row number of the batch held, and its rows

    def __len__(self) -> int:
        return len(self.dataset)

    def row(self, position: int) -> Any:
        if not self.first <= position < self.first + len(self.rows):
            self.first = position - position % self.BATCH_ROWS
            self.rows = self.dataset[self.first : self.first + self.BATCH_ROWS][self.column]
        return self.rows[position - self.first]


@contextmanager
def reading_parquet(path: str | Path) -> Iterator[None]:
    """pyarrow's errors on a damaged or truncated parquet file, as one `InputError` naming it."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"cannot read parquet file {str(path)!r} ({err}); is it complete?") from err


class ParquetRows(IndexedRows):
    """The undecoded {"bytes", "path"} rows of a parquet file's `feature` column, streamed in
    batches of `BATCH_ROWS` as they are indexed in order (a job's shards), from the row group
    that holds the row asked for when it lies behind: a job over many Hub parquet files holds one
    batch of encoded audio or images, not every file's (reading each file's column whole held them
    all before the first was embedded: 4 CIFAR-10 train files, +510 MB). The file and its column
    are checked here."""

    #: rows decoded at a time; pyarrow's whole-row-group read of CIFAR-10's 50,000-row group peaked
    #: at +224 MB, its batches at +95 MB for the whole file
    BATCH_ROWS = 256

    def __init__(self, path: str | Path, feature: str) -> None:
        self.path = self.where = str(path)
        metadata = self.reader().metadata
        self.column = parquet_feature_column(metadata.schema.to_arrow_schema(), feature, path)
        sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
        self.starts = [sum(sizes[:group]) for group in range(len(sizes) + 1)]
        self.batches: Any = None  # pyarrow's batches after the one held
        self.first, self.rows = len(self), []  # the row number of the batch held (none yet), and its rows

    def __len__(self) -> int:
        return self.starts[-1]

    def row(self, position: int) -> Any:
        if not self.first <= position < self.first + len(self.rows):
            group = bisect.bisect_right(self.starts, position) - 1
            if position < self.first or self.starts[group] > self.first + len(self.rows):  # behind, or groups ahead
                self.batches = self.reader().iter_batches(self.BATCH_ROWS, range(group, len(self.starts) - 1),
                                                          [self.column])
                self.first, self.rows = self.starts[group], []
            while position >= self.first + len(self.rows):
                self.first += len(self.rows)
                self.rows = self.next_batch()
        row = self.rows[position - self.first]
        if position == len(self) - 1:  # read to the end: let go of pyarrow's reader and the last batch
            self.batches, self.first, self.rows = None, len(self), []
        return row

    def reader(self) -> Any:
        import pyarrow.parquet as pq

        with reading_parquet(self.path):
            return pq.ParquetFile(self.path, buffer_size=1 << 20, pre_buffer=False)  # streamed, not the row group whole

    def next_batch(self) -> list[dict[str, Any]]:
        with reading_parquet(self.path):
            return next(self.batches).column(0).to_pylist()


def parquet_features(schema: Any) -> dict[str, Any]:
    """The `datasets` features a parquet file's Hugging Face metadata records ({} without it)."""
    metadata = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
    return metadata.get("info", {}).get("features", {})


def columns_of_type(features: dict[str, Any], feature: str) -> list[str]:
    """The columns whose `datasets` feature type is `feature` ("Image", "ClassLabel", ...)."""
    return [name for name, kind in features.items() if isinstance(kind, dict) and kind.get("_type") == feature]


def parquet_feature_column(schema: Any, feature: str, path: str | Path) -> str:
    """The column of `feature` ("Audio", "Image") of a parquet file: the one its Hugging Face metadata
    names, else, in a file without that metadata, the first struct with `bytes`. A file whose metadata
    names other kinds only is refused: its image column was read as audio."""
    features = parquet_features(schema)
    named = columns_of_type(features, feature)
    if named:
        return named[0]
    if features:
        kinds = {name: kind.get("_type") for name, kind in features.items() if isinstance(kind, dict)}
        raise InputError(f"parquet file {str(path)!r} has no {feature} column: its `datasets` features are {kinds}")
    structs = [field.name for field in schema
               if hasattr(field.type, "get_field_index") and field.type.get_field_index("bytes") >= 0]
    if not structs:
        raise InputError(f"parquet file {str(path)!r} has no {feature} column (a struct with 'bytes'); its columns "
                         f"are {schema.names}")
    return structs[0]
