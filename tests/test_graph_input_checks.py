"""A graph whose node count, features and edges disagree is refused by name, in every embed path.

PyG's `Data.num_nodes` returns an explicit `num_nodes` when one is set; the processor builds the
graph from `x` and `edge_index`, so a `num_nodes` above x's rows lost the nodes past them and one
below embedded x's extra rows as nodes, both without a word.
"""

from __future__ import annotations

import pytest
import torch
from helpers import one_thread  # noqa: F401
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.processing import GraphProcessor
from zoo.errors import InputError

PATH = torch.tensor([[0, 1, 2], [1, 2, 3]])  # 4 nodes in a path
EMBED_CALLS = {"graph": {}, "nodes": {"pool": "none"}, "layerwise": {"pool": "none", "node_batch_size": 2}}


def encoder(node_features: str = "x") -> GraphMAEEncoder:
    torch.manual_seed(0)
    config = GraphMAEConfig(in_dim=4, num_hidden=8, num_layers=2, encoder_type="gin", norm="batchnorm",
                            pooling="mean")
    return GraphMAEEncoder(config, GraphProcessor(in_dim=4, node_features=node_features)).eval()


def graph(seed: int = 0, **attributes) -> Data:
    return Data(x=torch.rand(4, 4, generator=torch.Generator().manual_seed(seed)), edge_index=PATH, **attributes)


@pytest.mark.parametrize("call", EMBED_CALLS)
@pytest.mark.parametrize("num_nodes", [6, 2])
def test_num_nodes_that_is_not_x_rows_is_refused(num_nodes, call):
    """num_nodes=6 embedded x's 4 rows; num_nodes=2 embedded all 4 (and pool='none' gave 4 rows)."""
    message = (rf"graph has num_nodes={num_nodes} but x of shape \(4, 4\), a row for 4 nodes; .*"
               r"drop num_nodes \(del data.num_nodes\) or give x a row per node")
    with pytest.raises(InputError, match=message):
        encoder().embed(graph(num_nodes=num_nodes), progress=False, **EMBED_CALLS[call])


@pytest.mark.parametrize("call", EMBED_CALLS)
def test_edges_past_x_rows_name_the_largest_entry_and_x(call):
    edges = torch.tensor([[7, 0, 1], [1, 9, -1]])
    message = (r"refers to node 9 \(3 such entries\) but the graph has 4 nodes \(x has shape \(4, 4\)\); "
               r"indices must lie in \[0, 3\]: .*give x a row per node")
    with pytest.raises(InputError, match=message):
        encoder().embed(Data(x=torch.rand(4, 4), edge_index=edges), progress=False, **EMBED_CALLS[call])


@pytest.mark.parametrize("make", [list, Batch.from_data_list, lambda graphs: DataLoader(graphs, batch_size=2)],
                         ids=["list", "batch", "loader"])
@pytest.mark.parametrize("num_nodes", [6, 2])
def test_the_bad_graph_of_a_list_or_batch_is_named(make, num_nodes):
    """A Batch whose first graph has no num_nodes drops every graph's own (PyG's collate reads the
    first graph's keys), which embedded the bad graph as its 4 rows even with the check in prepare."""
    graphs = [graph(0), graph(1), graph(2, num_nodes=num_nodes)]
    with pytest.raises(InputError, match=rf"^input 2: graph has num_nodes={num_nodes} but x of shape \(4, 4\)"):
        encoder().embed(make(graphs), progress=False)


def test_the_processor_names_the_bad_graph_of_a_batch():
    """`head(**head.processor(batch))`, as a PyG training loop calls it, says which graph is bad."""
    processor = encoder().processor
    graphs = [graph(0), graph(1, num_nodes=6)]
    for inputs in (graphs, Batch.from_data_list(graphs)):
        with pytest.raises(InputError, match=r"^input 1: graph has num_nodes=6 but x of shape \(4, 4\)"):
            processor(inputs)
    with pytest.raises(InputError, match=r"^input 1: edge_index refers to node 4 .*x has shape \(4, 4\)"):
        processor([graph(0), Data(x=torch.rand(4, 4), edge_index=torch.tensor([[0], [4]]))])


