"""A table encoder takes a list, tuple or generator of rows (row dicts, Series, DataFrames) as every
other family takes a list, tuple or generator of its items, and embeds them as the same rows in one
DataFrame.

Before (measured on `tjepa-adult` and zoo/examples/tabular/adult_test_rows.csv): `[frame.iloc[0]]`,
`[frame.iloc[[0]], frame.iloc[[1]]]`, `tuple(records)` and `iter(records)` were all refused with
"cannot read a table from list" (tuple, list_iterator), although the message listed Series as
accepted and `embed(frame.iloc[0])` worked; a head's `collate` of examples whose inputs were Series
failed the same way, and `[row, 3]` was refused as a list, naming neither item 1 nor its type.
"""

import pandas as pd
import pytest
import torch

import zoo
from modalities.tabular.tables import iter_frames, row_count
from zoo.demo import example_inputs
from zoo.errors import InputError

CHUNK_ROWS = 4  # the example's 6 rows stream as chunks of 4 and 2, split inside the items below


@pytest.fixture
def frame():
    """The example's rows, with missing values that leave a column all missing in the last chunk."""
    frame = pd.read_csv(example_inputs("tabular")[0])  # adult_test_rows.csv
    frame.loc[4:, "age"] = None
    frame.loc[[0, 4, 5], "occupation"] = None
    return frame


@pytest.fixture
def encoder(offline_cache):
    return zoo.load("tjepa-adult")


def series(frame):
    return [frame.iloc[index] for index in range(len(frame))]


#: the example's rows in each sequence form, made from the frame and its row dicts
FORMS = {
    "list of Series": lambda frame, records: series(frame),
    "list of one-row DataFrames": lambda frame, records: [frame.iloc[[index]] for index in range(len(frame))],
    "tuple of row dicts": lambda frame, records: tuple(records),
    "generator of row dicts": lambda frame, records: (record for record in records),
    "iterator of Series": lambda frame, records: iter(series(frame)),
    "mixed list": lambda frame, records: [records[0], frame.iloc[1], frame.iloc[2:5], records[5]],
    "list of DataFrames": lambda frame, records: [frame.iloc[:3], frame.iloc[3:]],
    "row dicts with None for missing": lambda frame, records: [
        {name: None if pd.isna(value) else value for name, value in record.items()} for record in records],
}


@pytest.mark.parametrize("form", FORMS)
def test_sequences_of_rows_embed_as_one_dataframe(encoder, frame, form):
    """Each form was refused ("cannot read a table from list|tuple|generator|list_iterator")."""
    expected = encoder.embed(frame, chunk_rows=CHUNK_ROWS, progress=False)
    rows = encoder.embed(FORMS[form](frame, frame.to_dict("records")), chunk_rows=CHUNK_ROWS, progress=False)
    assert rows.shape == (6, 64) and torch.equal(rows, expected)


def test_a_generator_is_read_once_in_chunks_numbered_across_them(frame):
    chunks = list(iter_frames((record for record in frame.to_dict("records")), chunk_rows=CHUNK_ROWS))
    assert [list(chunk.index) for chunk in chunks] == [[0, 1, 2, 3], [4, 5]]
    assert row_count(iter(frame.to_dict("records"))) is None  # counting it would use it up
    assert row_count([frame.iloc[0], frame.iloc[1:4], {"age": 1}]) == 5


def test_a_heads_collate_takes_series_and_one_row_frames(encoder, frame):
    """`clf.collate([{"input": frame.iloc[0], "label": 1}, ...])` raised "cannot read a table from list"."""
    clf = zoo.for_classification(encoder, num_labels=2)
    by_series = clf.collate([{"input": frame.iloc[index], "label": index % 2} for index in range(3)])
    by_frames = clf.collate([{"input": frame.iloc[[index]], "label": index % 2} for index in range(3)])
    expected = encoder.processor(frame.iloc[:3])
    for batch in (by_series, by_frames):
        assert all(torch.equal(batch[key], expected[key]) for key in ("numeric", "categorical"))
        assert batch["labels"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("bad, name", [(3, "int"), ([25, "Private"], "list"), ("rows.csv", "str")])
def test_an_item_that_is_not_a_row_is_named_by_its_place_and_type(encoder, frame, bad, name):
    """`[row, 3]` was refused as "cannot read a table from list", naming neither the item nor its type."""
    rows = iter([frame.iloc[0].to_dict(), frame.iloc[1], bad])
    with pytest.raises(InputError, match=f"^input 2: table row of type {name} is not supported; pass row dicts") as err:
        encoder.embed(rows, progress=False)
    assert err.value.input_index == 2
    if name == "str":
        assert "a list of table files holds paths only" in str(err.value)
