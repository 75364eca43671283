"""Degree features: GraphMAE's node features for graph sets that have none (IMDB, COLLAB,
REDDIT), computed by the processor so a featureless user graph embeds as the set did."""

from __future__ import annotations

import pytest
import torch
from helpers import shared_path
from torch.nn.functional import one_hot
from torch_geometric.data import Data
from torch_geometric.utils import degree, remove_self_loops, to_undirected

from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.processing import GraphProcessor
from zoo.errors import InputError

STAR = torch.tensor([[0, 0, 0, 0, 1, 1, 2], [1, 2, 3, 4, 0, 0, 2]])  # node 0 has 4 neighbours; a repeat, a loop


def test_degrees_count_distinct_neighbours_and_clip_at_the_width():
    processor = GraphProcessor(in_dim=3, node_features="degree")
    x = processor.prepare(Data(edge_index=STAR, num_nodes=6)).x
    assert x.shape == (6, 3)
    assert x.argmax(dim=1).tolist() == [2, 1, 1, 1, 1, 0]  # 4 -> clipped to 2; the loop on 2 is not counted
    assert torch.equal(x.sum(dim=1), torch.ones(6))


def test_given_features_are_replaced_by_degrees():
    processor = GraphProcessor(in_dim=5, node_features="degree")
    with_x = Data(x=torch.rand(6, 11), edge_index=STAR)
    assert torch.equal(processor.prepare(with_x).x, processor.prepare(Data(edge_index=STAR, num_nodes=6)).x)


def test_degree_processors_refuse_graphs_they_cannot_count():
    with pytest.raises(InputError, match="needs in_dim"):
        GraphProcessor(node_features="degree")
    with pytest.raises(InputError, match="node_features='labels'"):
        GraphProcessor(in_dim=3, node_features="labels")
    processor = GraphProcessor(in_dim=3, node_features="degree")
    with pytest.raises(InputError, match="graph has no nodes"):
        processor.prepare(Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=0))
    with pytest.raises(InputError, match="refers to node 5"):
        processor.prepare(Data(edge_index=torch.tensor([[0], [5]]), num_nodes=3))
    with pytest.raises(InputError, match="not supported"):
        processor.prepare({"edge_index": STAR})


def test_a_featureless_graph_embeds_like_its_loaded_copy():
    torch.manual_seed(0)
    encoder = GraphMAEEncoder(GraphMAEConfig(in_dim=4, num_hidden=8, num_layers=2, encoder_type="gin",
                                             norm="batchnorm", pooling="mean"),
                              GraphProcessor(in_dim=4, node_features="degree")).eval()
    featureless = [Data(edge_index=STAR, num_nodes=6), Data(edge_index=torch.empty(2, 0, dtype=torch.long),
                                                            num_nodes=1)]
    rows = encoder.embed(featureless, progress=False)
    assert rows.shape == (2, 8) and torch.isfinite(rows).all()
    # the copy a TU loader gives: one-hot counts of distinct neighbours, clipped at in_dim - 1 (the centre has 4)
    undirected, _ = remove_self_loops(to_undirected(STAR, num_nodes=6))
    counts = degree(undirected[0], 6).long()
    assert counts.tolist() == [4, 1, 1, 1, 1, 0]
    loaded = [Data(x=one_hot(counts.clamp(max=3), 4).float(), edge_index=STAR),
              Data(x=one_hot(torch.zeros(1, dtype=torch.long), 4).float(), edge_index=featureless[1].edge_index)]
    assert torch.allclose(rows, encoder.embed(loaded, progress=False), atol=1e-6)  # measured 0.0


