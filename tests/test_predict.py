"""`zoo predict MODEL INPUTS -o OUT`: a saved head's top-k labels (or a regressor's values) per
input, equal to its Python `predict`; table rows named FILE#ROW; features made by resumable
shards; models without a per-input head, and outputs of another kind, refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import EXAMPLES, shared_path

import zoo
from zoo.cli import main
from zoo.errors import ConfigError, InputError


def saved(head, folder):
    head.save_pretrained(folder)
    return folder


@pytest.fixture
def adult_tables(tmp_path):
    """30 and 20 of Adult's test rows, as a CSV without the target and a Parquet file with it."""
    from modalities.tabular.datasets import load_adult

    test = load_adult(shared_path("data", "adult")).test
    test.head(30).drop(columns=["target"]).to_csv(tmp_path / "a.csv", index=False)
    test.iloc[30:50].to_parquet(tmp_path / "b.parquet")
    return test.head(50).drop(columns=["target"]).reset_index(drop=True), tmp_path


def test_a_classifier_labels_each_table_row_as_its_predict_does(adult_tables, capsys):
    rows, folder = adult_tables
    torch.manual_seed(0)
    model = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    assert main(["predict", str(model), str(folder / "a.csv"), str(folder / "b.parquet"), "-o",
                 str(folder / "out.csv"), "--top-k", "2"]) == 0
    written = pd.read_csv(folder / "out.csv")
    assert list(written.columns) == ["input", "label", "probability", "label_2", "probability_2"]
    assert written["input"].tolist() == ([f"{folder / 'a.csv'}#{row}" for row in range(30)]
                                         + [f"{folder / 'b.parquet'}#{row}" for row in range(20)])
    expected = zoo.load(model).predict(rows, top_k=2)
    assert written[["label", "label_2"]].values.tolist() == [[first[0], second[0]] for first, second in expected]
    probabilities = written[["probability", "probability_2"]].to_numpy()
    assert np.abs(probabilities - [[first[1], second[1]] for first, second in expected]).max() < 1e-6
    assert not (folder / "out.csv.parts").exists()  # the features' shards go once the table is written


def test_audio_files_get_their_top_labels_as_json_lines(tmp_path):
    recordings = shared_path("data", "fsdd", "recordings")
    files = sorted(str(path) for path in recordings.glob("[0-2]_george_1*.wav"))[:6]
    torch.manual_seed(0)
    model = saved(zoo.for_classification(zoo.load("hubert-tiny-fsdd"), labels=["zero", "one", "two"], layer=1),
                  tmp_path / "clf")
    assert main(["predict", str(model), *files, "-o", str(tmp_path / "out.jsonl"), "--top-k", "3",
                 "--shard-size", "4"]) == 0
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = zoo.load(model).predict(files, top_k=3)
    assert [row["input"] for row in written] == files
    for row, labels in zip(written, expected):
        assert [row["label"], row["label_2"], row["label_3"]] == [name for name, _ in labels]
        assert abs(row["probability"] - labels[0][1]) < 1e-6
    assert main(["predict", str(model), *files, "-o", str(tmp_path / "out.csv"), "--shard-size", "4"]) == 0
    exact = pd.read_csv(tmp_path / "out.csv")["probability"].tolist()  # jsonl rounded them to 10 digits
    assert [row["probability"] for row in written] == exact


