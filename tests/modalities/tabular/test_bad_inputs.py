"""Bad tables meet a `zoo.errors` class naming the bad value and the fix, never a pandas,
pyarrow or torch error and never a silent wrong (NaN or nonsense) row."""

import re
import warnings

import pandas as pd
import pytest
import torch

from modalities.tabular.processing import TableProcessor
from modalities.tabular.tables import iter_frames
from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
from zoo.errors import CheckpointError, ConfigError, InputError, ZooWarning
from zoo.hub import load_folder

TINY = dict(hidden_dim=16, num_layers=2, num_heads=2, dim_feedforward=32)


@pytest.fixture
def table():
    return pd.DataFrame({"x": [0.5, 1.5, 2.0, 3.0], "colour": ["red", "blue", "red", None], "y": [1, 2, 3, 4]})


@pytest.fixture
def encoder(table):
    torch.manual_seed(0)
    processor = TableProcessor.fit(table)
    return TJEPAEncoder(TJEPAConfig.for_table(processor, **TINY), processor).eval()


def test_empty_and_corrupt_files_name_the_file(encoder, tmp_path):
    """Were pandas' EmptyDataError and pyarrow's ArrowInvalid."""
    (tmp_path / "e.csv").write_text("")
    (tmp_path / "blank.csv").write_text("\n\n")
    (tmp_path / "g.parquet").write_text("garbage")
    with pytest.raises(InputError, match=r"e.csv' is empty \(0 bytes\)"):
        encoder.embed(str(tmp_path / "e.csv"), progress=False)
    with pytest.raises(InputError, match="blank.csv' holds no columns .* needs a header line"):
        list(iter_frames(tmp_path / "blank.csv"))
    with pytest.raises(InputError, match="g.parquet' is not a readable Parquet file"):
        encoder.embed(str(tmp_path / "g.parquet"), progress=False)  # the progress bar's row count reads it first
    with pytest.raises(InputError, match="g.parquet' is not a readable Parquet file"):
        list(iter_frames(tmp_path / "g.parquet"))
    with pytest.raises(InputError, match="table input 'https://example.com/a.csv' is a URL"):  # was 'https:/ex...'
        encoder.embed("https://example.com/a.csv", progress=False)


def test_header_only_csv_has_no_rows(encoder, table, tmp_path):
    """Was `torch.cat(): expected a non-empty list of Tensors`."""
    table.head(0).to_csv(tmp_path / "hdr.csv", index=False)
    with pytest.raises(InputError, match="got a table with no rows"):
        encoder.embed(str(tmp_path / "hdr.csv"), progress=False)


def test_dict_columns_of_unequal_length_are_named(encoder, table):
    """Was pandas' "All arrays must be of the same length"."""
    columns = {**{name: list(table[name]) for name in table}, "x": [1.0]}
    with pytest.raises(InputError, match=r"differ in length: \{'x': 1\} \(column: values\), while the other 2 "
                                         "columns have 4 each"):
        encoder.embed(columns, progress=False)


@pytest.mark.parametrize("value", [1e30, -1e30, 3e38])
def test_values_that_overflow_the_model_are_refused(encoder, table, value):
    """Were a silent NaN row: the float32 model overflows far out of the training range."""
    message = re.escape(f"column 'x' holds {value:g}, more than 1e+12 times its training range [0.5, 3] away")
    with pytest.raises(InputError, match=message):
        encoder.embed(table.assign(x=[value, 1.0, 2.0, 3.0]), progress=False)
    with pytest.warns(ZooWarning, match=r"column 'x' holds 1e\+06, more than 100 times its training range"):
        assert torch.isfinite(encoder.embed(table.assign(x=[1e6, 1.0, 2.0, 3.0]), progress=False)).all()


