"""Table inputs read as pandas chunks of bounded size.

A table may be a pandas DataFrame (or one row of it, a Series), a pyarrow Table, a Hugging
Face `datasets` Dataset, a CSV or Parquet path, a dict (one row of scalars, or columns of
equal length) or a list of row dicts. Everything is read in chunks of at most `chunk_rows`
rows, so a file larger than memory streams through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from zoo.errors import InputError
from zoo.processing import is_dataset

#: rows per chunk when a table is streamed
CHUNK_ROWS = 65_536
#: file endings read as CSV (UCI sets use .data and .test), and all the table files read
CSV_SUFFIXES = (".csv", ".data", ".test", ".txt", ".gz")
TABLE_SUFFIXES = (*CSV_SUFFIXES, ".parquet")
#: strings read as missing values in CSV files (UCI sets mark them with "?")
NA_VALUES = ("?", "")


def iter_frames(table: Any, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield the table's rows as DataFrames of at most `chunk_rows` rows, in order."""
    if chunk_rows < 1:
        raise InputError(f"chunk_rows={chunk_rows}; use a positive number of rows")
    if isinstance(table, (str, Path)):
        yield from _file_frames(Path(table), chunk_rows)
        return
    if is_dataset(table):  # streamed from its Arrow data, never whole in pandas
        yield from table.to_pandas(batch_size=chunk_rows, batched=True)
        return
    frame = to_frame(table)
    for start in range(0, len(frame), chunk_rows):
        yield frame.iloc[start : start + chunk_rows]


def row_count(table: Any) -> Optional[int]:
    """Rows of a table when they are known without reading it (in-memory tables, Parquet
    metadata, lists of rows), for a progress bar's total; None otherwise (CSV files, dicts)."""
    if isinstance(table, (str, Path)):
        path = Path(table)
        if path.suffix != ".parquet" or not path.is_file():
            return None
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if isinstance(table, (pd.DataFrame, list)) or is_dataset(table):
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
        scalar = all(np.ndim(value) == 0 for value in table.values())
        return pd.DataFrame([table]) if scalar else pd.DataFrame(table)
    if isinstance(table, list) and all(isinstance(row, dict) for row in table):
        return pd.DataFrame(table)
    if type(table).__module__.startswith("pyarrow") or is_dataset(table):
        return table.to_pandas()
    raise InputError(
        f"cannot read a table from {type(table).__name__}; pass a pandas DataFrame or Series (one row), a pyarrow "
        "Table, a datasets Dataset, a CSV or Parquet path, a dict of columns or a list of row dicts"
    )


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
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
        return
    if path.suffix not in CSV_SUFFIXES:
        raise InputError(f"table file {str(path)!r}: read .csv (or .data/.test/.txt, optionally .gz) or .parquet")
    try:
        yield from pd.read_csv(path, chunksize=chunk_rows, skipinitialspace=True, na_values=list(NA_VALUES))
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse {str(path)!r} as CSV ({err})") from err
