"""`zoo finetune --validation [SHARE] [--patience N]`: a validation split scored after every epoch
picks the weights saved (a held-out, class-stratified share of the training items, or a node
dataset's own validation nodes); patience ends the run early; an interrupted run resumes to
what an uninterrupted one keeps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import shared_path
from safetensors.torch import load_file

import zoo
from zoo.cli import main
from zoo.finetune_data import hold_out_validation


def finetune(capsys, *args: str) -> dict:
    assert main(["finetune", *args, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def logged(run, key: str) -> list[float]:
    return [record[key] for record in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if key in record]


def test_the_saved_graph_classifier_is_the_best_epoch_on_a_stratified_held_out_share(tmp_path, capsys):
    from modalities.graphs.datasets import finetune_data

    tu = shared_path("data", "tu")
    report = finetune(capsys, "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--mode", "full",
                      "--epochs", "6", "--batch-size", "16", "--validation", "0.2", "-o", str(tmp_path / "run"))
    rows = finetune_data("mutag", tu, fold=0)
    training = [label for _, label, test in rows if not test]
    kept, held = hold_out_validation(rows, 0.2, 0, "graphs")
    validation = report["validation"]
    assert validation["items"] == len(held) == math.ceil(0.2 * len(training)) == 34
    assert report["train_items"] == len(training) - 34 and len(kept) == len(rows) - 34
    for label in set(training):  # by class: each class's share of the held-out graphs is its share of training
        assert abs(sum(held_label == label for _, held_label in held) - 34 * training.count(label) / len(training)) < 1

    scores = logged(tmp_path / "run", "val_accuracy")
    assert len(scores) == 6 == validation["epochs_run"]  # one score an epoch
    assert validation["best_accuracy"] == max(scores) and validation["best_epoch"] == 1 + scores.index(max(scores))
    classifier = zoo.load(tmp_path / "run" / "classifier")
    predicted = classifier.logits([graph for graph, _ in held]).argmax(-1).numpy()
    names = classifier.labels
    assert float((predicted == np.array([names.index(label) for _, label in held])).mean()) == max(scores)
    card = (tmp_path / "run" / "classifier" / "README.md").read_text()
    assert (f"The weights are those of epoch {validation['best_epoch']} of 6: the best validation accuracy, "
            f"{100 * max(scores):.1f} % on 34 graphs held out of the training ones.") in card


def test_the_validation_share_is_drawn_by_the_runs_seed():
    """`--validation 0.2 --seed S` holds out 4 of 20 training items, 2 a class, drawn by S: runs over
    seeds 0 and 1 held out the same 4 when the draw ignored the seed, so their spread never varied it."""
    rows = [(f"{label}{index}.wav", label, False) for label in "ab" for index in range(10)] + [("t.wav", "a", True)]
    _, first = hold_out_validation(rows, 0.2, 0, "files")
    _, again = hold_out_validation(rows, 0.2, 0, "files")
    _, other = hold_out_validation(rows, 0.2, 1, "files")
    assert sorted(label for _, label in other) == ["a", "a", "b", "b"]
    assert first == again and set(first) != set(other)


def test_patience_ends_a_node_run_early_and_an_interrupted_run_keeps_the_same_epoch(tmp_path, capsys):
    planetoid = shared_path("data", "planetoid")
    command = ["graphmae-cora", "--dataset", "cora", "--data", str(planetoid), "--mode", "linear", "--epochs", "300",
               "--validation", "--patience", "5"]
    whole = finetune(capsys, *command, "-o", str(tmp_path / "whole"))
    validation = whole["validation"]
    assert validation["items"] == 500 and validation["nodes"]  # Cora's own validation nodes
    assert validation["stopped_early"] and validation["epochs_run"] - validation["best_epoch"] == 5
    assert whole["steps_run"] == validation["epochs_run"] < 300
    assert len(logged(tmp_path / "whole", "val_accuracy")) == whole["steps_run"]
    card = (tmp_path / "whole" / "classifier" / "README.md").read_text()
    assert (f"epoch {validation['best_epoch']} of {whole['steps_run']} run (of 300; stopped after 5 epochs without "
            "a better score)") in card and "on the dataset's 500 validation nodes" in card
    assert f"for {whole['steps_run']} of 300 steps (--patience stopped it early)" in card  # was: its time limit
    assert "time limit" not in card

    assert finetune(capsys, *command, "-o", str(tmp_path / "run"), "--time-limit", "0") == {"steps_done": 1,
                                                                                             "steps": 300}
    resumed = finetune(capsys, *command, "-o", str(tmp_path / "run"))
    assert resumed["validation"] == validation and resumed["test_accuracy"] == whole["test_accuracy"]
    assert torch.equal(load_file(tmp_path / "run" / "classifier" / "model.safetensors")["head.weight"],
                       load_file(tmp_path / "whole" / "classifier" / "model.safetensors")["head.weight"])
    assert main(["finetune", *command, "-o", str(tmp_path / "run"), "--no-progress"]) == 0
    out, err = capsys.readouterr()  # ended early: a rerun trains nothing more, and says so (it said "going on")
    again = json.loads(out)
    assert f"at step {whole['steps_run']} of 300 (nothing left to train)" in err
    assert again["steps_run"] == whole["steps_run"] and again["validation"] == validation
    assert len(logged(tmp_path / "run", "val_accuracy")) == whole["steps_run"]


def test_a_regressor_is_picked_by_its_validation_rmse_in_the_targets_units(tmp_path, capsys):
    from modalities.tabular.datasets import finetune_data

    assert main(["pretrain", "tjepa", "--dataset", "diabetes", "--recipe", "adult", "--epochs", "2",
                 "-o", str(tmp_path / "encoder"), "--no-progress"]) == 0
    report = finetune(capsys, str(tmp_path / "encoder"), "--dataset", "diabetes", "--mode", "linear", "--lr", "1e-2",
                      "--epochs", "8", "--validation", "-o", str(tmp_path / "run"))
    _, held = hold_out_validation(finetune_data("diabetes", None), 0.1, 0, "rows")
    assert report["validation"]["items"] == len(held) == 36 and report["train_items"] == 353 - 36
    predicted = zoo.load(tmp_path / "run" / "classifier").predict([row for row, _ in held])[:, 0].double().numpy()
    rmse = float(np.sqrt(np.mean((predicted - np.array([target for _, target in held])) ** 2)))
    assert report["validation"]["best_rmse"] == pytest.approx(rmse, rel=1e-5)
    assert rmse == pytest.approx(min(logged(tmp_path / "run", "val_rmse")), rel=1e-5)  # the lowest, not the last
    assert rmse > 20  # in the targets' units (std 77), not standardised ones


@pytest.mark.parametrize("options, said", [
    (["--dataset", "cora", "--patience", "3"], "--patience 3 counts epochs without a better validation score; add "
                                               "--validation"),
    (["--dataset", "cora", "--validation", "0.2"], "--validation 0.2: cora has its own validation nodes; give "
                                                   "--validation without a share"),
    (["--dataset", "mutag", "--validation", "0.005"], "--validation 0.005 cannot hold out graphs of every class "
                                                      "from the 169 training graphs"),
    (["--dataset", "mutag", "--validation", "0.995"], "give a smaller share"),  # was told to give a larger one
])
def test_validation_options_that_cannot_work_are_refused(options, said, tmp_path, capsys):
    data = shared_path("data", "tu" if "mutag" in options else "planetoid")
    name = "graphmae-mutag" if "mutag" in options else "graphmae-cora"
    assert main(["finetune", name, "--data", str(data), *options, "-o", str(tmp_path / "run"), "--no-progress"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_validation_share_outside_0_and_1_is_refused_at_parsing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "graphmae-cora", "--dataset", "cora", "--validation", "1.5", "-o", str(tmp_path / "run")])
    assert "argument --validation: 1.5 is not a share between 0 and 1; e.g. 0.1 for a tenth" in capsys.readouterr().err


def test_a_run_that_diverges_is_said_to_diverge_when_its_validation_meets_the_nan(tmp_path, capsys):
    """The validation after the first step embedded with weights of 1e30 and its NaN check blamed the
    checkpoint, naming a validation graph as "input 0", where a run without --validation said it diverged."""
    command = ["finetune", "graphmae-mutag", "--dataset", "mutag", "--data", str(shared_path("data", "tu")),
               "--epochs", "3", "--validation", "--batch-size", "120", "--lr", "1e30", "--no-progress"]
    assert main([*command, "-o", str(tmp_path / "run")]) == 2
    assert ("zoo: error: training diverged: after step 1 the weights reach 1e+30; rerun in a new output folder "
            "with a lower learning rate (lr=1e+30)") in capsys.readouterr().err
