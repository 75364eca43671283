"""Table inputs read as pandas chunks of bounded size.

A table may be a pandas DataFrame (or one row of it, a Series), a pyarrow Table, a Hugging
Face `datasets` Dataset, a CSV or Parquet path, a dict (one row of scalars, or columns of
equal length), a list, tuple or iterator (a generator) of rows (row dicts, Series and DataFrames,
concatenated in order: as other families take a sequence of their items) or a numpy structured
array (its fields are the columns, as `np.genfromtxt(..., names=True)` or `DataFrame.to_records`
make it; one element of it is a row). Everything is read in chunks of at most `chunk_rows` rows,
so a file larger than memory (or a generator of rows) streams through.
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections import Counter
from itertools import groupby
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import pandas as pd

from zoo.errors import InputError, naming_input
from zoo.processing import is_dataset

#: table rows per forward pass in `embed` unless the caller says
TABLE_BATCH_SIZE = 1024
#: rows per chunk when a table is streamed
CHUNK_ROWS = 65_536
#: file endings read as CSV (UCI sets use .data and .test), and all the table files read
CSV_SUFFIXES = (".csv", ".tsv", ".data", ".test", ".txt", ".gz")
#: separators other than the comma, taken when a CSV's header line holds one of them and no comma
#: (TSVs, and the `;` CSVs that spreadsheets write in some locales)
OTHER_SEPARATORS = ("\t", ";")
TABLE_SUFFIXES = (*CSV_SUFFIXES, ".parquet")
#: strings read as missing values in CSV files (UCI sets mark them with "?")
NA_VALUES = ("?", "")
#: the text `pd.read_csv` reads as missing besides `NA_VALUES` (its default `na_values`): a CSV's numeric
#: column holds NaN there, so a DataFrame's numeric column reads it so too ("nan" is what `astype(str)`
#: makes of NaN)
CSV_MISSING_TEXT = frozenset({*NA_VALUES, "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
#: the `DataFrame.attrs` key of the file a chunk was read from, and its index the rows' numbers in
#: that file (from 0, after the header), so that an error in a bad row names both
SOURCE = "zoo_source"
#: what a list, tuple or iterator of rows may hold: row dicts (column: value), Series (one row, as
#: `frame.iloc[i]` gives it) and DataFrames
ROW_TYPES = (dict, pd.Series, pd.DataFrame)


def iter_frames(table: Any, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield the table's rows as DataFrames of at most `chunk_rows` rows, in order."""
    if chunk_rows < 1:
        raise InputError(f"chunk_rows={chunk_rows}; use a positive number of rows")
    if isinstance(table, str) and table.startswith(("http://", "https://")):  # Path folds "//": 'https:/...'
        raise InputError(f"table input {table!r} is a URL; the zoo reads local files: download it first and pass "
                         "its path")
    if isinstance(table, (str, Path)):
        yield from _file_frames(Path(table), chunk_rows)
        return
    if is_dataset(table):  # streamed from its Arrow data, never whole in pandas
        yield from table.to_pandas(batch_size=chunk_rows, batched=True)
        return
    if is_row_sequence(table):  # read once: a generator of rows streams through
        yield from row_frames(table, chunk_rows)
        return
    frame = to_frame(table)
    for start in range(0, len(frame), chunk_rows):
        yield frame.iloc[start : start + chunk_rows]


def row_count(table: Any) -> Optional[int]:
    """Rows of a table when they are known without reading it (in-memory tables, Parquet
    metadata, lists and tuples of rows), for a progress bar's total; None otherwise (CSV files,
    dicts, iterators of rows, which only reading them would count)."""
    if isinstance(table, (str, Path)):
        path = Path(table)
        if path.suffix != ".parquet" or not path.is_file() or path.stat().st_size == 0:
            return None  # an empty file is reported when it is read
        return open_parquet(path).metadata.num_rows
    if structured(table):
        return len(np.atleast_1d(table))
    if isinstance(table, (list, tuple)):
        return sum(len(item) if isinstance(item, pd.DataFrame) else 1 for item in table)
    if isinstance(table, pd.DataFrame) or is_dataset(table):
        return len(table)
    if type(table).__module__.startswith("pyarrow") and hasattr(table, "num_rows"):
        return table.num_rows
    return None