def test_a_tagger_scores_labels_independently_and_a_regressor_gives_its_values(adult_tables, tmp_path):
    rows, folder = adult_tables
    torch.manual_seed(0)
    tagger = saved(zoo.for_tagging(zoo.load("beats-tiny"), labels=["dog", "rain", "speech"]), tmp_path / "tagger")
    clips = sorted(str(path) for path in (EXAMPLES / "audio").glob("*.flac"))
    assert main(["predict", str(tagger), *clips, "-o", str(tmp_path / "tags.parquet"), "--top-k", "3"]) == 0
    written = pd.read_parquet(tmp_path / "tags.parquet")
    probabilities = torch.sigmoid(zoo.load(tagger).logits(clips))  # a sigmoid each: they need not sum to 1
    assert np.abs(np.sort(written[["probability", "probability_2", "probability_3"]].to_numpy(), axis=1)
                  - np.sort(probabilities.numpy(), axis=1)).max() < 1e-6

    regressor = saved(zoo.for_regression(zoo.load("tjepa-adult"), 2), tmp_path / "regressor")
    assert main(["predict", str(regressor), str(folder / "a.csv"), "-o", str(tmp_path / "values.csv")]) == 0
    written = pd.read_csv(tmp_path / "values.csv")
    assert list(written.columns) == ["input", "prediction_1", "prediction_2"]
    expected = zoo.load(regressor).predict(rows.head(30)).double().numpy()
    assert np.abs(written[["prediction_1", "prediction_2"]].to_numpy() - expected).max() < 1e-5
    with pytest.raises(ConfigError, match="top_k=2 asks for labels; this regressor predicts values"):
        zoo.load(regressor).predict(rows.head(3), top_k=2)  # was "table inputs take no options"


def test_an_interrupted_run_goes_on_from_its_shards_and_another_model_is_refused(adult_tables, capsys, monkeypatch):
    from modalities.tabular.encoder import TabularEncoder

    rows, folder = adult_tables
    broken = rows.iloc[:10].astype({"age": object})
    broken.loc[3, "age"] = "old"  # text in a numeric column: the second table fails
    broken.to_csv(folder / "c.csv", index=False)
    torch.manual_seed(0)
    model = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    command = ["predict", str(model), str(folder / "a.csv"), str(folder / "c.csv"), "-o", str(folder / "out.csv")]
    assert main(command) == 2
    assert "column 'age' is numeric in the fitted schema but holds 'old'" in capsys.readouterr().err
    assert (folder / "out.csv.parts" / "shard-00000.parquet.parts" / "shard-00000.npy").is_file()
    assert not (folder / "out.csv").exists()

    other = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["no", "yes"]), folder / "other")
    assert main([command[0], str(other), *command[2:]]) == 2
    assert "holds shards of an interrupted job with other encoder, weights" in capsys.readouterr().err

    rows.iloc[:10].to_csv(folder / "c.csv", index=False)  # mended: the rerun embeds the second table only
    embedded = []
    embed = TabularEncoder.embed
    monkeypatch.setattr(TabularEncoder, "embed", lambda self, frame, **kwargs: embedded.append(len(frame)) or embed(
        self, frame, **kwargs))
    assert main(command) == 0
    assert embedded == [10]
    written = pd.read_csv(folder / "out.csv")
    assert len(written) == 40 and written["input"].iloc[-1] == f"{folder / 'c.csv'}#9"
    expected = zoo.load(model).predict(pd.concat([rows.head(30), rows.head(10)]), top_k=1)
    assert written["label"].tolist() == [labels[0][0] for labels in expected]