def test_a_value_a_hundred_training_ranges_out_is_warned_about_once_per_column(encoder, table):
    """A mistaken unit (an age in days) gave an extreme but finite row without a word:
    tjepa-adult's row for an age of 1e5 had 1,700 times the norm of the same row at its age."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.embed(table.assign(x=[-200.0, 250.0, 2.0, 3.0]), progress=False)  # 80 and 99 ranges out: no warning
    far = table.assign(x=[300.0, 1.0, -300.0, 3.0])
    with pytest.warns(ZooWarning) as caught:
        encoder.embed(far, batch_size=1, progress=False)
        encoder.embed(far, progress=False)  # the same processor: said once
    assert [str(warning.message) for warning in caught if "training range" in str(warning.message)] == [
        "column 'x' holds 300, more than 100 times its training range [0.5, 3] away: the model never saw such a "
        "value and gives it an extreme row; check the column's units, or pass NaN to use the training mean"]


@pytest.mark.parametrize("moment", [pd.Timestamp("2020-01-01"), pd.Timedelta("1D")])
def test_dates_in_numeric_columns_are_refused(encoder, table, moment):
    """Were read as their nanosecond count without a word."""
    with pytest.raises(InputError, match="column 'y' is numeric in the fitted schema but holds (datetime|timedelta)"
                                         ".*convert it to a number first"):
        encoder.embed(table.assign(y=moment), progress=False)


def test_extra_columns_is_checked_whenever_set(encoder, table):
    """A typo set after construction used to drop unknown columns silently."""
    with pytest.raises(ConfigError, match=r"extra_columns='Error'; use one of \('error', 'ignore'\)"):
        encoder.processor.extra_columns = "Error"
    with pytest.raises(InputError, match=r"\['note'\] were not seen"):
        encoder.embed(table.assign(note="x"), progress=False)


def test_duplicated_columns_are_named(encoder, table):
    """Was "column 'x' is numeric in the fitted schema but holds 'x'"."""
    with pytest.raises(InputError, match=r"columns \['x'\] appear more than once in the table"):
        encoder.embed(pd.concat([table, table[["x"]]], axis=1), progress=False)


def test_checkpoint_without_its_schema_names_the_file(encoder, table, tmp_path):
    """A folder without preprocessor_config.json loaded with an empty schema; embedding said
    only "call TableProcessor.fit(table) first"."""
    encoder.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="has no preprocessor_config.json, which a zoo checkpoint saves"):
        load_folder(tmp_path)
    with pytest.raises(InputError, match="not fitted .* fit one with TableProcessor.fit\\(table\\)"):
        type(encoder)(encoder.config).embed(table, progress=False)


def test_the_processor_refuses_options_instead_of_ignoring_them(encoder, table):
    """`processor(table, sampling_rate=...)` dropped the option silently; other modalities refuse it."""
    with pytest.raises(InputError, match="table inputs take no options; got sampling_rate=: drop it"):
        encoder.processor(table, sampling_rate=16000)


@pytest.mark.parametrize("index, label", [(pd.Index(list("wxyz")), "'y'"), (pd.Index([7, 7, 8, 8]), "8"),
                                          (pd.MultiIndex.from_arrays([list("ppqq"), [0, 1, 0, 1]]), r"\('q', 0\)")])
def test_a_bad_value_in_a_frame_with_an_index_names_its_label(encoder, table, index, label):
    """Was "(row y)" and "(row ('q', 0))": an index label, named as a row number."""
    bad = table.astype({"x": object}).set_axis(index)
    bad.iloc[2, 0] = "many"
    with pytest.raises(InputError, match=f"column 'x' is numeric .* holds 'many' \\(index label {label}\\)"):
        encoder.embed(bad, progress=False)


@pytest.mark.parametrize("text", ["nan", "NaN", " NA ", "None", "null", "N/A", "?"])
def test_missing_value_text_in_a_numeric_column_reads_as_a_csv_reads_it(encoder, table, text):
    """pandas' read_csv reads this text as NaN, so a CSV's numeric column embedded as missing values
    there, while the same text in a DataFrame ("nan" is what `astype(str)` makes of NaN) was refused,
    or for "nan" and "NaN" raised a bare StopIteration."""
    missing = encoder.embed(table.assign(x=[0.5, None, 2.0, 3.0]), progress=False)
    as_text = encoder.embed(table.assign(x=["0.5", text, "2.0", "3.0"]), progress=False)
    assert torch.equal(as_text, missing)


@pytest.mark.parametrize("text", ["1_000", "+nan"])
def test_text_only_float_reads_is_named(encoder, table, text):
    """`float` reads this text but `pd.to_numeric` does not: the refusal looked for a value `float`
    could not read, found none, and raised StopIteration (RuntimeError out of `embed`'s generator)."""
    with pytest.raises(InputError, match=f"column 'x' is numeric in the fitted schema but holds '{re.escape(text)}' "
                                         r"\(row 1\)"):
        encoder.embed(table.assign(x=["0.5", text, "2.0", "3.0"]), progress=False)
