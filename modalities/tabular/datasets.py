"""The tabular sets the zoo's recipes and probes know by name.

- "adult": UCI Adult (census income) from a folder holding `adult.data` (32 561 training
  rows) and `adult.test` (16 281 test rows) with a header line; `?` marks a missing value
  and the test labels end with a dot, which is dropped. Target: income > 50K (binary).
- "diabetes": scikit-learn's diabetes set (442 rows, 10 numeric features, a numeric
  disease-progression target), shipped inside scikit-learn; split 80/20 with seed 0. Its
  downstream MLP and ResNet are smaller than Adult's (`DIABETES_MLP`, `DIABETES_RESNET`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from modalities.tabular.tables import SOURCE, read_table
from zoo.errors import ConfigError, InputError

if TYPE_CHECKING:
    from modalities.tabular.processing import TableProcessor

#: share of a table's rows held out for testing when no test table is given
TEST_SHARE = 0.2
#: a table of your own with fewer training rows than this is probed with the small networks
#: (`SMALL_TABLE_DOWNSTREAM`): Adult's, at 512 rows a step, run out of patience before
#: they learn (4,000 Adult rows: a constant output, 24.0 %, against 81.3 % and 83.3 %)
SMALL_TABLE_ROWS = 10_000
#: a small MLP for 318 training rows (the Adult-tuned one takes one step per epoch there and stops untrained)
DIABETES_MLP = {"n_hidden": 2, "hidden_dim": 64, "dropout": 0.1, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32,
                "max_epochs": 300, "patience": 30}
#: a small ResNet for the same reason, with its cosine over the epoch budget
DIABETES_RESNET = {"n_blocks": 1, "d_block": 64, "d_hidden_multiplier": 2, "d_out": 32, "lr": 1e-3,
                   "weight_decay": 1e-4, "batch_size": 32, "max_epochs": 300, "patience": 30, "cosine_steps": None}
#: the downstream settings of a small table, by protocol (diabetes, and tables of your own under
#: `SMALL_TABLE_ROWS`)
SMALL_TABLE_DOWNSTREAM = {"mlp": DIABETES_MLP, "mlp-raw": DIABETES_MLP, "resnet": DIABETES_RESNET,
                          "resnet-raw": DIABETES_RESNET}


@dataclasses.dataclass
class TableSplits:
    """A labelled table split into train and test, with the task its target defines."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    task: str
    categorical: tuple[str, ...] = ()
    downstream: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """Targets as numbers: class indices (classes sorted as in the training split) or floats."""
        if self.task == "regression":
            return frame[self.target].to_numpy(np.float32)
        classes = sorted(self.train[self.target].unique())
        return pd.Categorical(frame[self.target], categories=classes).codes.astype(np.int64)


def load_adult(folder: str | Path) -> TableSplits:
    """UCI Adult's official splits from `folder` (adult.data, adult.test), the test labels'
    trailing dot dropped so that both splits have the same two classes."""
    folder = Path(folder)
    files = [folder / "adult.data", folder / "adult.test"]
    absent = [str(path) for path in files if not path.is_file()]
    if absent:
        raise InputError(f"Adult needs {absent}; pass --data pointing at the folder with adult.data and adult.test "
                         "(../shared/data/adult in the project checkout)")
    train, test = (read_table(path) for path in files)
    for frame in (train, test):
        frame["target"] = frame["target"].str.rstrip(".")
        frame.attrs.pop(SOURCE)  # the frames are the user's now: errors must not name a file they may no longer match
    return TableSplits("adult", train, test, "target", "binary")


def load_diabetes() -> TableSplits:
    """scikit-learn's diabetes set with unscaled features, split 80/20 with seed 0; probed with
    the small networks (`SMALL_TABLE_DOWNSTREAM`): Adult's stop untrained on its few hundred rows."""
    from sklearn.datasets import load_diabetes as sklearn_diabetes
    from sklearn.model_selection import train_test_split

    frame = sklearn_diabetes(as_frame=True, scaled=False).frame
    train, test = train_test_split(frame, test_size=0.2, random_state=0)
    return TableSplits("diabetes", train.reset_index(drop=True), test.reset_index(drop=True), "target", "regression",
                       downstream=SMALL_TABLE_DOWNSTREAM)


def load_dataset(name: str, folder: Optional[str | Path] = None) -> TableSplits:
    """A named tabular set; `folder` holds its files where the set is not shipped with a library."""
    key = name.lower()
    if key == "adult":
        if folder is None:
            raise InputError("the adult set needs --data DIR (the folder with adult.data and adult.test)")
        return load_adult(folder)
    if key == "diabetes":
        return load_diabetes()
    raise InputError(f"unknown tabular dataset {name!r}; known: ['adult', 'diabetes']")


def embed_dataset(encoder: Any, name: str, folder: Optional[str | Path], layer: Any = None,
                  pool: Optional[str] = None, batch_size: Optional[int] = None,
                  device: Optional[str] = None, progress: bool = True) -> tuple[list[str], list[np.ndarray]]:
    """A named set's rows for `zoo embed --dataset`, as (names, rows): the training rows
    ("train#I"), then the test rows ("test#I"); the target column is not an input."""
    splits = load_dataset(name, folder)
    names, rows = [], []
    for split, frame in (("train", splits.train), ("test", splits.test)):
        embedded = encoder.embed(frame.drop(columns=[splits.target]), layer=layer, pool=pool or "mean",
                                 batch_size=batch_size or encoder.embed_batch_size, device=device, progress=progress)
        names += [f"{split}#{index}" for index in range(len(frame))]
        rows += list(embedded.numpy())
    return names, rows