def test_features_of_a_stopped_table_job_are_not_scored_by_another_model(adult_tables, capsys, monkeypatch):
    """Stopped after its features were written, a rerun with another model scored them (exit 0,
    wrong probabilities): the features' file was not named as a shard, so no job claimed it."""
    import zoo.predict_job

    rows, folder = adult_tables
    first = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    other = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"], layer=1), folder / "other")
    monkeypatch.setattr(zoo.predict_job, "write_predictions", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    command = ["predict", str(first), str(folder / "a.csv"), "-o", str(folder / "out.csv")]
    assert main(command) == 130
    monkeypatch.undo()
    assert main(["predict", str(other), *command[2:]]) == 2
    assert "holds shards of an interrupted job with other encoder, layer" in capsys.readouterr().err


def test_a_run_stopped_after_its_features_were_written_scores_them_without_embedding_again(adult_tables, capsys,
                                                                                           monkeypatch):
    """Stopped while scoring (or writing OUT), a rerun of the same command reuses the finished
    features file: it embedded all 30 rows again, which for a large set of files is the whole job."""
    import zoo.predict_job
    from modalities.tabular.encoder import TabularEncoder

    rows, folder = adult_tables
    model = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    monkeypatch.setattr(zoo.predict_job, "write_predictions", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    command = ["predict", str(model), str(folder / "a.csv"), "-o", str(folder / "out.csv")]
    assert main(command) == 130
    monkeypatch.undo()
    embedded = []
    embed = TabularEncoder.embed
    monkeypatch.setattr(TabularEncoder, "embed", lambda self, frame, **kwargs: embedded.append(len(frame)) or embed(
        self, frame, **kwargs))
    assert main(command) == 0
    assert embedded == [] and len(pd.read_csv(folder / "out.csv")) == 30


def test_a_header_only_table_among_others_gives_no_rows(adult_tables, capsys):
    """Was refused unnamed ("embed() got a table with no rows"), where the Python API embeds the
    others; one job over all the tables (not one a file) also names their rows."""
    rows, folder = adult_tables
    rows.head(0).to_csv(folder / "header.csv", index=False)
    tables = [str(folder / "a.csv"), str(folder / "header.csv"), str(folder / "a.csv")]
    assert main(["embed", "tjepa-adult", *tables, "-o", str(folder / "e.parquet")]) == 0
    assert f"wrote {folder / 'e.parquet'}: 3 tables, array (60, " in capsys.readouterr().err  # was "3 inputs"
    names = pd.read_parquet(folder / "e.parquet")["input"].tolist()
    assert names == [f"{tables[0]}#{row}" for row in range(30)] * 2
    model = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    assert main(["predict", str(model), *tables, "-o", str(folder / "out.csv")]) == 0
    assert pd.read_csv(folder / "out.csv")["input"].tolist() == names


def test_a_predict_job_stopped_before_its_first_shard_is_replaced(adult_tables, capsys):
    """A job killed before any shard leaves job.json files only (its own and its embedding job's,
    in a folder named shard-*): a rerun with other inputs was refused, as if shards were there."""
    rows, folder = adult_tables
    model = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    inner = folder / "out.csv.parts" / "shard-00000.npy.parts"
    inner.mkdir(parents=True)
    for record in (folder / "out.csv.parts" / "job.json", inner / "job.json"):
        record.write_text(json.dumps({"inputs": "another job's"}))
    assert main(["predict", str(model), str(folder / "a.csv"), "-o", str(folder / "out.csv")]) == 0
    assert len(pd.read_csv(folder / "out.csv")) == 30


def test_a_second_predict_job_on_the_same_output_is_refused_naming_it(adult_tables, capsys):
    """It named the shards folder inside OUT.parts/ ("another job is writing '.../out.csv.parts/
    shard-00000.npy' now"), and its claim on OUT.parts/ was made without the lock."""
    from filelock import FileLock

    rows, folder = adult_tables
    model = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), folder / "clf")
    output, parts = folder / "out.csv", folder / "out.csv.parts"
    parts.mkdir()
    with FileLock(str(parts / "job.lock")):  # the first job, predicting
        assert main(["predict", str(model), str(folder / "a.csv"), "-o", str(output)]) == 2
    assert f"another job is writing '{output}' now (it holds '{parts}')" in capsys.readouterr().err
    assert main(["predict", str(model), str(folder / "a.csv"), "-o", str(output)]) == 0
    assert len(pd.read_csv(output)) == 30 and not parts.exists()


@pytest.mark.parametrize("name, output, said", [
    ("tjepa-adult", "out.csv", "tjepa-adult is an encoder without a head, so it has nothing to predict"),
    ("tjepa-adult", "out.npy", "must end in one of ('.csv', '.parquet', '.jsonl')"),
])
def test_a_model_without_a_head_or_an_output_of_another_kind_is_refused(name, output, said, adult_tables, capsys):
    _, folder = adult_tables
    assert main(["predict", name, str(folder / "a.csv"), "-o", str(folder / output)]) == 2
    assert said in capsys.readouterr().err


