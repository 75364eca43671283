"""`TableProcessor`: a column schema fitted on a table and saved with the checkpoint.

Fitting records, for every feature column, its kind and what turning it into numbers
needs: numeric columns their training minimum and maximum (T-JEPA scales each numeric
feature to [0, 1] with a min-max scaler) and the training mean that stands in for a
missing value; categorical columns their vocabulary. Index 0 of every vocabulary is the
unknown bucket: missing values and categories never seen in training both land there,
so a row with a new category still embeds. A date or duration column is refused at fit time
(`check_not_dates`): leave it out or convert it. The fitted state is written to
`preprocessor_config.json` and restored by `from_pretrained`.

At embed time columns are matched by name (any order); the target and the columns left
out at fit time are skipped. A missing feature column, a column never seen at fit time
(a typo, or a table of another schema, would otherwise pass silently; set
`extra_columns="ignore"` to skip such columns) or text in a numeric column is an
`InputError` naming the column, and so are a column given twice and a date or duration
in a numeric column (its nanosecond count is no number the schema was fitted on).
Numeric values outside the training range are scaled, not clipped, as upstream T-JEPA
(which fits its min-max scaler on the whole dataset) never clips; a value more than
`MAX_SCALED` training ranges away is refused, because the float32 model overflows on it
(from about 1e21 ranges) and would return a row of NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from modalities.tabular.tables import CSV_MISSING_TEXT, NA_VALUES, SOURCE, TABLE_SUFFIXES, read_table, to_frame
from zoo.errors import ConfigError, InputError, warn
from zoo.processing import Processor

KINDS = ("numeric", "categorical")
UNKNOWN = 0
#: what `transform` does with a column the schema does not know
EXTRA_COLUMNS = ("error", "ignore")
#: largest |scaled value| accepted: far below where the float32 model overflows, far above any real outlier
MAX_SCALED = 1e12
#: |scaled value| from which a number is warned about: a hundred training ranges out is a mistaken
#: unit (cents for dollars, days for years), not an outlier, and gives an extreme row
FAR_SCALED = 100.0
#: what `pd.api.types.infer_dtype` calls an object column of numbers (`astype(object)`, mixed
#: sources, a Parquet decimal column), numeric as a float column is; text ("39") and bools stay categorical
NUMBER_OBJECTS = ("integer", "floating", "mixed-integer-float", "decimal")
#: what `pd.api.types.infer_dtype` calls an object column of timestamps or durations (`check_not_dates`)
MOMENTS = ("datetime64", "datetime", "timedelta64", "timedelta")
#: an encoder made in Python holds an empty schema until a fitted processor is given
NOT_FITTED = ("this table processor is not fitted (it holds no column schema); fit one with TableProcessor.fit(table) "
              "and pass it to the encoder, or load a checkpoint, whose folder holds the schema of its pretraining "
              "table")


@dataclasses.dataclass
class TableProcessor(Processor):
    """Turns table rows into T-JEPA's inputs: scaled numerics and category indices.

    Args:
        columns: the fitted schema, one dict per feature column in table order:
            {"name", "kind": "numeric", "min", "max", "fill"} or
            {"name", "kind": "categorical", "categories": [...]} (index i + 1 is categories[i]).
        target: the label column excluded from the features, if the table had one.
        ignored: the other columns left out at fit time (ids, timestamps).
        extra_columns: what a table's other columns meet at embed time: "error" or "ignore".
    """

    processor_type = "table"
    file_suffixes = TABLE_SUFFIXES
    file_holds = "items"

    columns: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    target: Optional[str] = None
    ignored: list[str] = dataclasses.field(default_factory=list)
    extra_columns: str = "error"

    def __setattr__(self, name: str, value: Any) -> None:
        """Check `extra_columns` whenever it is set, not only at construction: a typo set later
        (`processor.extra_columns = "Error"`) would otherwise drop unknown columns unseen."""
        if name == "extra_columns" and value not in EXTRA_COLUMNS:
            raise ConfigError(f"extra_columns={value!r}; use one of {EXTRA_COLUMNS}")
        super().__setattr__(name, value)

    def __post_init__(self) -> None:
        for column in self.columns:
            if column.get("kind") not in KINDS:
                raise InputError(f"column {column.get('name')!r} has kind {column.get('kind')!r}, not one of {KINDS}")
        self.columns = [strip_categories(column) for column in self.columns]
        self._named: dict[str, set[str]] = {}  # each column's unseen categories warned about (`warn_unseen`)
        self._far: set[str] = set()  # the columns warned about for a value FAR_SCALED ranges out (`check_scaled`)

    @classmethod
    def fit(cls, table: Any, target: Optional[str] = None, categorical: Iterable[str] = (),
            ignore: Iterable[str] = ()) -> "TableProcessor":
        """Fit the schema on a table (DataFrame, Arrow table, CSV/Parquet path, dicts).

        Args:
            target: label column to leave out of the features.
            categorical: columns to treat as categorical although their values are numbers
                (text and boolean columns are categorical anyway).
            ignore: other columns to leave out (ids, timestamps).
        """
        frame = read_table(table)
        if len(frame) == 0:
            raise InputError("cannot fit a table processor on a table with no rows")
        skip = set(ignore) | ({target} if target else set())
        missing = sorted((skip | set(categorical)) - set(frame.columns))
        if missing:
            raise InputError(f"columns {missing} are not in the table (check their spelling); its columns are "
                             f"{list(frame.columns)}")
        forced = set(categorical)
        columns = [fit_column(name, frame[name], name in forced) for name in frame.columns if name not in skip]
        if not columns:
            raise InputError(f"the table has no feature columns besides the target {target!r}")
        return cls(columns=columns, target=target, ignored=sorted(set(ignore)))

    @property
    def is_fitted(self) -> bool:
        return bool(self.columns)

    @property
    def numeric_names(self) -> list[str]:
        return [column["name"] for column in self.columns if column["kind"] == "numeric"]

    @property
    def categorical_names(self) -> list[str]:
        return [column["name"] for column in self.columns if column["kind"] == "categorical"]

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows of each categorical column: its vocabulary plus the unknown bucket."""
        return [len(column["categories"]) + 1 for column in self.columns if column["kind"] == "categorical"]

    @property
    def token_names(self) -> list[str]:
        """Feature names in token order: numeric columns first, then categorical (as T-JEPA)."""
        return self.numeric_names + self.categorical_names

    def leave_out(self, column: str) -> None:
        """Accept `column` in the tables embedded and leave it out, as the columns ignored at fit
        time: a head trained to predict it is then given test tables that still hold it."""
        if column != self.target and column not in self.ignored:
            self.ignored = sorted([*self.ignored, column])

    def check_target(self, target: str) -> None:
        """A column to predict must not be one the encoder reads: every row's embedding needs it,
        so it would be missing from the rows the label is left out of (and given, it would leak
        the label into the features)."""
        if target in self.token_names:
            raise InputError(f"target column {target!r} is one of the {len(self.token_names)} columns the encoder "
                             f"reads ({self.token_names}); predict a column it does not read, or pretrain an encoder "
                             f"without it (zoo pretrain tjepa --table FILE --target {target} -o OUT)")

    def transform(self, table: Any) -> dict[str, torch.Tensor]:
        """Rows -> {"numeric": (B, n_numeric) float32, "categorical": (B, n_categorical) int64}."""
        if not self.is_fitted:
            raise InputError(NOT_FITTED)
        frame = to_frame(table)
        try:
            self.check_columns(list(frame.columns))
            numeric = [scale_numeric(frame[column["name"]], column, self._far) for column in self.columns
                       if column["kind"] == "numeric"]
            categorical = [self.encode_categories(frame[column["name"]], column) for column in self.columns
                           if column["kind"] == "categorical"]
        except InputError as err:
            if SOURCE not in frame.attrs:
                raise
            raise InputError(f"table file {frame.attrs[SOURCE]!r}: {err}") from err
        rows = len(frame)
        return {
            "numeric": torch.from_numpy(np.stack(numeric, axis=1) if numeric else np.zeros((rows, 0), np.float32)),
            "categorical": torch.from_numpy(np.stack(categorical, axis=1) if categorical
                                            else np.zeros((rows, 0), np.int64)),
        }

    def encode_categories(self, values: pd.Series, column: dict[str, Any]) -> np.ndarray:
        """Vocabulary indices (1-based); missing and unseen values map to the unknown bucket 0, and
        unseen ones are warned about (`warn_unseen`)."""
        keys = category_keys(values)
        indices: dict[str, int] = {}
        for index, category in enumerate(column["categories"]):
            indices.setdefault(category, index)  # an old fit's "Male " stripped beside "Male": the first wins
        codes = keys.map(indices).fillna(-1).to_numpy(np.int64)
        warn_unseen(keys[(codes < 0) & keys.notna().to_numpy()], column, self._named.setdefault(column["name"], set()))
        return (codes + 1).clip(min=UNKNOWN)

    def check_columns(self, names: list[Any]) -> None:
        """Every feature column must be there, and (unless `extra_columns="ignore"`) nothing the
        schema does not know: a misspelt or foreign column would otherwise be dropped unseen."""
        features = [column["name"] for column in self.columns]
        check_unique(names, features)
        absent = [name for name in features if name not in names]
        known = {*features, *self.ignored, self.target}
        unseen = [name for name in names if name not in known]
        if absent:
            held = f"; it has {unseen[:10]} instead (misspelt? rename them)" if unseen else ""
            raise InputError(f"columns {absent} are missing from the input{held}; the model was fitted on {features} "
                             "(any order)")
        if unseen and self.extra_columns != "ignore":
            raise InputError(f"columns {unseen} were not seen when the model was fitted on {features}; drop them "
                             f"(table.drop(columns={unseen!r})) or set processor.extra_columns = 'ignore' "
                             "(zoo embed and zoo predict: --ignore-extra-columns)")

    def batch(self, inputs: Any, **options: Any) -> dict[str, torch.Tensor]:
        """A whole table (or one row dict) as one batch."""
        return self.prepare(read_table(inputs), **options)

    def prepare(self, item: Any, **options: Any) -> dict[str, torch.Tensor]:
        """A table's rows as model inputs."""
        self.check_options(options)
        return self.transform(item)

    def size(self, piece: Any) -> int:
        return len(piece["numeric"])

    def collate(self, pieces: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.cat([piece[key] for piece in pieces]) for key in ("numeric", "categorical")}