def test_consistent_graphs_embed_as_before():
    """An explicit num_nodes that agrees with x changes nothing; isolated nodes still embed; a
    Batch is its graphs."""
    model = encoder()
    isolated = Data(x=torch.rand(6, 4), edge_index=PATH)  # nodes 4 and 5 have no edges
    graphs = [graph(0), isolated]
    explicit = [graph(0, num_nodes=4), Data(x=isolated.x, edge_index=PATH, num_nodes=6)]
    rows = model.embed(graphs, progress=False)
    assert torch.equal(model.embed(explicit, progress=False), rows)
    assert torch.equal(model.embed(Batch.from_data_list(explicit), progress=False), rows)
    nodes = model.embed(isolated, pool="none", progress=False)
    assert nodes.shape == (6, 8) and torch.isfinite(nodes).all()
    assert torch.equal(model.embed(explicit[1], pool="none", node_batch_size=2, progress=False), nodes)


def test_degree_features_take_num_nodes_and_refuse_an_x_that_disagrees():
    """Degree encoders compute their own features, so a featureless graph gives its count as num_nodes;
    an x beside it that has another row count is a graph that contradicts itself."""
    model = encoder("degree")
    featureless = Data(edge_index=PATH, num_nodes=6)  # nodes 4 and 5 isolated
    nodes = model.embed(featureless, pool="none", progress=False)
    assert nodes.shape == (6, 8)
    assert torch.equal(model.embed(Data(x=torch.rand(6, 3), edge_index=PATH), pool="none", progress=False), nodes)
    with pytest.raises(InputError, match=r"^input 0: graph has num_nodes=6 but x of shape \(4, 3\).*or drop x"):
        model.embed(Data(x=torch.rand(4, 3), edge_index=PATH, num_nodes=6), progress=False)
    with pytest.raises(InputError, match=r"refers to node 3 .*\(data.num_nodes is 3\).*set data.num_nodes"):
        model.embed(Data(edge_index=PATH, num_nodes=3), progress=False)


def test_forward_refuses_a_graph_the_processor_did_not_prepare():
    """`enc(data.x, data.edge_index)`, as a PyG model is called, skipped the processor's self-loops
    and feature scaling: cosine 0.08 to `embed` on a MUTAG graph, without a word."""
    model = encoder()
    with pytest.raises(InputError, match=r"edge_index has 0 self-loops for 4 nodes, where the processor gives each "
                                         r"node one, .*; forward takes graphs as the processor prepares them: call "
                                         r"enc\(\*\*enc.processor\(graphs\)\), or enc.embed\(graphs\)"):
        model(graph().x, PATH)
    for given in (graph(), Batch.from_data_list([graph()])):  # PyG's model(data); was "missing edge_index"
        with pytest.raises(InputError, match=rf"forward takes the processor's tensors, not {type(given).__name__} \(a "
                                             r"graph\?\) without edge_index: call enc\(\*\*enc.processor\(graphs\)\)"):
            model(given)
    with torch.no_grad():
        prepared = model(**model.processor([graph()])).pooled
    assert torch.allclose(prepared, model.embed(graph(), progress=False), atol=1e-6)
    model.processor.feature_norm = "row"  # as the Planetoid checkpoints: each node's features divided by their sum
    loops = torch.cat([PATH, torch.arange(4).repeat(2, 1)], dim=1)
    with pytest.raises(InputError, match=r"x's rows sum to 2.\d+ at most, where the processor divides each node's "):
        model(graph().x, loops)
    with torch.no_grad():
        assert torch.allclose(model(**model.processor([graph()])).pooled, model.embed(graph(), progress=False),
                              atol=1e-6)


@pytest.mark.parametrize("call", EMBED_CALLS)
def test_complex_node_features_are_refused(call):
    """torch cast them to real with only a UserWarning, so a complex graph embedded as its real part
    alone; audio and image inputs refuse complex numbers."""
    complex_graph = Data(x=graph().x.to(torch.complex64) * (1 + 1j), edge_index=PATH)
    with pytest.raises(InputError, match=r"complex node features \(dtype torch.complex64\); pass real ones"):
        encoder().embed(complex_graph, progress=False, **EMBED_CALLS[call])
