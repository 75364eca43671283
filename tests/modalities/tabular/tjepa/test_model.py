"""The T-JEPA encoder through the shared API: shapes, batch invariance, layers, save/load, errors."""

import pandas as pd
import pytest
import torch
import zoo

from modalities.tabular.processing import TableProcessor
from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder, with_output_scale
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.hub import load_folder

TINY = dict(hidden_dim=16, num_layers=2, num_heads=2, dim_feedforward=32, num_reg_tokens=2)


@pytest.fixture
def table():
    return pd.DataFrame({
        "x": [0.5, 1.5, 2.0, 3.0, -1.0, 4.0],
        "colour": ["red", "blue", "red", "green", None, "blue"],
        "y": [1, 2, 3, 4, 5, 6],
        "label": [0, 1, 0, 1, 1, 0],
    })


@pytest.fixture
def encoder(table):
    torch.manual_seed(0)
    processor = TableProcessor.fit(table, target="label")
    return TJEPAEncoder(TJEPAConfig.for_table(processor, **TINY), processor).eval()


def test_tokens_are_reg_tokens_then_numeric_then_categorical(encoder, table):
    output = encoder(**encoder.preprocess(table), output_hidden_states=True)
    assert encoder.processor.token_names == ["x", "y", "colour"]
    assert output.last_hidden_state.shape == (6, 2 + 3, 16)
    assert output.mask.all()
    assert len(output.hidden_states) == 3 and output.hidden_states[-1] is output.last_hidden_state
    assert torch.allclose(output.pooled, output.last_hidden_state.mean(1))


def test_reg_tokens_do_not_depend_on_the_row_before_attention(encoder, table):
    tokens = encoder.embed_tokens(**encoder.preprocess(table))
    assert torch.equal(tokens[0, :2], tokens[3, :2])
    assert not torch.equal(tokens[0, 2:], tokens[3, 2:])


def test_a_row_embeds_the_same_alone_or_in_any_batch(encoder, table):
    together = encoder.embed(table, progress=False)
    alone = torch.cat([encoder.embed(table.iloc[[i]], progress=False) for i in range(len(table))])
    rows = torch.cat([encoder.embed(table.iloc[i], progress=False) for i in range(len(table))])  # Series
    assert torch.equal(rows, alone)
    small_batches = encoder.embed(table, batch_size=4, chunk_rows=5, progress=False)
    assert (together - alone).abs().max() < 1e-5
    assert (together - small_batches).abs().max() < 1e-5


def test_pools_and_layers(encoder, table):
    assert encoder.embed(table, pool="none", progress=False).shape == (6, 5, 16)
    assert encoder.embed(table, layer="all", progress=False).shape == (6, 3, 16)
    cls = encoder.embed(table, pool="cls", progress=False)
    tokens = encoder.embed(table, pool="none", progress=False)
    assert torch.equal(cls, tokens[:, 0])
    chunks = list(encoder.iter_embed(table, chunk_rows=4, progress=False))
    assert [len(chunk) for chunk in chunks] == [4, 2]
    no_tokens = TJEPAEncoder(TJEPAConfig.for_table(encoder.processor, **{**TINY, "num_reg_tokens": 0}),
                             encoder.processor)
    with pytest.raises(ConfigError, match="TJEPAEncoder has no cls token"):  # the first token is a feature
        no_tokens.embed(table, pool="cls", progress=False)


def test_inputs_of_every_table_kind_agree(encoder, table, tmp_path):
    import datasets
    import pyarrow as pa

    path = tmp_path / "rows.csv"
    table.to_csv(path, index=False)
    reference = encoder.embed(table, progress=False)
    dataset = datasets.Dataset.from_pandas(table, preserve_index=False)  # was "cannot read a table from Dataset"
    for source in (pa.Table.from_pandas(table), str(path), table.to_dict(orient="list"),
                   table.to_dict(orient="records"), dataset):
        assert (encoder.embed(source, progress=False) - reference).abs().max() < 1e-5
    streamed = encoder.embed(dataset, chunk_rows=4, progress=False)  # two chunks of the Dataset's Arrow data
    assert torch.equal(streamed, encoder.embed(table, chunk_rows=4, progress=False))