def to_frame(table: Any) -> pd.DataFrame:
    """An in-memory table as a DataFrame (files go through `iter_frames`)."""
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, pd.Series):  # one row, as `frame.iloc[i]` gives it
        return pd.DataFrame([table.to_dict()])
    if isinstance(table, dict):
        return dict_frame(table)
    if is_row_sequence(table):
        return join_rows([item for item, _ in counted_rows(table)], offset=0)
    if type(table).__module__.startswith("pyarrow") or is_dataset(table):
        return table.to_pandas()
    if structured(table):
        return structured_frame(np.atleast_1d(table))
    if isinstance(table, np.ndarray):
        raise InputError(
            f"a numpy array of shape {table.shape} ({table.dtype}) has no column names, and a table encoder reads its "
            "columns by name; pass pd.DataFrame(array, columns=[...]) with the names the encoder was trained on, "
            "or a structured array"
        )
    raise InputError(
        f"cannot read a table from {type(table).__name__}; pass a pandas DataFrame or Series (one row), a pyarrow "
        "Table, a datasets Dataset, a CSV or Parquet path, a dict of columns, a list, tuple or generator of row "
        "dicts, Series or DataFrames, or a numpy structured array"
    )


def is_row_sequence(table: Any) -> bool:
    """A list, tuple or iterator (a generator) of rows, as other families take a sequence of their
    items; a file object, an iterator of text lines, is not one (pass its path)."""
    return isinstance(table, (list, tuple, Iterator)) and not isinstance(table, io.IOBase)


def counted_rows(rows: Iterable[Any]) -> Iterator[tuple[Any, int]]:
    """Each item of a sequence of rows with the rows it holds; an item that is not a row dict, a
    Series or a DataFrame is refused by its place (`input 2: ...`), as other families refuse theirs."""
    for index, item in enumerate(rows):
        if not isinstance(item, ROW_TYPES):
            with naming_input(index):
                raise not_a_row(item)
        yield item, len(item) if isinstance(item, pd.DataFrame) else 1


def not_a_row(item: Any) -> InputError:
    """The error for an item of a sequence of rows that is none: a path among rows is told that a list
    of table files holds paths only."""
    files = ("; a list of table files holds paths only: embed the files and the rows in separate calls"
             if isinstance(item, (str, Path)) else "")
    return InputError(f"table row of type {type(item).__name__} is not supported; pass row dicts (column: value), "
                      f"pandas Series (one row, as frame.iloc[i] gives it) or DataFrames{files}")


def row_frames(rows: Iterable[Any], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of a sequence of rows in order, as DataFrames of at most `chunk_rows` rows numbered
    from 0 across them (so that an error names a row by its place); the items are read once and
    only a chunk's worth are held, so a generator of rows streams through."""
    pending: list[Any] = []
    held = offset = 0
    for item, count in counted_rows(rows):
        pending.append(item)
        held += count
        if held >= chunk_rows:
            frame = join_rows(pending, offset)
            whole = held - held % chunk_rows
            for start in range(0, whole, chunk_rows):
                yield frame.iloc[start : start + chunk_rows]
            pending, held, offset = [frame.iloc[whole:]], held - whole, offset + whole
    if held:
        yield join_rows(pending, offset)


def join_rows(items: list[Any], offset: int) -> pd.DataFrame:
    """Row dicts, Series and DataFrames as one DataFrame, its index numbering the rows from `offset`:
    each run of row dicts and Series is read as `pd.DataFrame(records)` reads a list of row dicts,
    and the pieces are concatenated in order. pandas 2's FutureWarning on concatenating a column that
    is all missing in one piece is silenced: it is about the joined column's dtype, and the processor
    reads the values."""
    pieces: list[pd.DataFrame] = []
    for is_frame, run in groupby(items, key=lambda item: isinstance(item, pd.DataFrame)):
        pieces.extend(run if is_frame else [pd.DataFrame([row.to_dict() if isinstance(row, pd.Series) else row
                                                          for row in run])])
    pieces = [piece for piece in pieces if len(piece)]
    if len(pieces) < 2:  # set_axis copies: the caller's DataFrame keeps its index
        frame = pieces[0] if pieces else pd.DataFrame()
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*concatenation with empty or all-NA entries",
                                    category=FutureWarning)
            frame = pd.concat(pieces, ignore_index=True)
    return frame.set_axis(pd.RangeIndex(offset, offset + len(frame)))