def check_unique(names: list[Any], features: list[str]) -> None:
    """A feature column given twice is refused: `frame[name]` would be a table, not a column."""
    repeated = sorted({name for name in pd.Index(names)[pd.Index(names).duplicated()] if name in features})
    if repeated:
        raise InputError(f"columns {repeated} appear more than once in the table; keep one of each "
                         "(table.loc[:, ~table.columns.duplicated()]) or rename the copies")


def fit_column(name: str, values: pd.Series, categorical: bool) -> dict[str, Any]:
    """One column's schema entry: numeric statistics or the sorted vocabulary."""
    check_not_dates(name, values)
    numeric = ((pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))
               or pd.api.types.infer_dtype(values, skipna=True) in NUMBER_OBJECTS)
    if numeric and not categorical:
        present = values.dropna().astype(np.float64)
        if not np.isfinite(present).all():
            raise InputError(f"column {name!r} holds infinite values; replace them before fitting")
        if len(present) == 0:
            return {"name": name, "kind": "numeric", "min": 0.0, "max": 0.0, "fill": 0.0}
        return {"name": name, "kind": "numeric", "min": float(present.min()), "max": float(present.max()),
                "fill": float(present.mean())}
    categories = sorted(set(category_keys(values).dropna()))
    warn_if_identifiers(name, len(categories), int(values.notna().sum()))
    return {"name": name, "kind": "categorical", "categories": categories}