def target_task(values: pd.Series, task: Optional[str] = None) -> str:
    """The task a target column defines: `task` ("classification" or "regression") where given,
    else regression for numbers with a fraction, classes for anything else (binary for two)."""
    if task not in (None, "classification", "regression"):
        raise ConfigError(f"--task {task!r}; use classification or regression")
    if task is None:
        fractional = pd.api.types.is_float_dtype(values) and bool((values != values.round()).any())
        task = "regression" if fractional else "classification"
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(values):
            raise InputError(f"target {values.name!r} holds text such as {values.iloc[0]!r}; regression needs numbers")
        return task
    classes = values.nunique()
    if classes < 2:
        raise InputError(f"target {values.name!r} has {classes} class{'es' if classes != 1 else ''}; a classifier "
                         "needs at least two")
    return "binary" if classes == 2 else "multiclass"


def labelled_frame(table: Any, target: str, role: str) -> pd.DataFrame:
    """A table read whole, with its `target` column present and filled in every row."""
    frame = read_table(table)
    if target not in frame.columns:
        raise InputError(f"--target {target!r} is not a column of the {role} table {str(table)!r}; its columns: "
                         f"{list(frame.columns)[:20]}")
    missing = int(frame[target].isna().sum())
    if missing:
        raise InputError(f"{missing} rows of the {role} table {str(table)!r} have no {target!r}; drop them first")
    if frame.empty:
        raise InputError(f"the {role} table {str(table)!r} has no rows, only its header")
    return frame


def check_test_classes(train: pd.DataFrame, test: pd.DataFrame, target: str, test_table: Any) -> None:
    """Test rows of a class no training row has would be scored against a head that cannot
    predict it: the score would be reported, and mean nothing."""
    unseen = sorted(set(test[target].map(str)) - set(train[target].map(str)))
    if unseen:
        raise InputError(f"the test table {str(test_table)!r} has {target!r} values no training row has: "
                         f"{unseen[:10]}; a model cannot learn them from these rows: drop those test rows or add "
                         "training rows of them (or pass --task regression for a numeric target)")


def few_rows(labels: pd.Series) -> str:
    """How many classes a target has and how many of them have a single row, which no split by
    class can put on both sides."""
    counts = labels.value_counts()
    return f"its {len(counts)} classes include {int((counts < 2).sum())} with a single row"


def regression_hint(labels: pd.Series) -> str:
    """The fix for a numeric target of whole values (a diabetes score of 151.0) read as classes."""
    return ", or --task regression: its values are numbers" if pd.api.types.is_numeric_dtype(labels) else ""


def table_splits(table: Any, target: str, test_table: Any = None, task: Optional[str] = None,
                 processor: Optional[TableProcessor] = None) -> TableSplits:
    """A labelled table of your own (`zoo probe|finetune --table`) as a train and a test split:
    the rows of `test_table`, or `TEST_SHARE` of the table's rows held out (seed 0, stratified by
    class for classification). With the encoder's `processor`, every row's features are read
    first (`check_features`)."""
    from sklearn.model_selection import train_test_split

    frame = labelled_frame(table, target, "training")
    check_features(processor, frame, target)
    task = target_task(frame[target], task)
    if test_table is not None:
        train, test = frame, labelled_frame(test_table, target, "test")
        check_features(processor, test, target)
        if task != "regression":
            check_test_classes(train, test, target, test_table)
    else:
        try:
            train, test = train_test_split(frame, test_size=TEST_SHARE, random_state=0,
                                           stratify=None if task == "regression" else frame[target])
        except ValueError as err:  # a class too small to appear in both splits
            raise InputError(f"cannot hold out {TEST_SHARE:.0%} of {str(table)!r} by class: {few_rows(frame[target])}; "
                             f"pass --test-table{regression_hint(frame[target])}") from err
    return TableSplits(Path(str(table)).stem, train.reset_index(drop=True), test.reset_index(drop=True), target, task,
                       downstream=SMALL_TABLE_DOWNSTREAM if len(train) < SMALL_TABLE_ROWS else {})


def check_features(processor: Optional[TableProcessor], frame: pd.DataFrame, target: str) -> None:
    """Read a labelled table's features as the encoder will, before any training: a bad value was
    met in the batch that drew it (mid-training, or in the test table after training), named by its
    place in that batch or in the shuffled split, and not by its file."""
    if processor is not None:
        processor.transform(frame.drop(columns=[target]))


def finetune_rows(splits: TableSplits) -> list[tuple[dict[str, Any], Any, bool]]:
    """A set's rows as (features, label, is_test), the training rows first: the features a dict
    of columns (the target left out), the label a class name, or a float for regression."""
    rows = []
    for frame, test in ((splits.train, False), (splits.test, True)):
        features = frame.drop(columns=[splits.target]).to_dict("records")
        labels = frame[splits.target].astype(float) if splits.task == "regression" else frame[splits.target].map(str)
        rows += [(row, label, test) for row, label in zip(features, labels)]
    return rows


def finetune_data(name: str, folder: Optional[str | Path], fold: int = 0) -> list[tuple[dict[str, Any], Any, bool]]:
    """What `zoo finetune --dataset` trains on: the named set's rows (`finetune_rows`)."""
    if fold:
        raise ConfigError(f"--fold {fold} is for sets of graphs; {name} has its own test split")
    return finetune_rows(load_dataset(name, folder))


def finetune_table(table: Any, target: str, test_table: Any = None, processor: Optional[TableProcessor] = None,
                   task: Optional[str] = None) -> list[tuple[dict[str, Any], Any, bool]]:
    """What `zoo finetune --table` trains on: a table of your own's rows (`table_splits`), their
    features read first by the encoder's `processor`; `task` as `zoo probe --task` takes it."""
    return finetune_rows(table_splits(table, target, test_table, task, processor=processor))