def structured(table: Any) -> bool:
    """Whether `table` is a numpy structured array or one of its rows (`np.void`): named fields."""
    return isinstance(table, (np.ndarray, np.void)) and table.dtype.names is not None


def structured_frame(table: np.ndarray) -> pd.DataFrame:
    """A structured array's rows, its byte-string fields (numpy's `S` type) decoded as UTF-8: a
    category read as b"Private" would miss the vocabulary's "Private" and fall in the unknown bucket."""
    frame = pd.DataFrame(table)
    for name in table.dtype.names:
        if table.dtype[name].kind == "S":
            frame[name] = frame[name].str.decode("utf-8")
    return frame


def dict_frame(table: dict) -> pd.DataFrame:
    """One row of scalars, or columns of equal length: columns of other lengths are refused
    here with their lengths, instead of pandas' "All arrays must be of the same length"."""
    lengths = {name: len(value) for name, value in table.items() if np.ndim(value) > 0}
    if not lengths:
        return pd.DataFrame([table])
    rows = Counter(lengths.values()).most_common(1)[0][0]
    odd = {name: length for name, length in lengths.items() if length != rows}
    if odd:
        raise InputError(f"the dict's columns differ in length: {odd} (column: values), while the other "
                         f"{len(lengths) - len(odd)} columns have {rows} each; give every column one value per row")
    return pd.DataFrame(table)


def open_parquet(path: Path) -> Any:
    """`pyarrow.parquet.ParquetFile`, with an unreadable file (truncated, or not Parquet at all)
    reported as an `InputError` naming it rather than a pyarrow error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise unreadable_parquet(path, err) from err


def unreadable_parquet(path: Path, err: Exception) -> InputError:
    """The error for a Parquet file pyarrow cannot read, on opening it or on reading a damaged row
    group later; it names the file and what to pass instead."""
    return InputError(f"table file {str(path)!r} is not a readable Parquet file ({err}); pass a Parquet file "
                      "written by pandas or pyarrow, or a .csv file")


def read_table(table: Any) -> pd.DataFrame:
    """The whole table as one DataFrame (for fitting a processor, not for streaming); a
    DataFrame is returned as it is."""
    if isinstance(table, pd.DataFrame):
        return table
    return pd.concat(list(iter_frames(table)), ignore_index=True)


def _file_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if path.is_dir():
        raise InputError(f"table file {str(path)!r} is a folder; pass one .csv or .parquet file")
    if not path.is_file():
        raise InputError(f"table file {str(path)!r} does not exist")
    if path.suffix not in TABLE_SUFFIXES:
        raise InputError(f"table file {str(path)!r}: read .csv or .tsv (or .data/.test/.txt, optionally "
                         ".gz) or .parquet")
    if path.stat().st_size == 0:
        raise InputError(f"table file {str(path)!r} is empty (0 bytes); pass a table with a header line of "
                         "column names and at least one row")
    offset = 0
    for frame in _parquet_frames(path, chunk_rows) if path.suffix == ".parquet" else _csv_frames(path, chunk_rows):
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        frame.attrs[SOURCE] = str(path)
        offset += len(frame)
        yield frame


def _parquet_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa

    try:
        for batch in open_parquet(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    except (pa.ArrowException, OSError) as err:  # a damaged row group, found only when it is read
        raise unreadable_parquet(path, err) from err


def csv_separator(path: Path) -> str:
    """The separator of a CSV file, from its header line: a comma unless that line has none but
    a tab or `;` (read with commas, such a file was one column named by its whole header line)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8", errors="replace") as file:
            header = file.readline()
    except OSError:  # not gzip after all: pandas' reading reports it
        return ","
    others = [separator for separator in OTHER_SEPARATORS if separator in header]
    return others[0] if "," not in header and others else ","


def _csv_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        yield from pd.read_csv(path, sep=csv_separator(path), chunksize=chunk_rows, skipinitialspace=True,
                               na_values=list(NA_VALUES))
    except pd.errors.EmptyDataError as err:
        raise InputError(f"table file {str(path)!r} holds no columns (blank lines only); a CSV table needs a "
                         "header line of column names") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse {str(path)!r} as CSV ({err})") from err