def warn_if_identifiers(name: str, distinct: int, present: int) -> None:
    """Warn of a text column whose values are mostly each their own (ids, dates read from a CSV as
    text, free text): as categories each is seen about once, so the encoder learns nothing of
    them, and a new row's value is unknown. A column of 20 or more values, over half distinct."""
    if distinct >= 20 and distinct > present / 2:
        warn(f"column {name!r} has {distinct} different values in its {present} filled rows, so as categories each "
             f"is seen about once and new rows' values are unknown (an id, dates as text, free text?); leave it "
             f"out (--ignore {name}; TableProcessor.fit(..., ignore=[{name!r}])) or make it a number first "
             f"(dates: pd.to_datetime(table[{name!r}]).dt.year)")


def check_not_dates(name: str, values: pd.Series) -> None:
    """Refuse a date or duration column at fit time: as categories every timestamp is its own, and
    their text ("2020-01-01 00:00:00") is not the one the same table's CSV holds ("2020-01-01"),
    so that CSV's rows all embedded as unknown; as numbers they would be nanosecond counts."""
    if values.dtype.kind in "mM" or pd.api.types.infer_dtype(values, skipna=True) in MOMENTS:
        raise InputError(f"column {name!r} holds dates or durations ({values.dtype}); leave it out "
                         f"(TableProcessor.fit(..., ignore=[{name!r}]); zoo pretrain tjepa --ignore {name}) or "
                         f"convert it first: table[{name!r}].dt.year (or .dt.days for durations) for a number, "
                         f"table[{name!r}].dt.strftime('%Y-%m') for categories")


