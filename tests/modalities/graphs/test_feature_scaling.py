"""feature_norm="standard": GraphMAE's StandardScaler for ogbn-arxiv and Reddit, fitted on the
pretraining graph and kept with the processor, so that a graph embedded later is scaled as the
training graph was (the dataset loader did it before, and a raw PyG graph passed to `embed`
missed it)."""

import json

import numpy as np
import pytest
import torch
from helpers import shared_path
from sklearn.preprocessing import StandardScaler
from torch_geometric.data import Data

import zoo
from modalities.graphs.processing import GraphProcessor
from zoo.cli import main
from zoo.errors import InputError


def graph(seed: int, nodes: int = 50, features: int = 6) -> Data:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, features, generator=generator) * torch.arange(1, features + 1) + 3
    x[:, 0] = 2.5  # a constant feature: StandardScaler centres it and divides by 1
    edges = torch.randint(0, nodes, (2, 3 * nodes), generator=generator)
    return Data(x=x, edge_index=edges)


def test_fitted_statistics_scale_as_sklearn_and_stay_with_the_processor(tmp_path):
    train, other = graph(0), graph(1, nodes=7)
    other.x[:, 0] = torch.linspace(0, 5, 7)  # varies where the training graph's was constant: (x - 2.5) / 1
    processor = GraphProcessor(in_dim=6, feature_norm="standard").fitted(train)
    scaler = StandardScaler().fit(train.x.numpy())
    for data in (train, other):
        expected = scaler.transform(data.x.numpy())
        assert np.abs(processor.prepare(data).x.numpy() - expected).max() <= 1e-5
    processor.save(tmp_path)
    assert GraphProcessor.from_file(tmp_path / "preprocessor_config.json") == processor
    unfitted = GraphProcessor(in_dim=6, feature_norm="standard")  # each graph by its own statistics
    own = StandardScaler().fit_transform(other.x.numpy())
    assert np.abs(unfitted.prepare(other).x.numpy() - own).max() <= 1e-5
    assert (unfitted.prepare(train).x - processor.prepare(train).x).abs().max() <= 1e-6
    assert GraphProcessor(in_dim=6, feature_norm="row").fitted(train) == GraphProcessor(in_dim=6, feature_norm="row")


def test_statistics_that_do_not_fit_are_refused():
    with pytest.raises(InputError, match=r"lengths \[3, 3\] go together.*\(in_dim=6"):
        GraphProcessor(in_dim=6, feature_norm="standard", feature_mean=[0.0] * 3, feature_std=[1.0] * 3)
    with pytest.raises(InputError, match="feature_norm='row'"):
        GraphProcessor(in_dim=2, feature_norm="row", feature_mean=[0.0] * 2, feature_std=[1.0] * 2)
    with pytest.raises(InputError, match=r"lengths \[2\]"):
        GraphProcessor(in_dim=2, feature_norm="standard", feature_mean=[0.0] * 2)


def test_recipes_that_standardise_fit_their_statistics_when_pretraining(tmp_path, capsys):
    """Cora with ogbn-arxiv's recipe: the saved encoder's processor holds Cora's feature
    statistics, and embedding the raw graph scales it as pretraining did."""
    from torch_geometric.datasets import Planetoid

    for name in ("graphmae-ogbn-arxiv", "graphmae-reddit"):
        assert zoo.info(name)["preprocessing"]["feature_norm"] == "standard"
    root = shared_path("data", "planetoid")
    out = tmp_path / "run"
    assert main(["pretrain", "graphmae", "--dataset", "cora", "--recipe", "ogbn-arxiv", "--data", str(root),
                 "-o", str(out), "--set", "num_hidden=8", "--set", "num_heads=2", "--set", "num_layers=1",
                 "--epochs", "1", "--no-progress"]) == 0
    saved = json.loads((out / "encoder" / "preprocessor_config.json").read_text())
    cora = Planetoid(str(root), "Cora")[0]
    scaler = StandardScaler().fit(cora.x.numpy())
    assert saved["feature_norm"] == "standard" and len(saved["feature_mean"]) == 1433
    assert np.abs(np.array(saved["feature_mean"]) - scaler.mean_).max() <= 1e-6
    assert np.abs(np.array(saved["feature_std"]) - scaler.scale_).max() <= 1e-6  # a constant word's is 1, as sklearn's
    encoder = zoo.load(out / "encoder")
    part = Data(x=cora.x[:100], edge_index=torch.empty(2, 0, dtype=torch.long))  # scaled by Cora's statistics
    expected = scaler.transform(part.x.numpy())
    assert np.abs(encoder.processor.prepare(part).x.numpy() - expected).max() <= 1e-4


def test_row_norm_divides_counts_and_refuses_negative_features():
    """feature_norm="row" (the Planetoid checkpoints) divided centred features by a sum clamped to 1e-12
    where it was negative: graphmae-cora gave embeddings of 7e11, silently."""
    processor = GraphProcessor(in_dim=6, feature_norm="row")
    counts = graph(0)
    counts.x = counts.x.abs()
    assert torch.allclose(processor.prepare(counts).x.sum(1), torch.ones(50))
    centred = Data(x=counts.x - counts.x.mean(0), edge_index=counts.edge_index)
    with pytest.raises(InputError, match=r"negative node features \(min -.*feature_norm='row'.*not standardised"):
        processor.prepare(centred)