def test_python_predict_on_an_encoder_without_a_head_names_the_fix(adult_tables):
    encoder = zoo.load("tjepa-adult")
    with pytest.raises(ConfigError, match=r"tjepa encoder has no head, so it has nothing to predict; put one on it "
                                          r"\(zoo.for_classification"):
        encoder.predict(adult_tables[0].head(2))


def test_a_token_classifier_and_a_top_k_of_zero_are_refused(adult_tables, tmp_path, capsys):
    _, folder = adult_tables
    nodes = saved(zoo.for_token_classification(zoo.load("graphmae-cora"), num_labels=7), tmp_path / "nodes")
    assert main(["predict", str(nodes), str(folder / "a.csv"), "-o", str(tmp_path / "out.csv")]) == 2
    assert "labels each token (for a graph, each node); `zoo predict` writes one row per input" in (
        capsys.readouterr().err)
    assert main(["predict", "tjepa-adult", str(folder / "a.csv"), "-o", str(tmp_path / "out.csv"),
                 "--top-k", "0"]) == 2
    assert "top_k=0; ask for at least one label" in capsys.readouterr().err
    with pytest.raises(InputError, match="must end in one of"):
        from zoo.predict_job import check_prediction_output

        check_prediction_output(tmp_path / "out.txt")


def probabilities_of(labels):
    return np.array([[probability for _, probability in item] for item in labels])


def test_a_node_classifier_predicts_each_node_of_a_named_dataset(tmp_path, capsys):
    from modalities.graphs.datasets import load_dataset

    planetoid = str(shared_path("data", "planetoid"))
    torch.manual_seed(0)
    model = saved(zoo.for_token_classification(zoo.load("graphmae-cora"), num_labels=7, layer="weighted"),
                  tmp_path / "nodes")
    assert main(["predict", str(model), "--dataset", "cora", "--data", planetoid, "-o", str(tmp_path / "out.csv"),
                 "--top-k", "2"]) == 0
    written = pd.read_csv(tmp_path / "out.csv", dtype={"label": str, "label_2": str})
    assert written["input"].tolist() == [f"node#{index}" for index in range(2708)]
    expected = zoo.load(model).predict(load_dataset("cora", planetoid), top_k=2)  # its layers mixed, (N, K, D)
    assert written[["label", "label_2"]].values.tolist() == [[first[0], second[0]] for first, second in expected]
    assert np.abs(written[["probability", "probability_2"]].to_numpy() - probabilities_of(expected)).max() < 1e-6


def test_a_graph_classifier_predicts_each_graph_and_a_table_classifier_each_row(tmp_path):
    from modalities.graphs.datasets import load_dataset
    from modalities.tabular.datasets import load_adult

    tu = str(shared_path("data", "tu"))
    torch.manual_seed(0)
    graphs = saved(zoo.for_classification(zoo.load("graphmae-mutag"), num_labels=2, pool="max"), tmp_path / "g")
    assert main(["predict", str(graphs), "--dataset", "mutag", "--data", tu, "-o", str(tmp_path / "g.jsonl")]) == 0
    written = pd.read_json(tmp_path / "g.jsonl", lines=True, dtype={"label": str})
    assert written["input"].tolist() == [f"graph#{index}" for index in range(188)]
    expected = zoo.load(graphs).predict(load_dataset("mutag", tu), top_k=1)
    assert written["label"].tolist() == [labels[0][0] for labels in expected]
    assert np.abs(written["probability"].to_numpy() - probabilities_of(expected)[:, 0]).max() < 1e-6

    adult = shared_path("data", "adult")
    rows = saved(zoo.for_classification(zoo.load("tjepa-adult"), labels=["<=50K", ">50K"]), tmp_path / "rows")
    assert main(["predict", str(rows), "--dataset", "adult", "--data", str(adult), "-o",
                 str(tmp_path / "rows.parquet")]) == 0
    written = pd.read_parquet(tmp_path / "rows.parquet")
    splits = load_adult(adult)
    assert len(written) == len(splits.train) + len(splits.test)
    tail = written.tail(50)
    assert tail["input"].tolist() == [f"test#{index}" for index in range(len(splits.test) - 50, len(splits.test))]
    expected = zoo.load(rows).predict(splits.test.tail(50).drop(columns=["target"]), top_k=1)
    assert tail["label"].tolist() == [labels[0][0] for labels in expected]
    assert np.abs(tail["probability"].to_numpy() - probabilities_of(expected)[:, 0]).max() < 1e-6


