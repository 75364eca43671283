"""`zoo finetune NAME --dataset adult`: a row classifier trained on the set's training rows and
scored on its test rows; a set with a numeric target is refused."""

from __future__ import annotations

import json

import numpy as np
from helpers import shared_path

import zoo
from modalities.tabular.datasets import load_adult
from zoo.cli import main


def test_a_table_encoder_fine_tunes_on_a_named_table(tmp_path, capsys):
    adult = shared_path("data", "adult")
    assert main(["finetune", "tjepa-adult", "--dataset", "adult", "--data", str(adult), "--mode", "linear",
                 "--lr", "1e-2", "--epochs", "2", "--batch-size", "256", "-o", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train_items"], report["test_items"], report["classes"]) == (32561, 16281, 2)
    assert report["steps"] == 2 * (32561 // 256)
    assert report["loss_last_epoch"] < report["loss_first_epoch"], report

    classifier = zoo.load(tmp_path / "run" / "classifier")
    assert classifier.labels == ["<=50K", ">50K"]
    test = load_adult(adult).test
    predicted = classifier.logits(test.drop(columns=["target"]), batch_size=1024).argmax(-1).numpy()
    assert report["test_accuracy"] == float((predicted == (test["target"] == ">50K").to_numpy()).mean())
    assert report["test_accuracy"] > 0.8  # 84.1 here; always saying "<=50K" gives 76.4
    assert "on 16,281 held-out rows; trained on 32,561 rows of 2 classes" in (
        tmp_path / "run" / "classifier" / "README.md").read_text()


def test_a_numeric_target_is_refused(tmp_path, capsys):
    assert main(["finetune", "tjepa-adult", "--dataset", "diabetes", "-o", str(tmp_path / "run")]) == 2
    assert "'diabetes' has a numeric target and `zoo finetune` trains classifiers" in capsys.readouterr().err
    assert main(["finetune", "tjepa-adult", "--dataset", "adult", "--fold", "1", "-o", str(tmp_path / "run")]) == 2
    assert "--fold 1 is for sets of graphs; adult has its own test split" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_training_rows_come_first_without_their_target():
    from modalities.tabular.datasets import finetune_data

    rows = finetune_data("adult", shared_path("data", "adult"))
    assert len(rows) == 32561 + 16281
    assert [test for _, _, test in rows[32560:32562]] == [False, True]
    features, label, _ = rows[0]
    assert "target" not in features and label in ("<=50K", ">50K") and len(features) == 14
    assert np.isin([label for _, label, _ in rows], ["<=50K", ">50K"]).all()
