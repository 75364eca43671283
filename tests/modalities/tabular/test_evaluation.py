"""The downstream protocols: regression (RMSE) on scikit-learn's diabetes set, through the CLI;
`zoo embed --dataset` on a named table."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import shared_path

import zoo
from modalities.tabular.datasets import load_dataset
from zoo.cli import main
from zoo.errors import InputError

TINY = ["--set", "hidden_dim=16", "--set", "num_layers=1", "--set", "dim_feedforward=16", "--set", "batch_size=64",
        "--set", 'predictor={"width": 8, "depth": 1, "heads": 2, "feedforward": 16, "dropout": 0.0}']


def test_regression_targets_pretrain_and_probe_with_rmse(tmp_path, capsys):
    out = tmp_path / "diabetes"
    assert main(["pretrain", "tjepa", "--dataset", "diabetes", "--recipe", "adult", "-o", str(out), "--epochs", "3",
                 "--no-progress", *TINY]) == 0
    capsys.readouterr()
    assert main(["probe", str(out / "encoder"), "--dataset", "diabetes", "--seeds", "0", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "rmse" and result["protocol"] == "mlp" and len(result["scores"]) == 2
    test_target = load_dataset("diabetes").test["target"].to_numpy()
    predict_the_mean = float(np.sqrt(np.mean((test_target - test_target.mean()) ** 2)))
    assert result["mean"] < 0.9 * predict_the_mean  # the MLP on T-JEPA tokens explains part of the target
    for protocol in ("resnet", "resnet-raw"):
        assert main(["probe", str(out / "encoder"), "--dataset", "diabetes", "--protocol", protocol]) == 0
        resnet = json.loads(capsys.readouterr().out)
        assert resnet["protocol"] == protocol and resnet["mean"] < 0.9 * predict_the_mean, resnet
    assert main(["probe", str(out / "encoder"), "--dataset", "diabetes", "--protocol", "xgboost"]) == 0
    assert json.loads(capsys.readouterr().out)["mean"] < predict_the_mean
    assert main(["probe", str(out / "encoder"), "--dataset", "diabetes", "--protocol", "svm"]) == 2


def test_unknown_table_dataset():
    """An InputError, as an unknown graph dataset is (it was an UnknownModelError, the class of model names)."""
    with pytest.raises(InputError, match="unknown tabular dataset 'iris'"):
        load_dataset("iris")


def test_zoo_embed_writes_a_named_tables_train_then_test_rows(tmp_path):
    """`zoo embed tjepa-adult --dataset adult`: one row per table row, training rows first, the
    target left out, as `embed` gives them."""
    adult = shared_path("data", "adult")
    assert main(["embed", "tjepa-adult", "--dataset", "adult", "--data", str(adult),
                 "-o", str(tmp_path / "adult.parquet")]) == 0
    table = pq.read_table(tmp_path / "adult.parquet").to_pydict()
    splits = load_dataset("adult", adult)
    assert len(table["input"]) == len(splits.train) + len(splits.test) == 48842
    assert table["input"][0] == "train#0" and table["input"][len(splits.train)] == "test#0"
    expected = zoo.load("tjepa-adult").embed(splits.test.drop(columns=["target"]).head(50), progress=False)
    assert np.array_equal(np.stack(table["embedding"][len(splits.train):len(splits.train) + 50]), expected.numpy())


def test_a_table_of_three_classes_is_probed_by_every_protocol(tmp_path):
    """A multiclass target reached the networks' cross-entropy as float class codes and crashed
    every protocol but XGBoost's."""
    import pandas as pd

    from modalities.tabular.datasets import load_adult
    from modalities.tabular.evaluation import probe_table

    rows = load_adult(shared_path("data", "adult")).train.sample(300, random_state=1).reset_index(drop=True)
    table = rows[["hours_per_week", "education_num", "race", "sex"]].assign(
        age=pd.qcut(rows["age"], 3, labels=["young", "middle", "old"]).astype(str))
    table.to_csv(tmp_path / "ages.csv", index=False)
    for protocol in ("mlp-raw", "resnet-raw"):
        report = probe_table(None, str(tmp_path / "ages.csv"), "age", protocol=protocol)
        assert report["task"] == "multiclass" and 1 / 3 < report["mean"] <= 1, (protocol, report)


def test_raw_baselines_read_the_columns_the_encoder_reads():
    """The baselines' schema was fitted on every column but the target: an id and a date the
    encoder was pretrained without (--ignore) became 14 of the 19 raw features here, one-hot
    categories of every row's value (and a date column is now refused at fit time)."""
    import pandas as pd
    import torch

    from modalities.tabular.datasets import TableSplits
    from modalities.tabular.evaluation import protocol_inputs
    from modalities.tabular.processing import TableProcessor

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "colour": list("rgbrgb"),
                          "id": [f"row{i}" for i in range(6)], "when": pd.date_range("2024-01-01", periods=6),
                          "label": [0, 1, 0, 1, 0, 1]})
    splits = TableSplits("mine", frame, frame.iloc[:2], "label", "binary")
    processor = TableProcessor.fit(frame, target="label", ignore=["id", "when"])
    encoder = type("Encoder", (), {"processor": processor})()
    train, test = protocol_inputs("mlp-raw", splits, encoder)
    assert train.shape == (6, 1 + 4) and test.shape == (2, 1 + 4)  # x, then colour's 3 categories + unknown
    expected = torch.cat([processor.transform(frame)["numeric"],
                          torch.nn.functional.one_hot(processor.transform(frame)["categorical"][:, 0], 4).float()], 1)
    assert torch.equal(train, expected)
    leaky = splits.train.assign(leak=splits.train["label"] * 2.0)  # the encoder's own protocols refuse it
    with pytest.warns(UserWarning, match=r"the raw baselines leave out columns \['leak'\], which the encoder never"):
        train, _ = protocol_inputs("mlp-raw", TableSplits("mine", leaky, leaky.iloc[:2], "label", "binary"), encoder)
    assert torch.equal(train, expected)  # was read as a feature: a column leaking the target scored 1.0