def test_a_dataset_is_refused_beside_inputs_and_for_a_model_of_files(adult_tables, tmp_path, capsys):
    _, folder = adult_tables
    torch.manual_seed(0)
    rows = saved(zoo.for_classification(zoo.load("tjepa-adult"), num_labels=2), tmp_path / "rows")
    assert main(["predict", str(rows), str(folder / "a.csv"), "--dataset", "adult", "-o",
                 str(tmp_path / "out.csv")]) == 2
    assert "pass INPUTS or --dataset, not both (got 1 input(s) and --dataset adult)" in capsys.readouterr().err
    assert main(["predict", str(rows), "-o", str(tmp_path / "out.csv")]) == 2
    assert "pass INPUTS (files or folders) or --dataset NAME" in capsys.readouterr().err
    audio = saved(zoo.for_classification(zoo.load("hubert-tiny-fsdd"), num_labels=2), tmp_path / "audio")
    assert main(["predict", str(audio), "--dataset", "cora", "-o", str(tmp_path / "out.csv")]) == 2
    assert "graph and table datasets; speech encoders read files: pass them as INPUTS" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", ["embed", "predict"])
def test_the_options_of_inputs_and_of_a_dataset_are_refused_with_the_other(adult_tables, tmp_path, capsys, command):
    """Were taken and ignored: --shard-size and --sampling-rate with --dataset (a rerun would not
    resume from shards it promised), and --data DIR beside INPUTS (meant for --dataset)."""
    _, folder = adult_tables
    name = "tjepa-adult"
    if command == "predict":
        torch.manual_seed(0)
        name = str(saved(zoo.for_classification(zoo.load("tjepa-adult"), num_labels=2), tmp_path / "rows"))
    out = str(tmp_path / f"out.{'csv' if command == 'predict' else 'npy'}")
    for options, said in ((["--shard-size", "10"], "--shard-size go with INPUTS: --dataset adult is read and "
                                                   "written in one pass, in no shards, and holds no audio"),
                          (["--sampling-rate", "8000", "--shard-size", "5"], "--shard-size and --sampling-rate go "
                                                                             "with INPUTS")):
        assert main([command, name, "--dataset", "adult", "-o", out, *options]) == 2
        assert said in capsys.readouterr().err
    assert main([command, name, str(folder / "a.csv"), "--data", "/nowhere", "-o", out]) == 2
    assert ("--data /nowhere is the folder --dataset NAME is read from; INPUTS are read from their own paths: drop "
            "--data, or pass --dataset instead of INPUTS") in capsys.readouterr().err
    assert not Path(out).exists()


def test_a_job_without_a_batch_size_uses_the_encoders_own(adult_tables, monkeypatch):
    from modalities.tabular.encoder import TabularEncoder

    _, folder = adult_tables
    sizes = []
    embed = TabularEncoder.embed

    def recorded(self, *args, **kwargs):
        sizes.append(kwargs["batch_size"])
        return embed(self, *args, **kwargs)

    monkeypatch.setattr(TabularEncoder, "embed", recorded)
    assert main(["embed", "tjepa-adult", str(folder / "a.csv"), "-o", str(folder / "a.npy")]) == 0
    assert main(["embed", "tjepa-adult", str(folder / "a.csv"), "-o", str(folder / "b.npy"), "--batch-size", "4"]) == 0
    assert sizes == [1024, 4]
