"""GraphMAE encoders through the shared API: node and graph embeddings, mini-batch
inference, batch invariance, saving, and bad input."""

from __future__ import annotations

import importlib.util

import networkx
import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader

import zoo
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.neighbors import FullNeighborSampler
from zoo.errors import ConfigError, InputError

SMALL_GAT = GraphMAEConfig(in_dim=6, num_hidden=8, num_heads=2, num_layers=2)
SMALL_GIN = GraphMAEConfig(in_dim=6, num_hidden=8, num_layers=3, encoder_type="gin", norm="batchnorm",
                           pooling="sum", residual=True)


def random_graph(num_nodes: int, num_edges: int, in_dim: int = 6, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(x=torch.rand(num_nodes, in_dim, generator=g),
                edge_index=torch.randint(0, num_nodes, (2, num_edges), generator=g))


def encoder(config: GraphMAEConfig = SMALL_GAT) -> GraphMAEEncoder:
    torch.manual_seed(0)
    model = GraphMAEEncoder(config).eval()
    if config.norm == "batchnorm":  # non-trivial running statistics
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.5, 2.0)
    return model


def test_node_embeddings_of_one_graph_are_one_tensor():
    graph = random_graph(30, 80)
    nodes = encoder().embed(graph, progress=False)
    assert nodes.shape == (30, 8) and torch.isfinite(nodes).all()
    layers = encoder().embed(graph, layer=[1, 2], progress=False)
    assert layers.shape == (2, 30, 8)  # (K, N, D), as every encoder's (K, T, D); it was (N, K, D)
    assert torch.allclose(layers[1], nodes)
    assert encoder().embed(graph, layer=0, progress=False).shape == (30, 6)
    with pytest.raises(InputError, match="different widths"):
        encoder().embed(graph, layer="all", progress=False)


@pytest.mark.parametrize("config", [SMALL_GAT, SMALL_GIN], ids=["gat", "gin"])
def test_mini_batch_inference_equals_the_full_graph(config):
    graph = random_graph(300, 900, seed=3)
    model = encoder(config)
    full = model.embed(graph, progress=False)
    batched = model.embed(graph, node_batch_size=37, progress=False)
    assert torch.allclose(batched, full, rtol=1e-5, atol=1e-5)  # float32 sums in another order
    several = model.embed(graph, layer=[1, 3] if config.num_layers == 3 else [1, 2], node_batch_size=64,
                          progress=False)
    last = several[-1] if model.config.pooling == "none" else several[:, -1]  # nodes (K, N, D); readouts (G, K, D)
    assert torch.allclose(last, full, rtol=1e-5, atol=1e-5)


def test_full_neighbor_sampler_takes_exactly_the_l_hop_in_neighbourhood():
    edges = torch.tensor([[1, 2, 3, 4, 5], [0, 1, 2, 3, 4]])  # a path 5 -> 4 -> ... -> 0
    data = Data(x=torch.zeros(6, 1), edge_index=edges)
    batch = next(iter(NodeLoader(data, node_sampler=FullNeighborSampler(data, 2), batch_size=1)))
    assert batch.n_id.tolist() == [0, 1, 2] and batch.batch_size == 1
    assert sorted(map(tuple, batch.n_id[batch.edge_index].T.tolist())) == [(1, 0), (2, 1)]
    assert isinstance(FullNeighborSampler(data, 2), FullNeighborSampler)


@pytest.mark.skipif(not any(importlib.util.find_spec(name) for name in ("pyg_lib", "torch_sparse")),
                    reason="PyG's NeighborLoader needs pyg-lib or torch-sparse")
def test_pyg_neighbor_loader_gives_the_same_embeddings():
    from torch_geometric.loader import NeighborLoader

    graph = random_graph(200, 600, seed=4)
    model = encoder()
    prepared = model.processor.prepare(graph)
    full = model.embed(graph, progress=False)
    for batch in NeighborLoader(prepared, num_neighbors=[-1, -1], batch_size=50):
        out = model(x=batch.x, edge_index=batch.edge_index).last_hidden_state[0, : batch.batch_size]
        assert (out - full[batch.n_id[: batch.batch_size]]).abs().max() < 1e-5


