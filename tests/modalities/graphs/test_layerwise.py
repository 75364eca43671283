"""Layer-wise node inference (`embed(graph, node_batch_size=B)`): every layer of every published graph
architecture equals the full-graph forward, and a layer call sees only its batch and the batch's
one-hop in-neighbours."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

import zoo
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.paretognn.model import ParetoGNNConfig, ParetoGNNEncoder

ARCHITECTURES = [*zoo.list_models("graphmae-*"), *zoo.list_models("paretognn-*")]


def random_graph(num_nodes: int, num_edges: int, in_dim: int, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(x=torch.rand(num_nodes, in_dim, generator=g),
                edge_index=torch.randint(0, num_nodes, (2, num_edges), generator=g))


def untrained(name: str) -> zoo.Encoder:
    """The checkpoint's architecture with random weights and non-trivial BatchNorm statistics."""
    architecture = zoo.info(name)["architecture"]
    torch.manual_seed(0)
    if name.startswith("paretognn"):
        model = ParetoGNNEncoder(ParetoGNNConfig(**architecture))
    else:
        model = GraphMAEEncoder(GraphMAEConfig(**architecture))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_layer_equals_the_full_graph(name):
    """GAT (heads, PReLU, residual, LayerNorm), GIN (BatchNorm, eval) and GCN (BatchNorm, degree weights)."""
    model = untrained(name)
    graph = random_graph(150, 450, model.config.in_dim, seed=1)
    for layer in range(model.num_layers + 1):
        full = model.embed(graph, layer=layer, pool="none", progress=False)
        layerwise = model.embed(graph, layer=layer, pool="none", node_batch_size=23, progress=False)
        assert layerwise.shape == full.shape and max_diff(layerwise, full) <= 1e-5, layer
    last = model.embed(graph, pool="none", node_batch_size=1000, progress=False)  # one batch of all nodes
    assert max_diff(last, full) <= 1e-5


@pytest.mark.parametrize("name", ["graphmae-cora", "paretognn-cora", "graphmae-mutag"])
def test_embedded_checkpoints_equal_the_full_graph(name):
    model = zoo.load(name)
    graph = random_graph(120, 400, model.config.in_dim, seed=2)
    graph.x = (graph.x > 0.9).float()  # bag-of-words-like features, as Cora's
    full = model.embed(graph, pool="none", progress=False)
    assert max_diff(model.embed(graph, pool="none", node_batch_size=16, progress=False), full) <= 1e-5
    assert torch.allclose(model.embed(graph, pool="mean", node_batch_size=16, progress=False), full.mean(0),
                          atol=1e-5)


@pytest.mark.parametrize("name", ["graphmae-ppi", "graphmae-nci1", "paretognn-cora"])
def test_a_layer_call_sees_only_its_batch_and_their_in_neighbours(name, monkeypatch):
    """The bound without timing: each call gets at most `node_batch_size` targets, first, then exactly
    their one-hop in-neighbours, and only edges into the targets; every layer runs once per batch."""
    model = untrained(name)
    graph = random_graph(200, 300, model.config.in_dim, seed=3)
    prepared = model.processor.prepare(graph)
    edges, _ = model.layerwise_edges(prepared.edge_index, prepared.num_nodes)
    calls = []
    node_layer = model.node_layer

    def recording(index, x, edge_index, edge_weight, num_targets):
        calls.append((index, x.shape[0], edge_index, num_targets))
        return node_layer(index, x, edge_index, edge_weight, num_targets)

    monkeypatch.setattr(model, "node_layer", recording)
    model.embed(graph, pool="none", node_batch_size=32, progress=False)
    assert [index for index, *_ in calls] == [i for i in range(model.num_layers) for _ in range(7)]  # 200 / 32
    for start, (index, num_nodes, edge_index, num_targets) in zip(list(range(0, 200, 32)) * model.num_layers, calls):
        targets = torch.arange(start, min(start + 32, 200))
        into = torch.isin(edges[1], targets)
        sources = torch.unique(edges[0][into])
        assert num_targets == targets.numel()
        assert num_nodes == targets.numel() + (~torch.isin(sources, targets)).sum().item()
        assert edge_index.shape[1] == into.sum().item() and (edge_index[1] < num_targets).all()


@pytest.mark.parametrize("name", ["graphmae-ppi", "graphmae-nci1", "paretognn-cora"])
def test_directed_graphs_without_self_loops_equal_the_full_graph(name):
    """Nodes without in-edges (GAT: the bias alone) and one-way edges, which a one-hop batch must not turn
    around; GCN still adds its self-loops and reads degrees of the whole graph."""
    from modalities.graphs.processing import GraphProcessor

    model = untrained(name)
    model.processor = GraphProcessor(in_dim=model.config.in_dim, to_undirected=False, self_loops=False)
    graph = random_graph(100, 150, model.config.in_dim, seed=4)
    full = model.embed(graph, pool="none", progress=False)
    assert max_diff(model.embed(graph, pool="none", node_batch_size=9, progress=False), full) <= 1e-5


def test_a_bfloat16_encoder_embeds_layer_by_layer_as_the_full_graph():
    """Layer outputs are kept in the weights' dtype, as the full-graph forward passes them on; the result is
    float32 as the full graph's (equal here; the bound allows bfloat16 sums in another order)."""
    model = untrained("graphmae-reddit").to(torch.bfloat16)
    graph = random_graph(80, 240, model.config.in_dim, seed=5)
    full = model.embed(graph, pool="none", progress=False)
    layerwise = model.embed(graph, pool="none", node_batch_size=13, progress=False)
    assert layerwise.dtype == torch.float32 and max_diff(layerwise, full) <= 0.01 * full.abs().max().item()