def category_key(value: Any) -> Optional[str]:
    """Categories are stored as text, so 3, 3.0 and "3" are one category in JSON and at embed time.
    Text is read without the spaces around it ("?" and "" are missing: None), so a DataFrame from
    `pd.read_csv`'s defaults encodes as its file does (Adult's " Male"), and "Male " as "Male"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    key = str(value).strip()
    return None if key in NA_VALUES else key


def scale_numeric(values: pd.Series, column: dict[str, Any], warned: set[str]) -> np.ndarray:
    """Min-max scale with the training range; missing values take the training mean first.
    `warned` holds the columns already warned about for a far value (`check_scaled`)."""
    numbers = to_numbers(values, column["name"]).fillna(column["fill"]).to_numpy()
    if not np.isfinite(numbers).all():
        raise InputError(f"column {column['name']!r} holds infinite values; replace them with numbers or NaN")
    span = column["max"] - column["min"]
    scaled = (numbers - column["min"]) / (span if span > 0 else 1.0)
    check_scaled(numbers, scaled, column, warned)
    return scaled.astype(np.float32)


def to_numbers(values: pd.Series, name: str) -> pd.Series:
    """The column as float64, refusing text and dates: `pd.to_numeric` would read a date or
    duration as its nanosecond count, a silent nonsense input."""
    if values.dtype.kind in "mM":  # datetime64 and timedelta64, with a time zone or Arrow-backed too
        raise InputError(f"column {name!r} is numeric in the fitted schema but holds {values.dtype} values; "
                         f"convert it to a number first (e.g. table[{name!r}].dt.year for dates, .dt.days for "
                         "durations)")
    check_no_booleans(values, name)
    if isinstance(values.dtype, pd.ArrowDtype) and pd.api.types.is_numeric_dtype(values.dtype):
        values = values.astype("float64[pyarrow]")  # `pd.to_numeric` fails on an Arrow decimal column with a gap
    if pd.api.types.is_string_dtype(values.dtype):  # object or pandas 3's str: "?", "NA", "nan" are missing, as in CSVs
        values = values.map(lambda value: np.nan if isinstance(value, str) and value.strip() in CSV_MISSING_TEXT
                            else value)
    try:
        return pd.to_numeric(values, errors="raise").astype(np.float64)
    except (ValueError, TypeError) as err:
        label, bad = next((label, value) for label, value in values.items() if not _is_number(value))
        raise not_a_number(values, name, label, bad) from err


def check_no_booleans(values: pd.Series, name: str) -> None:
    """Refuse True/False in a numeric column: pandas reads them as 1.0 and 0.0 without a word
    (a boolean column given where the fitted table had a number)."""
    if not (pd.api.types.is_bool_dtype(values.dtype) or values.dtype == object):
        return
    booleans = values.map(lambda value: isinstance(value, (bool, np.bool_))).astype(bool)
    if booleans.any():
        first = int(booleans.to_numpy().argmax())  # by position: index labels may repeat
        value = bool(values.iloc[first])
        label = values.index.tolist()[first]  # a Python value, as `items` gives the text refusal's
        raise not_a_number(values, name, label, value, f", which would be read as {float(value)}")


def not_a_number(values: pd.Series, name: str, label: Any, value: Any, note: str = "") -> InputError:
    """The refusal of a numeric column's `value`, naming its row: its number, or its index label
    where the index is not 0..N-1."""
    row = f"row {label}" if isinstance(values.index, pd.RangeIndex) else f"index label {label!r}"
    return InputError(f"column {name!r} is numeric in the fitted schema but holds {value!r} ({row}){note}; pass "
                      "numbers (missing values may be NaN or None)")


def check_scaled(numbers: np.ndarray, scaled: np.ndarray, column: dict[str, Any], warned: set[str]) -> None:
    """Refuse values more than `MAX_SCALED` training ranges out: in float32 the model overflows
    on them (tjepa-adult from about 1e21 ranges) and returns NaN rows. Warn, once per column (a
    job transforms a table chunk by chunk), of one more than `FAR_SCALED` out: its row is finite
    but extreme (tjepa-adult gave an age of 1e5 a row of 1,700 times the norm, unwarned)."""
    where = f"times its training range [{column['min']:g}, {column['max']:g}] away"
    too_far = np.abs(scaled) > MAX_SCALED
    if too_far.any():
        raise InputError(f"column {column['name']!r} holds {float(numbers[too_far][0]):g}, more than "
                         f"{MAX_SCALED:g} {where}; so far out the float32 model overflows to NaN on such values. "
                         "Check its units, or pass NaN to use the training mean")
    far = np.abs(scaled) > FAR_SCALED
    if far.any() and column["name"] not in warned:
        warned.add(column["name"])
        warn(f"column {column['name']!r} holds {float(numbers[far][0]):g}, more than {FAR_SCALED:g} {where}: "
             "the model never saw such a value and gives it an extreme row; check the column's units, or pass "
             "NaN to use the training mean")


def strip_categories(column: dict[str, Any]) -> dict[str, Any]:
    """A copy of a categorical column with the spaces around its vocabulary's entries removed, as
    `category_key` removes them from values: processors fitted before keys were stripped hold
    "Male ". Each entry keeps its position, since the model's embedding rows follow them."""
    if column["kind"] != "categorical":
        return column
    return {**column, "categories": [str(category).strip() for category in column["categories"]]}