@pytest.mark.parametrize("name, width", [("imdb-binary", 136), ("imdb-multi", 89)])
def test_imdb_loader_and_processor_agree_on_the_recipe_width(name, width):
    """The loader's one-hot degrees have the width the recipe's in_dim says, and the processor
    gives the same features from the edges alone."""
    import json
    from pathlib import Path

    from modalities.graphs.datasets import load_dataset

    graphs = load_dataset(name, shared_path("data", "tu"))
    recipe = json.loads((Path(__file__).parents[3] / "hub_configs" / f"graphmae-{name}.json").read_text())
    assert graphs[0].x.shape[1] == recipe["architecture"]["in_dim"] == width
    processor = GraphProcessor.from_dict({**recipe["preprocessing"], "in_dim": width})
    assert all(torch.equal(processor.prepare(Data(edge_index=g.edge_index, num_nodes=g.num_nodes)).x, g.x)
               for g in graphs[:200])


def test_a_node_count_guessed_from_raw_ids_is_refused():
    """Without x or num_nodes, PyG counts max id + 1 nodes: ids from 1000 up embedded 1000 phantom
    isolated nodes into the readout (off by 0.057 from the renumbered graph's, whose values reach 0.29),
    and ids from 1e12 up raised PyG's "'coalesce' will result in an overflow"."""
    torch.manual_seed(0)
    encoder = GraphMAEEncoder(GraphMAEConfig(in_dim=4, num_hidden=8, num_layers=2, encoder_type="gin",
                                             norm="batchnorm", pooling="mean"),
                              GraphProcessor(in_dim=4, node_features="degree")).eval()
    renumbered = encoder.embed(Data(edge_index=STAR, num_nodes=5), progress=False)
    with pytest.raises(InputError, match=r"PyG counts 1005 nodes from its largest node id \(1004\), but only 5 ids "
                                         r"appear in edge_index: the other 1000 .* Renumber the nodes from 0"):
        encoder.embed(Data(edge_index=STAR + 1000), progress=False)
    with pytest.raises(InputError, match=r"PyG counts 1000000000005 nodes .* only 5 ids appear"):
        encoder.embed(Data(edge_index=STAR + 10**12), progress=False)
    ids, edge_index = (STAR + 1000).unique(return_inverse=True)
    assert torch.equal(encoder.embed(Data(edge_index=edge_index), progress=False), renumbered)
    with_isolated = Data(edge_index=torch.tensor([[0, 2], [2, 0]]), num_nodes=3)  # node 1: isolated, and said so
    assert encoder.embed(with_isolated, pool="none", progress=False).shape == (3, 8)


def test_degrees_beyond_the_cap_get_their_own_last_column(tmp_path, monkeypatch):
    """A featureless TU set whose busiest node has 450 neighbours gets one-hot degrees 0..400
    (MAX_DEGREE) as GraphMAE: 401 columns, degrees of 400 and above in the last, the features the
    processor makes at in_dim 401 (400 columns would clip the hub at 399)."""
    from modalities.graphs.datasets import MAX_DEGREE, load_dataset

    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    raw = tmp_path / "data" / "HUB" / "raw"
    raw.mkdir(parents=True)
    leaves = 450
    edges = [f"{a}, {b}" for leaf in range(2, leaves + 2) for a, b in ((1, leaf), (leaf, 1))]
    edges += [f"{leaves + 2}, {leaves + 3}", f"{leaves + 3}, {leaves + 2}"]  # a second graph: one edge
    for suffix, lines in (("A", edges), ("graph_indicator", ["1"] * (leaves + 1) + ["2", "2"]),
                          ("graph_labels", ["1", "2"])):
        (raw / f"HUB_{suffix}.txt").write_text("\n".join(lines) + "\n")
    graphs = load_dataset("HUB", tmp_path / "data")
    assert graphs[0].x.shape[1] == MAX_DEGREE + 1 == 401
    assert graphs[0].x.argmax(dim=1)[:3].tolist() == [MAX_DEGREE, 1, 1]
    processor = GraphProcessor(in_dim=MAX_DEGREE + 1, node_features="degree")
    assert all(torch.equal(processor.prepare(Data(edge_index=g.edge_index, num_nodes=g.num_nodes)).x, g.x)
               for g in graphs)