def test_a_numpy_structured_array_is_a_table(encoder, table):
    """Was refused ("cannot read a table from recarray"); its fields are the columns."""
    import numpy as np

    from modalities.tabular.encoder import table_rows

    reference = encoder.embed(table, progress=False)
    records = table.to_records(index=False)
    for source in (records, np.asarray(records)):
        assert (encoder.embed(source, progress=False) - reference).abs().max() < 1e-6
    assert table_rows(records) == 6  # the progress bar's total
    present = table.dropna()  # a bytes category is read as its text, not as an unknown one
    as_bytes = present.to_records(index=False).astype([("colour", "S5") if name == "colour" else
                                                       (name, records.dtype[name]) for name in table.columns])
    assert (encoder.embed(as_bytes, progress=False) - encoder.embed(present, progress=False)).abs().max() < 1e-6
    assert torch.equal(encoder.embed(records[2], progress=False), encoder.embed(table.iloc[[2]], progress=False))
    with pytest.raises(InputError, match=r"numpy array of shape \(6, 3\) \(float64\) has no column names.*"
                                         r"pd.DataFrame\(array, columns="):
        encoder.embed(np.zeros((6, 3)), progress=False)


def test_save_and_reload_gives_the_same_embeddings(encoder, table, tmp_path):
    encoder.save_pretrained(tmp_path / "enc")
    reloaded = load_folder(tmp_path / "enc")
    assert reloaded.processor == encoder.processor
    assert torch.equal(reloaded.embed(table, progress=False), encoder.embed(table, progress=False))


def test_output_scale_standardises_the_last_tokens_and_round_trips(encoder, table, tmp_path, capsys):
    scaled = with_output_scale(encoder, table, chunk_rows=4)  # two chunks: the statistics are streamed
    raw = encoder(**encoder.processor.transform(table), output_hidden_states=True)
    out = scaled(**scaled.processor.transform(table), output_hidden_states=True)
    assert scaled.config.standardize_output and not encoder.config.standardize_output
    last = raw.last_hidden_state.double()
    expected = (last - last.mean(dim=0)) / last.std(dim=0)
    # measured 1.8e-4: some channels spread only 6e-4 around their mean, so float32 rounding of x - mean is scaled up
    assert (out.last_hidden_state - expected).abs().max() < 5e-4
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert torch.equal(out.hidden_states[1], raw.hidden_states[1])  # only the last layer is scaled
    assert torch.allclose(out.pooled, out.last_hidden_state.mean(dim=1))
    scaled.save_pretrained(tmp_path / "scaled")
    reloaded = load_folder(tmp_path / "scaled")
    assert torch.equal(reloaded.embed(table, progress=False), scaled.embed(table, progress=False))
    with pytest.raises(InputError, match="at least 2 rows"):
        with_output_scale(encoder, table.iloc[:1])
    with pytest.raises(InputError, match="the table's 40 rows all give the same tokens"):  # scaled others by 1e12
        with_output_scale(encoder, pd.concat([table.iloc[:1]] * 40))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(scaled.embed(table, progress=False), reloaded.embed(table, progress=False))
    before = {name: value.clone() for name, value in scaled.state_dict().items()}
    for cast in (lambda m: m.to(torch.bfloat16), lambda m: m.half(), lambda m: m.type(torch.float16)):
        with pytest.raises(ConfigError, match="cannot run with torch.(b)?float16 weights: its standardised output "):
            cast(scaled)  # was taken, refused at first use with rounded weights, and saved so without a word
    assert all(torch.equal(value, before[name]) for name, value in scaled.state_dict().items())
    scaled.to(torch.float64).float()
    assert torch.equal(scaled.embed(table, progress=False), reloaded.embed(table, progress=False))
    with pytest.raises(ConfigError, match="cannot run with torch.float16 weights"):  # was taken, refused at first use
        zoo.load(tmp_path / "scaled", dtype="float16")
    finer = zoo.load(tmp_path / "scaled", dtype=torch.float64).embed(table, progress=False)  # was refused too
    assert (finer - reloaded.embed(table, progress=False)).abs().max() < 1e-3  # measured 1.2e-4
    table.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["embed", str(tmp_path / "scaled"), str(tmp_path / "rows.csv"), "-o", str(tmp_path / "e.npy"),
                 "--dtype", "bfloat16"]) == 2  # was told to leave out dtype=, the Python spelling
    assert "load it in float32: leave out dtype= (zoo load) or --dtype (the zoo commands)" in capsys.readouterr().err