def warn_unseen(unseen: pd.Series, column: dict[str, Any], named: set[str], shown: int = 5) -> None:
    """Say which categories the fitted vocabulary lacks: they embed as a missing value would,
    so "male" for "Male" turns a column into missing values without a word otherwise. A key
    that matches a known category but for its case is named with it. Each key is named once,
    and at most `shown` per column (`named` holds those so far): a job embeds a table chunk by
    chunk, and an id-like column would otherwise warn for every chunk."""
    new = [key for key in unseen.unique() if key not in named][: max(shown - len(named), 0)]
    if not new:
        return
    named.update(new)
    by_case = {category.casefold(): category for category in column["categories"]}
    names = [f"{key!r} (did you mean {by_case[key.casefold()]!r}?)" if key.casefold() in by_case else repr(key)
             for key in new]
    last = "; further unseen values of this column are not named" if len(named) == shown else ""
    were, they = ("were", "they are") if len(names) > 1 else ("was", "it is")
    warn(f"column {column['name']!r}: {', '.join(names)} {were} not seen when the model was fitted; "
         f"{they} read as missing values (the unknown bucket){last}")


def category_keys(values: pd.Series) -> pd.Series:
    """Each value's text key (NaN where missing), converting each distinct value once."""
    keys = {value: category_key(value) for value in values.dropna().unique()}
    if isinstance(values.dtype, pd.CategoricalDtype):  # mapped, it would stay categorical and refuse the code -1
        values = values.astype(object)
    return values.map(keys)


def _is_number(value: Any) -> bool:
    """Whether `pd.to_numeric`, which `to_numbers` converts with, reads the value: `float` reads more
    ("1_000", "+nan"), and a value only it read left the refusal without a value to name."""
    try:
        pd.to_numeric(pd.Series([value], dtype=object), errors="raise")
    except (TypeError, ValueError):
        return False
    return True
