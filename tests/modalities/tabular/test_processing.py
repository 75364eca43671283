"""The table processor: fitted schema, column matching, missing and unseen values, errors."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import shared_path

from modalities.tabular.processing import TableProcessor
from modalities.tabular.tables import iter_frames
from zoo.errors import ConfigError, InputError


@pytest.fixture
def frame():
    return pd.DataFrame({
        "age": [20, 30, np.nan, 50],
        "city": ["a", "b", "a", None],
        "member": [True, False, True, True],
        "label": [0, 1, 0, 1],
    })


def test_fit_records_kinds_ranges_and_vocabularies(frame):
    processor = TableProcessor.fit(frame, target="label")
    assert processor.numeric_names == ["age"]
    assert processor.categorical_names == ["city", "member"]
    assert processor.cardinalities == [3, 3]  # vocabulary + unknown bucket
    age = processor.columns[0]
    assert (age["min"], age["max"], age["fill"]) == (20.0, 50.0, pytest.approx(100 / 3))


def test_transform_scales_fills_and_buckets(frame):
    processor = TableProcessor.fit(frame, target="label")
    batch = processor.transform(frame)
    expected_age = [0.0, 1 / 3, (100 / 3 - 20) / 30, 1.0]
    assert torch.allclose(batch["numeric"][:, 0], torch.tensor(expected_age))
    # city: a -> 1, b -> 2, missing -> 0; member: "False" -> 1, "True" -> 2
    assert batch["categorical"].tolist() == [[1, 2], [2, 1], [1, 2], [0, 2]]


def test_columns_matched_by_name_unseen_categories_to_unknown(frame):
    processor = TableProcessor.fit(frame, target="label")
    shuffled = frame[["member", "label", "city", "age"]]
    assert all(torch.equal(processor.transform(shuffled)[k], processor.transform(frame)[k])
               for k in ("numeric", "categorical"))
    with pytest.warns(UserWarning, match="column 'city': 'zurich' was not seen when the model was fitted; it is "
                                         "read as missing values"):
        new = processor.transform({"age": 80, "city": "zurich", "member": True})
    assert new["categorical"].tolist() == [[0, 2]]
    with pytest.warns(UserWarning, match="'A' \\(did you mean 'a'\\?\\)"):  # "male" for "Male" was silently missing
        assert processor.transform({"age": 20, "city": "A", "member": True})["categorical"].tolist() == [[0, 2]]
    spaced = processor.transform({"age": 20, "city": " a ", "member": "True "})  # "Male " was unseen (4.1 off)
    assert spaced["categorical"].tolist() == [[1, 2]]
    assert new["numeric"].item() == pytest.approx(2.0)  # outside the training range: scaled, not clipped


def test_vocabularies_fitted_with_spaces_are_stripped_once_at_load(frame):
    """Processors fitted before keys were stripped hold "a " (Adult's "Male "). Was: they were
    stripped at each encode, so the case hint named "a " and a vocabulary holding both "a" and
    "a " failed in pandas' get_indexer on the duplicate."""
    columns = TableProcessor.fit(frame, target="label").columns
    columns[1] = {**columns[1], "categories": ["a ", "b"]}
    old = TableProcessor(columns=columns, target="label")
    assert old.columns[1]["categories"] == ["a", "b"]
    assert old.transform({"age": 20, "city": "a ", "member": True})["categorical"].tolist() == [[1, 2]]
    with pytest.warns(UserWarning, match="'A' \\(did you mean 'a'\\?\\)"):
        old.transform({"age": 20, "city": "A", "member": True})
    both = TableProcessor(columns=[*columns[:1], {**columns[1], "categories": ["a", "a ", "b"]}, columns[2]],
                          target="label")
    assert both.transform({"age": 20, "city": ["a", "b"], "member": True})["categorical"].tolist() == [[1, 2], [3, 2]]


def test_unseen_categories_are_named_once_each_and_at_most_five_per_column(frame):
    """A job embeds a table chunk by chunk; was: each chunk warned again (40 warnings for a
    20,480-row table with two unseen columns)."""
    processor = TableProcessor.fit(frame, target="label")
    with pytest.warns(UserWarning) as caught:
        for chunk in range(20):
            processor.transform({"age": [20, 30], "city": ["zurich", f"id{chunk}"], "member": "maybe"})
    messages = [str(warning.message) for warning in caught]
    columns = [message.split(":")[0] for message in messages]
    assert columns == ["column 'city'", "column 'member'", *["column 'city'"] * 3]
    assert "'zurich', 'id0' were not seen" in messages[0] and "'id3' was not seen" in messages[-1]
    assert messages[-1].endswith("; further unseen values of this column are not named")


def test_missing_column_and_wrong_type_name_the_column(frame):
    processor = TableProcessor.fit(frame, target="label")
    with pytest.raises(InputError, match=r"\['city'\] are missing from the input; the model"):
        processor.transform(frame.drop(columns="city"))
    with pytest.raises(InputError, match=r"\['city'\] are missing from the input; it has \['City'\] instead "
                                         r"\(misspelt\? rename them\)"):  # 'City' went unnamed
        processor.transform(frame.rename(columns={"city": "City"}))
    with pytest.raises(InputError, match="column 'age' is numeric .* holds 'old' \\(row 0\\)"):
        processor.transform(frame.assign(age=["old", 1, 2, 3]))
    with pytest.raises(InputError, match="infinite"):
        processor.transform(frame.assign(age=[np.inf, 1, 2, 3]))


def test_unseen_columns_are_refused_unless_ignored(frame, tmp_path):
    """A column the schema never saw is an error naming it (a typo would otherwise pass silently);
    the target and the columns left out at fit time pass, and extra_columns="ignore" skips the rest."""
    processor = TableProcessor.fit(frame.assign(row_id=range(4)), target="label", ignore=["row_id"])
    assert processor.transform(frame.assign(row_id=7))["numeric"].shape == (4, 1)
    with pytest.raises(InputError, match=r"columns \['Age', 'note'\] were not seen .*drop them "
                                         r"\(table.drop\(columns=\['Age', 'note'\]\)\) or set processor.extra_columns"):
        processor.transform(frame.assign(Age=1, note="x"))
    lenient = TableProcessor.from_file(processor.save(tmp_path))
    assert lenient.ignored == ["row_id"]
    lenient.extra_columns = "ignore"
    assert torch.equal(lenient.transform(frame.assign(note="x"))["categorical"],
                       processor.transform(frame)["categorical"])
    with pytest.raises(ConfigError, match="extra_columns='drop'; use one of"):
        TableProcessor(extra_columns="drop")


def test_fit_errors():
    with pytest.raises(InputError, match="no rows"):
        TableProcessor.fit(pd.DataFrame({"a": []}))
    with pytest.raises(InputError, match=r"\['y'\] are not in the table"):
        TableProcessor.fit(pd.DataFrame({"a": [1]}), target="y")
    with pytest.raises(InputError, match=r"\['nope'\] are not in the table \(check their spelling\)"):
        TableProcessor.fit(pd.DataFrame({"a": [1], "b": [2]}), ignore=["nope"])  # was accepted
    with pytest.raises(InputError, match="not fitted"):
        TableProcessor().transform(pd.DataFrame({"a": [1]}))


def test_numbers_forced_categorical_match_text_at_embed_time():
    processor = TableProcessor.fit(pd.DataFrame({"code": [1, 2, 3], "x": [0.0, 1.0, 2.0]}), categorical=["code"])
    assert processor.columns[0]["categories"] == ["1", "2", "3"]
    assert processor.transform({"code": ["2", "3"], "x": [0, 0]})["categorical"].tolist() == [[2], [3]]


def test_state_round_trips_through_json(tmp_path, frame):
    processor = TableProcessor.fit(frame, target="label")
    processor.save(tmp_path)
    restored = TableProcessor.from_file(tmp_path / "preprocessor_config.json")
    assert restored == processor


def test_csv_streams_in_chunks_like_the_frame(tmp_path, frame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    chunks = list(iter_frames(path, chunk_rows=3))
    assert [len(chunk) for chunk in chunks] == [3, 1]
    processor = TableProcessor.fit(frame, target="label")
    streamed = torch.cat([processor.transform(chunk)["categorical"] for chunk in chunks])
    assert torch.equal(streamed, processor.transform(frame)["categorical"])


def test_row_totals_for_the_progress_bar_are_known_without_reading_csv(tmp_path, frame):
    from modalities.tabular.encoder import table_rows

    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    parquet, csv = str(tmp_path / "t.parquet"), str(tmp_path / "t.csv")
    assert [table_rows(frame), table_rows(parquet), table_rows([parquet, parquet])] == [4, 4, 8]
    assert table_rows(frame.to_dict("records")) == 4
    assert table_rows(csv) is None and table_rows([parquet, csv]) is None


def test_unreadable_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(iter_frames("/nonexistent/table.csv"))
    with pytest.raises(InputError, match="is a folder; pass one .csv or .parquet file"):  # was "does not exist"
        list(iter_frames(tmp_path))
    with pytest.raises(InputError, match="cannot read a table from int"):
        list(iter_frames(3))


def test_adult_schema_matches_the_official_cardinalities():
    from modalities.tabular.datasets import load_adult

    splits = load_adult(shared_path("data", "adult"))
    processor = TableProcessor.fit(splits.train, target=splits.target)
    assert len(splits.train) == 32561 and len(splits.test) == 16281
    # the official loader counts "?" as a category; here it is the unknown bucket, so the sizes agree
    assert processor.cardinalities == [9, 17, 8, 15, 7, 6, 3, 42]
    assert set(splits.test[splits.target]) == {"<=50K", ">50K"}


def test_errors_in_loaded_adult_rows_do_not_name_the_file_they_came_from():
    """Was: the frames kept their file in pandas' attrs, so an error in rows shuffled in memory
    named adult.test and a row number that was no longer the file's."""
    from modalities.tabular.datasets import load_adult

    test = load_adult(shared_path("data", "adult")).test.sample(frac=1, random_state=0).reset_index(drop=True)
    processor = TableProcessor.fit(test.head(50), target="target")
    with pytest.raises(InputError) as caught:
        processor.transform(test.assign(age=["old"] + [30] * (len(test) - 1)))
    assert "adult.test" not in str(caught.value) and "holds 'old' (row 0)" in str(caught.value)


def test_a_dataframe_read_with_pandas_defaults_encodes_as_its_file_does(tmp_path):
    """UCI files put a space after each comma and write "?" for missing. The zoo's CSV reader
    skips both; a DataFrame from plain `pd.read_csv` kept " Private", which missed the vocabulary:
    every categorical cell of Adult's test rows fell in the unknown bucket (1.7 % from the file)."""
    import zoo

    rows = pd.read_csv(shared_path("data", "adult", "adult.test"), nrows=400)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    processor = zoo.load("tjepa-adult").processor
    from_file, from_frame = processor(str(tmp_path / "rows.csv")), processor(rows)
    assert torch.equal(from_file["categorical"], from_frame["categorical"])
    assert torch.equal(from_file["numeric"], from_frame["numeric"])
    assert 0 < (from_frame["categorical"] == 0).float().mean() < 0.05
    fitted = TableProcessor.fit(rows, target="target")
    work_class = next(column for column in fitted.columns if column["name"] == "work_class")
    assert "Private" in work_class["categories"] and not any(key.startswith(" ") or key == "?"
                                                             for key in work_class["categories"])
    rows.loc[:9, "age"] = None
    rows.to_csv(tmp_path / "holes.csv", index=False, na_rep="?")  # a numeric column of a UCI file with holes
    holes = pd.read_csv(tmp_path / "holes.csv")  # "age" is text: object on pandas 2, str on pandas 3
    for frame in (holes, holes.astype({"age": "string"})):  # the str dtype was refused: "holds '?'"
        assert torch.equal(processor(frame)["numeric"], processor(str(tmp_path / "holes.csv"))["numeric"])


def test_a_bad_value_in_a_table_file_is_named_by_file_and_row(frame, tmp_path):
    """Read in chunks, a bad value named neither its file nor its row: one of thousands of rows
    in one of several files could not be found. Rows count from 0 after the header, as FILE#ROW
    names them; a parquet file's chunks count on too (each batch restarted at 0)."""
    from modalities.tabular.tables import iter_frames

    processor = TableProcessor.fit(frame, target="label")
    table = pd.concat([frame] * 3, ignore_index=True).assign(age=[20, 30, 40, 50] * 2 + [20, 30, "old", 50])
    table.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="table file '.*t.csv': column 'age' .* holds 'old' \\(row 10\\)"):
        for chunk in iter_frames(tmp_path / "t.csv", chunk_rows=4):
            processor.transform(chunk)
    table.astype({"age": str}).to_parquet(tmp_path / "t.parquet")
    chunks = list(iter_frames(tmp_path / "t.parquet", chunk_rows=4))
    assert [chunk.index[0] for chunk in chunks] == [0, 4, 8]
    with pytest.raises(InputError, match="t.parquet': column 'age' .* holds 'old' \\(row 10\\)"):
        processor.transform(chunks[2])


@pytest.mark.parametrize("dtype", ["category", pd.CategoricalDtype(["b", "a", "c"], ordered=True)])
def test_category_dtype_encodes_as_its_values(frame, dtype, tmp_path):
    """A pandas category column (a parquet file's dictionary-encoded one too) holding a missing
    or unseen value was pandas' "Cannot setitem on a Categorical with a new category (-1)"."""
    processor = TableProcessor.fit(frame.astype({"city": dtype}), target="label")
    assert processor.columns == TableProcessor.fit(frame, target="label").columns  # unused "c" is no category
    expected = processor.transform(frame)["categorical"]
    assert torch.equal(processor.transform(frame.astype({"city": dtype}))["categorical"], expected)
    frame.astype({"city": "category"}).to_parquet(tmp_path / "t.parquet")
    assert torch.equal(processor(str(tmp_path / "t.parquet"))["categorical"], expected)
    with pytest.warns(UserWarning, match="'zurich' was not seen"):
        unseen = processor.transform(frame.assign(city=pd.Categorical(["zurich", "b", "a", None])))
    assert unseen["categorical"][:, 0].tolist() == [0, 2, 1, 0]


def test_an_object_column_of_numbers_is_fitted_as_numbers(frame):
    """Was fitted as categorical, a category per distinct number (`astype(object)`, a column
    built from mixed sources, a Parquet decimal column): an age of 31 was then an unseen
    category, not a number."""
    from decimal import Decimal

    numeric = TableProcessor.fit(frame, target="label")
    for ages in (frame["age"].astype(object), pd.Series([20, 30, None, 50], dtype=object),
                 pd.Series([Decimal(20), Decimal("30.0"), None, Decimal(50)])):
        processor = TableProcessor.fit(frame.assign(age=ages), target="label")
        assert processor.columns == numeric.columns
    assert TableProcessor.fit(frame.astype({"age": str}), target="label").categorical_names[0] == "age"  # text


def test_an_arrow_decimal_column_with_a_gap_reads_as_numbers(frame):
    """`pd.read_parquet(..., dtype_backend="pyarrow")` of a decimal column with a missing value
    was refused as "holds <NA> (row 2)": `pd.to_numeric` fails on it, and the gap was blamed."""
    import pyarrow as pa

    processor = TableProcessor.fit(frame, target="label")
    decimal = frame.assign(age=pd.array([20, 30, None, 50], dtype=pd.ArrowDtype(pa.decimal128(5, 2))))
    assert torch.equal(processor.transform(decimal)["numeric"], processor.transform(frame)["numeric"])


@pytest.mark.parametrize("name, separator", [("t.csv", ";"), ("t.tsv", "\t"), ("t.tsv.gz", "\t"), ("t.txt", "\t")])
def test_semicolon_and_tab_separated_files_are_read_by_their_separator(frame, tmp_path, name, separator):
    """Read with commas, a `;` or tab file was one column named by its header line ("columns
    [...] are missing"), and a .tsv file was refused for its ending."""
    processor = TableProcessor.fit(frame, target="label")
    frame.to_csv(tmp_path / name, index=False, sep=separator)
    from_file = processor(str(tmp_path / name))
    assert all(torch.equal(from_file[key], processor.transform(frame)[key]) for key in from_file)


@pytest.mark.parametrize("moments", [pd.to_datetime(["2020-01-01", "2020-03-01", None, "2021-01-01"]),
                                     pd.to_timedelta([1, 2, None, 3], unit="D")])
def test_a_date_column_is_refused_at_fit_time_with_the_fix(frame, moments, tmp_path):
    """Was fitted as a vocabulary of every timestamp's text ("2020-01-01 00:00:00"), which the same
    table read from its CSV ("2020-01-01") never matched: all its rows embedded as unknown."""
    dated = frame.assign(when=moments)
    with pytest.raises(InputError, match=r"column 'when' holds dates or durations \((datetime|timedelta)64.*\); "
                                         r"leave it out \(TableProcessor.fit\(..., ignore=\['when'\]\).*"
                                         r"\.dt\.year"):
        TableProcessor.fit(dated, target="label")
    processor = TableProcessor.fit(dated, target="label", ignore=["when"])
    dated.to_csv(tmp_path / "dated.csv", index=False)
    from_csv, from_frame = processor(tmp_path / "dated.csv"), processor(dated)
    assert all(torch.equal(from_csv[key], from_frame[key]) for key in from_frame)


def test_a_text_column_of_mostly_distinct_values_is_warned_of(tmp_path):
    """Dates in a CSV (text), ids and free text were fitted as categories each seen about once,
    without a word; a repeated text column of many values is not warned of."""
    days = pd.date_range("2020-01-01", periods=40).strftime("%Y-%m-%d")
    table = pd.DataFrame({"day": days, "city": [f"c{i % 20}" for i in range(40)], "x": np.arange(40.0)})
    table.to_csv(tmp_path / "days.csv", index=False)
    with pytest.warns(UserWarning, match=r"column 'day' has 40 different values in its 40 filled rows.*\(--ignore "
                                         r"day; TableProcessor.fit\(..., ignore=\['day'\]\)\)") as caught:
        TableProcessor.fit(tmp_path / "days.csv")
    assert len(caught) == 1  # 'city': 20 values in 40 rows, and 'x' is numeric
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TableProcessor.fit(tmp_path / "days.csv", ignore=["day"])


def test_true_or_false_in_a_numeric_column_is_refused_by_row(frame):
    """pandas reads True and False as 1.0 and 0.0: a boolean column given where the fitted table
    had a number embedded without a word."""
    processor = TableProcessor.fit(frame, target="label")
    mixed = frame.astype({"age": object})
    mixed.loc[2, "age"] = True
    with pytest.raises(InputError, match=r"column 'age' is numeric .* holds True \(row 2\), which would be read as "
                                         r"1.0"):
        processor.transform(mixed)
    with pytest.raises(InputError, match=r"holds False \(row 0\), which would be read as 0.0"):
        processor.transform(frame.assign(age=[False] * len(frame)))
    mixed.index = [5, 5, 6, 6]  # repeated labels: the value is taken by position
    with pytest.raises(InputError, match=r"holds True \(index label 6\), which would be read as 1.0"):
        processor.transform(mixed)
    as_objects = processor.transform(frame.astype({"age": object}))["numeric"]  # numbers as objects still read
    assert torch.equal(as_objects, processor.transform(frame)["numeric"])


def test_a_numeric_category_column_with_gaps_matches_its_text_without_a_decimal_point():
    """A code column with a gap is float64 in pandas (1.0, 2.0, NaN): its categories must be stored
    as "1" and "2", so the same table's CSV text "2" (or the int 2) is seen, not read as missing
    ("2.0" would make every row of the code column unknown)."""
    processor = TableProcessor.fit(pd.DataFrame({"code": [1, 2, np.nan], "x": [0.0, 1.0, 2.0]}), categorical=["code"])
    assert processor.columns[0]["categories"] == ["1", "2"]
    assert processor.transform({"code": ["2", 1], "x": [0, 0]})["categorical"].tolist() == [[2], [1]]


def test_a_column_constant_in_training_scales_by_a_unit_range():
    """A column of one value in training (min = max = 5) has no range to divide by: values are
    shifted by the minimum and divided by 1, so 6 embeds as 1.0 and 5 as 0.0 (exactly; a tiny
    divisor such as 1e-6 would turn 6 into 1e6)."""
    processor = TableProcessor.fit(pd.DataFrame({"k": [5.0, 5.0, 5.0], "x": [0.0, 1.0, 2.0]}))
    assert processor.transform({"k": [5.0, 6.0], "x": [0, 0]})["numeric"][:, 0].tolist() == [0.0, 1.0]
