"""GraphMAE's objective and `zoo pretrain graphmae` / `zoo probe --dataset` on Planetoid Cora."""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Data

import zoo
from helpers import shared_path
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.graphmae.objective import GraphMAEPretraining, mask_nodes
from modalities.graphs.losses import sce_loss
from zoo.cli import main
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.training import TrainConfig, train


def test_sce_loss_is_the_scaled_cosine_error():
    prediction = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    expected = ((1 - 2**-0.5) ** 3 + 0.0) / 2
    assert sce_loss(prediction, target, alpha=3).item() == pytest.approx(expected)


def test_masking_counts_and_corruption():
    x = torch.arange(200.0).view(100, 2)
    token = torch.tensor([[1000.0, 1000.0]])
    corrupted, masked = mask_nodes(x, 0.5, 0.1, token, torch.Generator().manual_seed(0))
    assert masked.numel() == 50 and masked.unique().numel() == 50
    changed = (corrupted != x).any(dim=1)
    assert not changed[torch.tensor([i for i in range(100) if i not in set(masked.tolist())])].any()
    tokened = (corrupted == 1000.0).all(dim=1)
    assert int(tokened.sum()) == 45  # 50 masked - int(0.1 * 50) replaced


def community_graph(seed: int = 0) -> Data:
    """Two dense communities whose nodes carry noisy copies of their community's feature vector."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(60) % 2
    prototypes = torch.rand(2, 12, generator=g)
    x = prototypes[labels] + 0.05 * torch.rand(60, 12, generator=g)
    source, target = torch.randint(0, 60, (2, 600), generator=g)
    keep = labels[source] == labels[target]
    return Data(x=x, edge_index=torch.stack([source[keep], target[keep]]))


def test_pretraining_lowers_the_reconstruction_loss(tmp_path):
    torch.manual_seed(0)
    config = GraphMAEConfig(in_dim=12, num_hidden=16, num_heads=2, num_layers=2)
    encoder = GraphMAEEncoder(config)
    prepared = encoder.processor.prepare(community_graph())
    objective = GraphMAEPretraining(encoder, mask_rate=0.5, replace_rate=0.1, alpha_l=2)
    batches = [{"x": prepared.x, "edge_index": prepared.edge_index}]
    records = train(objective, batches, tmp_path, TrainConfig(steps=60, lr=0.01, optimizer="adam", progress=False,
                                                               max_grad_norm=None, checkpoint_every=30))
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-10:]) / 10
    assert last < 0.5 * first, (first, last)


def test_drop_edge_rate_thins_the_encoders_graph_only(monkeypatch):
    """drop_edge_rate=0.5 (GraphMAE's --drop_edge_rate) hands the encoder about half the graph's
    edges (between 30% and 70% of them, self-loops aside); at 0.0 it gets every edge. A rate that
    was read but never used trained the encoder on the full graph."""
    torch.manual_seed(0)
    encoder = GraphMAEEncoder(GraphMAEConfig(in_dim=12, num_hidden=16, num_heads=2, num_layers=2))
    prepared = encoder.processor.prepare(community_graph())
    batch = {"x": prepared.x, "edge_index": prepared.edge_index}
    def edges(index: torch.Tensor) -> int:
        return int((index[0] != index[1]).sum())

    seen, node_layers = [], encoder.node_layers
    monkeypatch.setattr(encoder, "node_layers", lambda x, index: seen.append(edges(index)) or node_layers(x, index))
    for rate in (0.0, 0.5):
        GraphMAEPretraining(encoder, drop_edge_rate=rate)(batch)
    total = edges(prepared.edge_index)
    assert seen[0] == total and 0.3 * total < seen[1] < 0.7 * total, (seen, total)


def test_objective_refuses_bad_rates():
    encoder = GraphMAEEncoder(GraphMAEConfig(in_dim=4, num_hidden=4, num_heads=1))
    with pytest.raises(ConfigError, match="mask_rate"):
        GraphMAEPretraining(encoder, mask_rate=1.0)


def test_recipes_without_weights_say_how_to_make_them():
    with pytest.raises(CheckpointError, match="zoo pretrain graphmae --dataset citeseer"):
        zoo.load("graphmae-citeseer")


def test_pretrain_and_probe_commands_on_cora(tmp_path, capsys):
    root = shared_path("data", "planetoid")
    out = tmp_path / "run"
    args = ["pretrain", "graphmae", "--dataset", "cora", "--data", str(root), "-o", str(out), "--set", "num_hidden=16",
            "--set", "num_heads=2", "--checkpoint-every", "2", "--no-progress", "--epochs"]
    assert main([*args, "6", "--time-limit", "0"]) == 0  # stops after one step
    assert "time limit reached at step 1 of 6" in capsys.readouterr().err
    assert main([*args, "8"]) == 2  # another run's settings are not mixed into this one
    assert "epochs: 6 then, 8 now" in capsys.readouterr().err
    assert main([*args, "6"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6] and records[0]["masked_nodes"] == 1354
    encoder = zoo.load(out / "encoder")
    assert encoder.processor.feature_norm == "row" and encoder.config.num_hidden == 16
    capsys.readouterr()
    assert main(["probe", str(out / "encoder"), "--dataset", "cora", "--data", str(root), "--seeds", "0", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeds"] == [0, 1] and result["epochs"] == 300 and 20 < result["early_stopped_acc"] <= 100
    assert main(["pretrain", "graphmae", "--dataset", "cora", "--data", str(root), "-o", str(tmp_path / "x"),
                 "--set", "in_dim=10"]) == 2  # the dataset's feature width is checked
    assert main(["pretrain", "graphmae", "--dataset", "squirrel", "-o", str(tmp_path / "y")]) == 2
    capsys.readouterr()
    assert main([*args, "6", "--set", "dataset=citeseer"]) == 2  # was accepted, and trained on cora
    assert "--set dataset=...: 'dataset' records what the recipe was made for, not a training setting; pass " \
        "--dataset NAME" in capsys.readouterr().err
    assert main([*args[:-1], "--set", "epochs=0"]) == 2  # was "steps=0"
    assert "epochs=0; train for at least one (--epochs N)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # refused as the command line is read
        main([*args, "0"])
    assert "argument --epochs: 0 is not a positive number" in capsys.readouterr().err


def test_a_graph_set_setting_is_refused_on_a_dataset_of_one_graph(tmp_path, capsys):
    """`--set batch_size=4` on Cora was accepted and changed nothing: Cora is one graph, trained whole each step."""
    root = shared_path("data", "planetoid")
    args = ["pretrain", "graphmae", "--dataset", "cora", "--data", str(root), "--epochs", "1", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "set"), "--set", "batch_size=4"]) == 2
    assert "--set batch_size=4: dataset 'cora' is one graph, which every step trains on whole; batch_size counts " \
        "the graphs of a mini-batch in a set of graphs (e.g. mutag, ppi): drop it" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()
    assert main([*args, "-o", str(tmp_path / "borrowed"), "--recipe", "mutag"]) == 0  # its batch_size=64 is not ours


def test_datasets_are_named_and_located_clearly(tmp_path):
    from modalities.graphs.datasets import load_dataset

    with pytest.raises(InputError, match="unknown graph dataset 'squirrel'"):
        load_dataset("squirrel")
    with pytest.raises(InputError, match="must hold CiteSeer/raw"):
        load_dataset("citeseer", tmp_path)


def test_graph_sets_are_probed_with_the_svm_protocol(tmp_path, capsys):
    root = shared_path("data", "tu")
    out = tmp_path / "mutag"
    assert main(["pretrain", "graphmae", "--dataset", "mutag", "--data", str(root), "-o", str(out), "--epochs", "2",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["probe", str(out / "encoder"), "--dataset", "mutag", "--data", str(root),
                 "--protocol", "svm-10fold"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"].startswith("svm-10fold") and result["pool"] == "sum" and result["graphs"] == 188
    assert len(result["folds"]) == 10 and 50 < result["accuracy"] <= 100
    from modalities.graphs.evaluation import probe_dataset
    from zoo.hub import load

    with pytest.raises(ConfigError, match="scored with GraphMAE's svm-10fold protocol, not 'linear-probe'"):
        probe_dataset(load(out / "encoder"), "mutag", str(root), protocol="linear-probe")
    with pytest.raises(ConfigError, match="protocol 'knn' is not one of"):
        probe_dataset(load(out / "encoder"), "mutag", str(root), protocol="knn")
    with pytest.raises(ConfigError, match="every seed gives the same run"):
        probe_dataset(load(out / "encoder"), "mutag", str(root), seeds=(0, 1))
    assert main(["probe", str(out / "encoder"), "--dataset", "mutag", "--data", str(root), "--seeds", "0", "1"]) == 2
    assert ("seeds [0, 1]: dataset 'mutag' is scored with GraphMAE's svm-10fold protocol, whose folds and SVMs are "
            "fixed (random_state 0 and 42, as upstream's), so every seed gives the same run; drop --seeds"
            in capsys.readouterr().err)  # was taken, and the result was the one run's


def write_tu_set(root, name: str, graphs: int = 40) -> None:
    """A featureless TU set in the TU file format: cycles (label 1) and stars (label 2) of 5-9 nodes."""
    folder = root / name / "raw"
    folder.mkdir(parents=True)
    edges, indicator, labels, offset = [], [], [], 1
    for index in range(graphs):
        size, star = 5 + index % 5, index % 2 == 0
        pairs = [(0, k) for k in range(1, size)] if star else [(k, (k + 1) % size) for k in range(size)]
        edges += [f"{a + offset}, {b + offset}" for u, v in pairs for a, b in ((u, v), (v, u))]
        indicator += [str(index + 1)] * size
        labels.append("2" if star else "1")
        offset += size
    for suffix, lines in (("A", edges), ("graph_indicator", indicator), ("graph_labels", labels)):
        (folder / f"{name}_{suffix}.txt").write_text("\n".join(lines) + "\n")


def test_any_tu_set_pretrains_with_a_borrowed_recipe(tmp_path, capsys, monkeypatch):
    """`--dataset NAME --recipe mutag` on a TU set without node features: one-hot degrees, in_dim from the data."""
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    write_tu_set(tmp_path / "data", "TOY")
    out = tmp_path / "toy"
    assert main(["pretrain", "graphmae", "--dataset", "TOY", "--data", str(tmp_path / "data"), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "--dataset TOY: no graphmae recipe for dataset 'TOY'" in error and "--recipe NAME" in error
    assert main(["pretrain", "graphmae", "--dataset", "TOY", "--recipe", "nope", "--data", str(tmp_path / "data"),
                 "-o", str(out)]) == 2
    error = capsys.readouterr().err  # was told to borrow a recipe with --recipe
    assert "--recipe nope: no graphmae recipe for dataset 'nope'; hub_configs have recipes for" in error
    assert "--recipe NAME" not in error
    assert main(["pretrain", "graphmae", "--dataset", "TOY", "--recipe", "mutag", "--data", str(tmp_path / "data"),
                 "-o", str(out), "--epochs", "2", "--no-progress"]) == 0
    encoder = zoo.load(out / "encoder")
    assert encoder.config.in_dim == 9 and encoder.config.encoder_type == "gin"  # a star of 9 nodes: degree 8
    assert encoder.processor.node_features == "degree"
    star = Data(edge_index=torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]]), num_nodes=3)
    assert encoder.embed(star, progress=False).shape == (1, 32)
    capsys.readouterr()
    assert main(["probe", str(out / "encoder"), "--dataset", "TOY", "--data", str(tmp_path / "data")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["graphs"] == 40 and result["accuracy"] == 100.0  # cycles and stars differ in their degrees


def test_a_run_stopped_mid_epoch_resumes_as_if_never_stopped(tmp_path):
    """MUTAG's 188 graphs make 3 batches an epoch: the run stops after the first and goes on from
    the second batch of the same shuffled epoch, with the same weights at the end."""
    from safetensors.torch import load_file

    def pretrain(out, *extra):
        return main(["pretrain", "graphmae", "--dataset", "mutag", "--data", str(shared_path("data", "tu")),
                     "-o", str(out), "--epochs", "2", "--no-progress", "--set", "num_hidden=16", *extra])

    assert pretrain(tmp_path / "whole") == 0
    assert pretrain(tmp_path / "stopped", "--time-limit", "0") == 0
    assert len((tmp_path / "stopped" / "log.jsonl").read_text().splitlines()) == 1
    assert pretrain(tmp_path / "stopped") == 0
    whole, resumed = (load_file(tmp_path / run / "encoder" / "model.safetensors") for run in ("whole", "stopped"))
    assert max((whole[key] - resumed[key]).abs().max().item() for key in whole) == 0.0


def test_a_run_resumed_on_another_roots_graphs_is_refused(tmp_path, capsys):
    """--data may move between reruns; another root whose MUTAG differs (node labels shuffled)
    went on training the run on those graphs."""
    import shutil

    for root in ("first", "other"):
        shutil.copytree(shared_path("data", "tu") / "MUTAG", tmp_path / root / "MUTAG")
    labels = tmp_path / "other" / "MUTAG" / "raw" / "MUTAG_node_labels.txt"
    labels.write_text("".join(reversed(labels.read_text().splitlines(keepends=True))))

    def pretrain(root, *extra):
        return main(["pretrain", "graphmae", "--dataset", "mutag", "--data", str(tmp_path / root), "-o",
                     str(tmp_path / "run"), "--epochs", "1", "--no-progress", "--set", "num_hidden=16", *extra])

    assert pretrain("first", "--time-limit", "0") == 0
    capsys.readouterr()
    assert pretrain("other") == 2
    assert "its run had other settings (training_data: '188 graph(s), sha256" in capsys.readouterr().err
    assert pretrain("first") == 0


def test_a_cosine_recipe_moves_its_lr_once_an_epoch_as_upstream(tmp_path):
    """Upstream GraphMAE steps its cosine after each epoch: MUTAG's 3 batches an epoch share one
    lr, the second epoch's being half the first's (cos at 1 / 2 epochs)."""
    out = tmp_path / "cosine"
    assert main(["pretrain", "graphmae", "--dataset", "mutag", "--data", str(shared_path("data", "tu")), "-o", str(out),
                 "--epochs", "2", "--no-progress", "--set", "num_hidden=16", "--set", "scheduler=cosine"]) == 0
    rates = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    peak = rates[0]
    assert rates == pytest.approx([peak] * 3 + [peak / 2] * 3)