def test_a_folder_saved_in_half_precision_is_refused_as_rounded(encoder, table, tmp_path):
    """A zoo that let `.half()` through saved a standardised T-JEPA in float16, and it reloaded in
    float32 without a word, its rows far off; such a folder is now named, with the fix."""
    from safetensors.torch import load_file, save_file

    scaled = with_output_scale(encoder, table)
    scaled.save_pretrained(tmp_path / "half")
    weights = tmp_path / "half" / "model.safetensors"
    save_file({key: value.half() if value.is_floating_point() else value
               for key, value in load_file(str(weights)).items()}, str(weights))
    with pytest.raises(CheckpointError, match=r"half holds its weights in torch.float16, which they cannot be used "
                                              r"in: they were rounded when saved \(this T-JEPA encoder cannot run"):
        zoo.load(tmp_path / "half")
    encoder.save_pretrained(tmp_path / "plain")  # no standardised output: half precision is its to take
    weights = tmp_path / "plain" / "model.safetensors"
    save_file({key: value.half() if value.is_floating_point() else value
               for key, value in load_file(str(weights)).items()}, str(weights))
    assert zoo.load(tmp_path / "plain").embed(table, progress=False).shape[0] == len(table)


def test_errors(encoder, table):
    with pytest.raises(InputError, match="no rows"):
        encoder.embed(table.iloc[:0], progress=False)
    with pytest.raises(ConfigError, match="batch_size=0; use a positive number"):
        encoder.embed(table, batch_size=0, progress=False)
    with pytest.raises(InputError, match=r"\['colour'\] are missing"):
        encoder.embed(table.drop(columns="colour"), progress=False)
    with pytest.raises(InputError, match="NaN or infinite values \\(row 1, numeric column 'y'\\)"):  # named none
        encoder(numeric=torch.tensor([[0.0, 0.0], [0.0, float("inf")]]), categorical=torch.tensor([[1], [1]]))
    with pytest.raises(InputError, match="category index"):
        encoder(numeric=torch.zeros(1, 2), categorical=torch.tensor([[9]]))
    batch = encoder.preprocess(table.iloc[:3])  # these failed inside torch: IndexError, size mismatch, F.embedding
    for numeric, categorical, message in [
            (batch["numeric"][0], batch["categorical"][0], r"numeric \(2,\) and categorical \(1,\) must be \(rows"),
            (batch["numeric"][:2], batch["categorical"], r"numeric \(2, 2\) and categorical \(3, 1\) .* same rows"),
            (batch["numeric"], batch["categorical"].float(), "categorical has dtype torch.float32; it holds category")]:
        with pytest.raises(InputError, match=message):
            encoder(numeric=numeric, categorical=categorical)
    with torch.no_grad():  # other number types are taken, as the other families take them (was a dtype error)
        assert torch.equal(encoder(numeric=batch["numeric"].double(), categorical=batch["categorical"].int()).pooled,
                           encoder(**batch).pooled)
    other = TableProcessor.fit(table.drop(columns="y"), target="label")
    with pytest.raises(ConfigError, match="fit the processor"):
        TJEPAEncoder(encoder.config, other)
    with pytest.raises(ConfigError, match="divisible"):
        TJEPAConfig(num_numeric=1, hidden_dim=10, num_heads=3)