@pytest.mark.parametrize("config", [SMALL_GAT, SMALL_GIN], ids=["gat", "gin"])
def test_graph_readouts_do_not_depend_on_the_batch(config):
    graphs = [random_graph(n, 3 * n, seed=n) for n in (5, 17, 9, 30, 1)]
    model = encoder(config)
    alone = torch.cat([model.embed([g], pool="max", progress=False) for g in graphs])
    together = model.embed(graphs, pool="max", batch_size=3, progress=False)
    assert together.shape == (5, 8) and (together - alone).abs().max() < 1e-5
    nodes = model.embed(graphs, pool="none", batch_size=4, progress=False)
    assert [n.shape[0] for n in nodes] == [5, 17, 9, 30, 1]
    assert torch.allclose(model.embed(graphs, pool="mean", progress=False)[1], nodes[1].mean(0), atol=1e-6)
    assert torch.allclose(model.embed(graphs, pool="sum", progress=False)[3], nodes[3].sum(0), atol=1e-4)


def test_default_pool_follows_the_checkpoint():
    graphs = [random_graph(7, 20, seed=1), random_graph(4, 8, seed=2)]
    assert encoder(SMALL_GIN).embed(graphs, progress=False).shape == (2, 8)  # pooling="sum"
    assert [n.shape for n in encoder().embed(graphs, progress=False)] == [(7, 8), (4, 8)]


def test_forward_pads_graphs_and_masks_the_padding():
    model = encoder()
    batch = model.preprocess([random_graph(3, 4), random_graph(5, 9)])
    out = model(**batch, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 5, 8) and out.mask.sum(1).tolist() == [3, 5]
    assert out.pooled.shape == (2, 8) and len(out.hidden_states) == 3
    assert out.hidden_states[0].shape == (2, 5, 6)


