"""The embedded graph checkpoints: load offline, match their hub_configs and cards, and
reach the accuracy their cards report (Cora: GraphMAE's linear probe; MUTAG: its
svm-10fold protocol)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from helpers import shared_path
from modalities.graphs.evaluation import node_probe
from zoo.registry import data_folder

#: checkpoint -> the early-stopped accuracy (probe seed 0) its card reports, in %
REPORTED = {"graphmae-cora": 84.3, "paretognn-cora": 80.3}


@pytest.mark.parametrize("name", [*sorted(REPORTED), "graphmae-mutag"])
def test_loads_offline_and_matches_its_hub_config(offline_cache, name):
    encoder = zoo.load(name)
    entry = zoo.info(name)
    assert entry["embedded"] and encoder.family == entry["family"]
    saved = {k: v for k, v in encoder.config.to_dict().items() if k not in ("family", "zoo_version")}
    assert json.loads(json.dumps(saved)) == entry["architecture"]
    assert entry["preprocessing"] == {k: v for k, v in encoder.processor.to_dict().items() if k != "processor_type"}
    assert sum(p.numel() for p in encoder.parameters()) == entry["params"]
    folder = data_folder("checkpoints") / name
    assert (folder / "README.md").read_text() == (data_folder("model_cards") / f"{name}.md").read_text()
    assert (folder / "model.safetensors").stat().st_size < 8_000_000


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_node_embeddings_reach_the_reported_accuracy(name):
    from modalities.graphs.datasets import load_dataset

    data = load_dataset("cora", shared_path("data", "planetoid"))
    nodes = zoo.load(name).embed(data, progress=False)
    assert nodes.shape == (2708, zoo.load(name).embed_dim)
    result = node_probe(nodes, data.y, data.train_mask, data.val_mask, data.test_mask, seed=0)
    assert 100 * result["early_stopped_acc"] == pytest.approx(REPORTED[name], abs=0.2)


def test_mutag_graph_embeddings_reach_the_reported_accuracy():
    from modalities.graphs.datasets import load_dataset
    from modalities.graphs.evaluation import probe_graphs

    graphs = load_dataset("mutag", shared_path("data", "tu"))
    encoder = zoo.load("graphmae-mutag")
    assert encoder.embed(graphs, progress=False).shape == (188, 32)
    result = probe_graphs(encoder, graphs, "mutag", None)
    reported = zoo.info("graphmae-mutag")["metrics"]["mutag_svm_10fold"]
    assert result["accuracy"] == pytest.approx(reported[0], abs=0.6)  # one graph moves the score by 0.53
    assert probe_graphs(encoder, graphs, "mutag", None, jobs=2) == result  # processes change the speed only


def test_python_probe_dataset_takes_the_recipes_settings_for_the_dataset(monkeypatch):
    """`zoo probe --dataset` passed the checkpoint's recipe's probe settings (a Cora checkpoint
    probed on CiteSeer with Cora's weight decay), while Python's probe_dataset took none, though
    its docstring promised the recipe's. Both take the family's recipe for the dataset now."""
    from modalities.graphs import evaluation
    from zoo import registry

    assert registry.probe_settings("graphmae", "citeseer") == {"lr": 0.01, "weight_decay": 0.01, "epochs": 300}
    assert registry.probe_settings("graphmae", "CiteSeer")["weight_decay"] == 0.01
    assert registry.probe_settings("paretognn", "citeseer") == {}  # no recipe: PROBE_DEFAULTS
    monkeypatch.setattr(registry, "probe_settings", lambda family, dataset: {"epochs": 3, "weight_decay": 0.5})
    root = shared_path("data", "planetoid")
    report = evaluation.probe_dataset(zoo.load("graphmae-cora"), "cora", root)
    assert (report["epochs"], report["weight_decay"], report["lr"]) == (3, 0.5, 0.01)
    assert evaluation.probe_dataset(zoo.load("graphmae-cora"), "cora", root, settings={"epochs": 2})["epochs"] == 2


def test_loading_a_graph_checkpoint_prints_no_pyg_import_warning():
    """PyG's import-time torch.jit.script calls warned on every `zoo.load` of a graph checkpoint
    (torch >= 2.10), naming nothing the user could change; the CLI hid them, Python did not."""
    pyg_warning = "error:`torch.jit.script` is deprecated:FutureWarning"
    code = "import zoo; [zoo.load(name) for name in ('graphmae-mutag', 'paretognn-cora')]"
    result = subprocess.run([sys.executable, "-W", pyg_warning, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).parents[3])
    assert result.returncode == 0, result.stderr[-2000:]
