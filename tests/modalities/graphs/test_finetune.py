"""`zoo finetune NAME --dataset D` on graphs: a node dataset trains a class per node on its
training nodes (resumably) and is scored on its test nodes; a TU set trains a graph classifier and is scored
on the first of the svm-10fold probe's folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import shared_path
from safetensors.torch import load_file

import zoo
from modalities.graphs.datasets import load_dataset
from zoo.cli import main
from zoo.errors import CheckpointError

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def finetune(capsys, *args: str) -> dict:
    assert main(["finetune", *args, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_node_dataset_trains_on_its_training_nodes_and_scores_its_test_nodes(tmp_path, capsys):
    planetoid = shared_path("data", "planetoid")
    command = ["graphmae-cora", "--dataset", "cora", "--data", str(planetoid), "--mode", "linear", "--epochs", "30"]
    stopped = finetune(capsys, *command, "-o", str(tmp_path / "run"), "--time-limit", "0")
    assert stopped == {"steps_done": 1, "steps": 30}
    report = finetune(capsys, *command, "-o", str(tmp_path / "run"))  # goes on from step 1
    whole = finetune(capsys, *command, "-o", str(tmp_path / "whole"))
    assert report["test_accuracy"] == whole["test_accuracy"]
    assert torch.equal(load_file(tmp_path / "run" / "classifier" / "model.safetensors")["head.weight"],
                       load_file(tmp_path / "whole" / "classifier" / "model.safetensors")["head.weight"])
    assert (report["train_items"], report["test_items"], report["classes"]) == (140, 1000, 7)
    assert (report["steps"], report["batch_size"], report["lr"]) == (30, 1, 1e-2)  # one step a full-graph epoch
    assert report["pool"] is None
    assert report["loss_last_epoch"] < report["loss_first_epoch"] - 0.1, report
    assert report["trained_parameters"] == 512 * 7 + 7  # the head alone
    assert report["train_accuracy_last_epoch"] > 0.6  # of the 140 labelled nodes, not of all 2,708

    classifier = zoo.load(tmp_path / "run" / "classifier")
    assert isinstance(classifier, zoo.EncoderForTokenClassification) and classifier.labels == [str(c) for c in range(7)]
    cora = load_dataset("cora", planetoid)
    predicted = classifier.logits(cora).argmax(-1)[cora.test_mask]
    assert report["test_accuracy"] == (predicted == cora.y[cora.test_mask]).double().mean().item()
    assert report["test_accuracy"] > 0.7  # 30 steps of a head on pretrained features (chance: 0.32)
    card = (tmp_path / "run" / "classifier" / "README.md").read_text()
    assert "on 1,000 held-out nodes; trained on 140 nodes of 7 classes" in card
    assert "dataset:\n      name: cora" in card
    settings = json.loads((tmp_path / "run" / "args.json").read_text())
    assert (settings["dataset"], settings["epochs"], settings["batch_size"]) == ("cora", 30, 1)
    assert settings["training_data"].startswith("140 training nodes, sha256 ")  # said "1 training nodes" (the graph)
    assert f"| training_data | `{settings['training_data']}` |" in card


def test_a_set_of_graphs_is_scored_on_a_fold_of_the_svm_probe(tmp_path, capsys):
    from sklearn.model_selection import StratifiedKFold

    tu = shared_path("data", "tu")
    report = finetune(capsys, "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--mode", "full",
                      "--epochs", "3", "--batch-size", "16", "--fold", "3", "-o", str(tmp_path / "run"))
    graphs = load_dataset("mutag", tu)
    labels = np.array([int(graph.y) for graph in graphs])
    _, test = list(StratifiedKFold(n_splits=10, shuffle=True, random_state=0).split(labels, labels))[3]
    assert (report["train_items"], report["test_items"], report["classes"]) == (188 - len(test), len(test), 2)
    assert report["steps"] == 3 * ((188 - len(test)) // 16)
    assert (report["pool"], report["fold"]) == ("sum", 3)  # the checkpoint's own readout, as its probe reads it
    classifier = zoo.load(tmp_path / "run" / "classifier")
    predicted = classifier.logits([graphs[index] for index in test]).argmax(-1).numpy()
    assert report["test_accuracy"] == float((predicted == labels[test]).mean())
    assert classifier.labels == ["0", "1"]


def test_a_head_alone_trains_at_lr_1e_2_by_default(tmp_path, capsys):
    """At 1e-3 a head on the frozen encoder under-trained: over MUTAG's ten folds in 50 epochs
    76.1 % against 78.7 % at 1e-2 (benchmarks/README), FSDD digits 57 % against 68 %. One fold's
    19 test graphs are too few to show it: its seed-0 score moved from 94.7 % to 73.7 % between
    two installs of the same pinned torch (float rounding over 250 steps whose gradient norms
    start in the hundreds), and seeds 0-4 give 73.7-89.5 % on one; the training loss reached
    is the sturdy sign."""
    command = ["graphmae-mutag", "--dataset", "mutag", "--data", str(shared_path("data", "tu")), "--mode", "linear",
               "--epochs", "50", "--fold", "1"]
    report = finetune(capsys, *command, "-o", str(tmp_path / "default"))
    slower = finetune(capsys, *command, "--lr", "1e-3", "-o", str(tmp_path / "slower"))
    assert (report["lr"], report["test_items"], slower["lr"]) == (1e-2, 19, 1e-3)
    assert report["loss_last_epoch"] < 0.9 * slower["loss_last_epoch"]  # 0.343 against 0.419 measured


@pytest.mark.parametrize("options, said", [
    (["--batch-size", "8"], "--batch-size 8: cora trains on its whole graph each step; drop --batch-size"),
    (["--train-limit", "70"], "--train-limit is for sets of items; cora trains on its own training nodes"),
    (["--pool", "cls"], "--pool cls: a node dataset's head classifies each node"),
    (["--label-regex", "(x)"], "--label-regex and --test-regex are for --data folders; --dataset cora has"),
    (["--fold", "2"], "--fold 2 is for sets of graphs; cora has its own split of nodes"),
    (["--fold", "10"], "--fold 10; a set of graphs has folds 0 .. 9"),
])
def test_options_a_node_dataset_cannot_take_are_refused(options, said, tmp_path, capsys):
    planetoid = shared_path("data", "planetoid")
    assert main(["finetune", "graphmae-cora", "--dataset", "cora", "--data", str(planetoid), *options,
                 "-o", str(tmp_path / "run"), "--no-progress"]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_dataset_is_for_graph_and_table_encoders_and_data_or_dataset_is_needed(tmp_path, capsys):
    assert main(["finetune", "hubert-tiny-fsdd", "--dataset", "cora", "-o", str(tmp_path / "run")]) == 2
    assert "--dataset names graph and table datasets; hubert-tiny-fsdd reads speech files" in capsys.readouterr().err
    assert main(["finetune", "graphmae-cora", "-o", str(tmp_path / "run")]) == 2
    assert "pass --data DIR (a labelled folder of files), --dataset NAME" in capsys.readouterr().err
    assert main(["finetune", "hubert-tiny-fsdd", "--data", str(tmp_path), "--fold", "1",
                 "-o", str(tmp_path / "run")]) == 2
    assert "--fold 1 is for --dataset sets of graphs; --data files are split by" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_folds_benchmark_scores_each_fold_and_goes_on_from_its_json(tmp_path, capsys, monkeypatch):
    """benchmarks/finetune_folds.py: one `zoo finetune --fold K` run per fold, their mean and std;
    a rerun adds folds without redoing the finished ones and refuses other settings."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from finetune_folds import main as folds_main

    tu = shared_path("data", "tu")
    common = ["--checkpoint", "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--modes", "linear",
              "--epochs", "2", "--output", str(tmp_path / "runs"), "--json", str(tmp_path / "folds.json"),
              "--no-progress"]
    assert folds_main([*common, "--folds", "0", "1"]) == 0
    capsys.readouterr()
    first = (tmp_path / "runs" / "linear-fold0" / "classifier" / "model.safetensors").stat().st_mtime_ns
    assert folds_main([*common, "--folds", "0", "1", "2"]) == 0
    table = json.loads(capsys.readouterr().out)["linear"]
    assert (tmp_path / "runs" / "linear-fold0" / "classifier" / "model.safetensors").stat().st_mtime_ns == first
    single = finetune(capsys, "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--mode", "linear",
                      "--epochs", "2", "--fold", "2", "-o", str(tmp_path / "single"))
    assert table["folds"] == [0, 1, 2] and table["accuracies"][2] == round(100 * single["test_accuracy"], 2)
    assert table["mean"] == round(float(np.mean(table["accuracies"])), 2)
    with pytest.raises(CheckpointError, match="epochs: 2 then, 3 now"):
        folds_main([*common[:-5], "--epochs", "3", *common[-5:]])