def test_edges_are_made_undirected_with_one_self_loop_per_node():
    model = encoder()
    graph = random_graph(20, 40, seed=5)
    undirected = Data(x=graph.x, edge_index=torch.cat([graph.edge_index, graph.edge_index.flip(0)], 1))
    looped = Data(x=graph.x, edge_index=torch.cat([graph.edge_index, torch.arange(20).repeat(2, 1)], 1))
    reference = model.embed(graph, progress=False)
    assert torch.allclose(model.embed(undirected, progress=False), reference, atol=1e-6)
    assert torch.allclose(model.embed(looped, progress=False), reference, atol=1e-6)
    isolated = Data(x=torch.rand(4, 6), edge_index=torch.empty(2, 0, dtype=torch.long))
    assert torch.isfinite(model.embed(isolated, progress=False)).all()


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_sparse_node_features_embed_as_their_dense_values():
    """Bag-of-words features stored sparse (as Cora's are) raised torch's NotImplementedError (COO) or
    "unsupported tensor layout" (CSR)."""
    model = encoder()
    graph = random_graph(20, 40, seed=5)
    graph.x = graph.x * (graph.x > 0.5)
    reference = model.embed(graph, progress=False)
    for sparse in (graph.x.to_sparse(), graph.x.to_sparse_csr()):
        assert torch.equal(model.embed(Data(x=sparse, edge_index=graph.edge_index), progress=False), reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphs_on_a_gpu_embed_as_on_the_cpu():
    """A graph on a GPU met the CPU neighbour sampler (node_batch_size) and CPU feature statistics."""
    from modalities.graphs.processing import GraphProcessor

    model = encoder()
    graph = random_graph(40, 100)
    reference = model.embed(graph, progress=False)
    for inputs in (graph.to("cuda"), Data(x=graph.x, edge_index=graph.edge_index.cuda())):
        assert torch.allclose(model.embed(inputs, progress=False), reference, atol=1e-6)
        assert torch.allclose(model.embed(inputs, node_batch_size=8, progress=False), reference, atol=1e-5)
    assert model.embed([graph, graph.to("cuda")], pool="mean", progress=False).shape == (2, 8)
    standard = GraphProcessor(in_dim=6, feature_norm="standard").fitted(graph)
    assert torch.equal(standard.prepare(graph.to("cuda")).x, standard.prepare(graph).x)


def test_save_and_load_round_trip(tmp_path):
    model = encoder(SMALL_GIN)
    model.save_pretrained(tmp_path / "gin")
    loaded = zoo.load(tmp_path / "gin")
    graph = random_graph(12, 30)
    assert torch.equal(model.embed(graph, progress=False), loaded.embed(graph, progress=False))


@pytest.mark.parametrize("graph,message", [
    (Data(x=torch.rand(4, 6)), "no `edge_index`"),
    (Data(edge_index=torch.zeros(2, 1, dtype=torch.long), num_nodes=2), "no node features"),
    (Data(x=torch.rand(4, 5), edge_index=torch.zeros(2, 1, dtype=torch.long)), "5 node features but"),
    (Data(x=torch.empty(0, 6), edge_index=torch.empty(2, 0, dtype=torch.long)), "num_nodes > 0"),
    (Data(x=torch.full((2, 6), float("nan")), edge_index=torch.zeros(2, 1, dtype=torch.long)), "NaN"),
    (Data(x=torch.rand(2, 6), edge_index=torch.tensor([[0], [7]])), "refers to node 7"),
    (Data(x=torch.rand(3, 6), edge_index=torch.tensor([[-1, 0], [2, 1]])), r"refers to node -1 \(1 such entries\)"),
    (Data(x=torch.rand(2, 6), edge_index=torch.zeros(3, 1, dtype=torch.long)), r"shape \(3, 1\)"),
    ("graph.pt", "not supported"),
    (Data(x=np.ones((2, 6), np.float32), edge_index=torch.zeros(2, 1, dtype=torch.long)),
     "x of type ndarray; node features are a torch tensor"),
    (networkx.path_graph(3), "networkx Graph is not a graph input .*from_networkx"),
    (Data(x=torch.rand(2, 6), edge_index=np.zeros((2, 1), np.int64)), "edge_index is a ndarray; .*torch.as_tensor"),
    (Data(x=torch.rand(2, 6), edge_index=torch.ones(2, 1, dtype=torch.long).to_sparse()),
     "edge_index is a torch.sparse_coo tensor; .*to_edge_index"),
    (Data(x=torch.rand(2, 6), edge_index=torch.ones(2, 1, dtype=torch.bool)), "dtype torch.bool; .* integers"),
], ids=["no-edges", "no-x", "width", "empty", "nan", "out-of-range", "negative", "edge-shape", "not-a-graph",
        "numpy-x", "networkx", "numpy-edges", "sparse-edges", "bool-edges"])
def test_bad_graphs_raise_input_errors(graph, message):
    with pytest.raises(InputError, match=message):
        encoder().embed(graph, progress=False)


def test_hetero_graphs_are_refused_by_name():
    """A HeteroData passed alone raised a bare NotImplementedError (from iterating it)."""
    from torch_geometric.data import HeteroData

    graph = HeteroData()
    graph["paper"].x = torch.rand(3, 6)
    graph["paper", "cites", "paper"].edge_index = torch.tensor([[0, 1], [1, 2]])
    for inputs in (graph, [graph]):
        with pytest.raises(InputError, match=r"HeteroData graph \(node types \['paper'\]\) .*to_homogeneous"):
            encoder().embed(inputs, progress=False)


def test_bad_configs_and_options_are_refused():
    with pytest.raises(ConfigError, match="multiple of num_heads"):
        GraphMAEConfig(num_hidden=10, num_heads=4)
    with pytest.raises(ConfigError, match="encoder_type"):
        GraphMAEConfig(encoder_type="gcn")
    with pytest.raises(ConfigError, match="pool='cls': GraphMAEEncoder has no cls token"):
        encoder().embed(random_graph(3, 3), pool="cls", progress=False)
    with pytest.raises(ConfigError, match="pool='first' is not one of"):
        encoder().embed(random_graph(3, 3), pool="first", progress=False)
    with pytest.raises(InputError, match="single Data"):
        encoder().embed([random_graph(3, 3)], node_batch_size=2, progress=False)
    for sizes, message in [({"batch_size": 0}, "batch_size=0"), ({"node_batch_size": -4}, "node_batch_size=-4")]:
        with pytest.raises(ConfigError, match=f"{message}; use a positive number"):  # a setting, as pool=
            encoder().embed(random_graph(3, 3), progress=False, **sizes)


def test_graph_sets_with_one_node_graphs_empty_lists_and_mixed_widths():
    """One-node graphs embed (alone or batched, the same row); an empty list or a graph of another width is an
    InputError naming it."""
    model = encoder(SMALL_GIN)
    lone = Data(x=torch.rand(1, 6), edge_index=torch.empty(2, 0, dtype=torch.long))
    rows = model.embed([random_graph(5, 8), lone], progress=False)
    assert rows.shape == (2, 8) and torch.allclose(rows[1], model.embed(lone, progress=False)[0], atol=1e-6)
    with pytest.raises(InputError, match="got no inputs"):
        model.embed([], progress=False)
    with pytest.raises(InputError, match="input 1: graph has 5 node features but this encoder was trained on 6"):
        model.embed([random_graph(4, 4), random_graph(4, 4, in_dim=5)], progress=False)


def test_heads_take_graphs_and_mix_only_layers_of_one_width():
    """A head on a graph encoder: "weighted" mixes the hidden layers (the input features, layer 0,
    have another width), and a head on layer 0 gets the input width; both learn in a step."""
    import zoo

    graphs = [random_graph(5, 8, seed=0), random_graph(4, 6, seed=1)]
    for layer, width, mixed in (("weighted", 8, [1, 2, 3]), (0, 6, None), (None, 8, None)):
        head = zoo.for_classification(encoder(SMALL_GIN), num_labels=2, layer=layer, freeze=False)
        assert head.head.in_features == width
        assert (head.layer_weights.indices if mixed else None) == mixed
        output = head(**head.processor(graphs), labels=torch.tensor([0, 1]))
        output.loss.backward()
        assert output.logits.shape == (2, 2) and head.head.weight.grad.abs().sum() > 0


def test_pyg_batches_and_loaders_are_their_graphs():
    """A `Batch` (what PyG's DataLoader yields) or a DataLoader embeds as its graphs, one row each,
    and a head's processor takes a Batch as its graphs, as PyG training loops pass them."""
    import zoo
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader

    model = encoder(SMALL_GIN)
    graphs = [random_graph(n, 2 * n, seed=n) for n in (3, 5, 4)]
    rows = model.embed(graphs, progress=False)
    for inputs in (Batch.from_data_list(graphs), DataLoader(graphs, batch_size=2)):
        assert [graph.num_nodes for graph in model.as_item_list(inputs)] == [3, 5, 4]
        assert torch.equal(model.embed(inputs, progress=False), rows)
    nodes = model.embed(Batch.from_data_list(graphs), pool="none", progress=False)
    assert [len(item) for item in nodes] == [3, 5, 4]
    head = zoo.for_classification(model, num_labels=2)
    batch = next(iter(DataLoader(graphs, batch_size=2)))
    assert head(**head.processor(batch), labels=torch.tensor([0, 1])).logits.shape == (2, 2)


def test_forward_refuses_bad_tensors_by_name_and_casts_integer_edges():
    """`forward` met bad tensors deep inside PyG (a width mismatch as a matmul error, float edges
    as a ValueError, no nodes in to_dense_batch), and a `batch` not sorted by graph silently
    dropped nodes from the padded tokens."""
    model = encoder()
    batch = model.preprocess([random_graph(3, 4), random_graph(4, 5, seed=1)])
    with torch.no_grad():
        whole = model(**batch)
        assert torch.equal(model(batch["x"], batch["edge_index"].int(), batch["batch"]).last_hidden_state,
                           whole.last_hidden_state)
        cases = [(dict(x=batch["x"][:, :3]), r"x has shape \(7, 3\); this encoder takes \(num_nodes > 0, 6\)"),
                 (dict(x=batch["x"][:0], edge_index=batch["edge_index"][:, :0], batch=None), r"x has shape \(0, 6\)"),
                 (dict(edge_index=batch["edge_index"].float()), "edge_index has dtype torch.float32"),
                 (dict(edge_index=batch["edge_index"][0]), r"edge_index has shape \(\d+,\); expected \(2, num_edges\)"),
                 (dict(edge_index=batch["edge_index"] + 7), r"node indices outside \[0, 6\] of x's 7 nodes"),
                 (dict(batch=torch.tensor([0, 1, 0, 1, 0, 1, 1])), "sorted by graph"),
                 (dict(x=batch["x"].index_put((torch.tensor(5), torch.tensor(2)), torch.tensor(float("inf")))),
                  r"NaN or infinite features \(node 5, feature 2\)")]
        for change, message in cases:
            with pytest.raises(InputError, match=message):
                model(**{**batch, **change})