def test_zoo_embed_writes_one_row_per_table_row_and_resumes(encoder, table, tmp_path):
    import numpy as np

    from zoo.cli import main

    encoder.save_pretrained(tmp_path / "enc")
    paths = []
    for part, rows in enumerate((table.iloc[:4], table.iloc[4:])):
        paths.append(tmp_path / f"part{part}.csv")
        rows.to_csv(paths[-1], index=False)
    out = tmp_path / "emb.npy"
    assert main(["embed", str(tmp_path / "enc"), *map(str, paths), "-o", str(out), "--shard-size", "3"]) == 0
    expected = encoder.embed(table, progress=False).numpy()
    assert np.allclose(np.load(out), expected, atol=1e-5)
    named = tmp_path / "emb.parquet"
    assert main(["embed", str(tmp_path / "enc"), *map(str, paths), "-o", str(named), "--shard-size", "3"]) == 0
    frame = pd.read_parquet(named)  # rows were named 0-5 across both files; `zoo predict` names them FILE#ROW
    assert list(frame["input"]) == [f"{paths[0]}#{row}" for row in range(4)] + [f"{paths[1]}#{row}" for row in range(2)]
    assert np.allclose(np.stack(frame["embedding"]), expected, atol=1e-5)
    assert main(["embed", str(tmp_path / "enc"), str(paths[0]), "-o", str(tmp_path / "t.npy"), "--pool", "none"]) == 0
    assert np.load(tmp_path / "t.npy").shape == (4, 5, 16)
    table.assign(row_id=range(len(table))).to_csv(tmp_path / "with_id.csv", index=False)
    with_id = ["embed", str(tmp_path / "enc"), str(tmp_path / "with_id.csv"), "-o", str(tmp_path / "i.npy")]
    assert main(with_id) == 2 and not (tmp_path / "i.npy").exists()
    assert main([*with_id, "--ignore-extra-columns"]) == 0
    assert np.allclose(np.load(tmp_path / "i.npy"), expected, atol=1e-5)


def test_fine_tuning_heads_take_tables(encoder, table, tmp_path):
    import zoo

    classifier = zoo.for_classification(encoder, num_labels=2)
    output = classifier(**classifier.processor(table), labels=torch.tensor(table["label"].to_numpy()))
    assert output.logits.shape == (6, 2) and output.loss.requires_grad
    classifier.save_pretrained(tmp_path / "clf")
    reloaded = zoo.load(tmp_path / "clf")
    assert torch.allclose(reloaded(**reloaded.processor(table)).logits, classifier.eval()(
        **classifier.processor(table)).logits, atol=1e-6)
    examples = [{"input": row, "label": 1} for row in table.drop(columns="label").to_dict(orient="records")]
    assert classifier.collate(examples)["numeric"].shape == (6, 2)


def test_zoo_embed_fits_a_random_init_output_scale_on_the_rows_it_embeds(encoder, table, tmp_path, capsys):
    """Was the identity scale: a random init's rows were nearly one vector (per-channel std 0.005
    for tjepa-adult's architecture on 300 Adult rows, against 0.31 once fitted)."""
    import numpy as np

    scaled = with_output_scale(encoder, table)
    scaled.save_pretrained(tmp_path / "scaled")
    table.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "random.npy"
    assert main(["embed", str(tmp_path / "scaled"), str(tmp_path / "rows.csv"), "-o", str(out),
                 "--random-init", "3"]) == 0
    assert "fitting the random init's output scale on the input rows" in capsys.readouterr().err
    torch.manual_seed(3)
    random = load_folder(tmp_path / "scaled", pretrained=False)
    unfitted = random.embed(table, progress=False)
    fitted = with_output_scale(random, table).embed(table, progress=False)
    assert np.abs(np.load(out) - fitted.numpy()).max() < 1e-5
    assert fitted.std(dim=0).mean() > 10 * unfitted.std(dim=0).mean()
