"""A graph encoder's readout (mean, sum, max) is taken batch by batch, as the base class pools, where
`embed` took every graph's node rows (pool="none") and read them out at the end, holding them all:
graphmae-reddit-binary's architecture on 2,000 graphs of 400 nodes took +1,885 MB for 3.9 MiB of rows.
The rows are bit for bit those of the node rows read out one graph at a time."""

from __future__ import annotations

import gc

import pytest
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric.loader import DataLoader

from modalities.graphs.encoder import readout
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from zoo.encoder import _Accumulator

WIDTH = 16  # the embedding width, which the inputs' 6 features do not share, so node rows are told apart
CONFIG = GraphMAEConfig(in_dim=6, num_hidden=WIDTH, num_layers=3, encoder_type="gin", norm="batchnorm",
                        pooling="sum", residual=True)


class GraphSet(InMemoryDataset):
    """A PyG dataset of the given graphs, as TUDataset is one."""

    def __init__(self, graphs: list[Data]) -> None:
        super().__init__()
        self.data, self.slices = self.collate(graphs)


def encoder() -> GraphMAEEncoder:
    torch.manual_seed(0)
    model = GraphMAEEncoder(CONFIG).eval()
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm1d):  # non-trivial running statistics
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    return model


def graphs(count: int, nodes: int | None = None) -> list[Data]:
    generator = torch.Generator().manual_seed(0)
    made = []
    for index in range(count):
        size = nodes or 2 + index % 11
        made.append(Data(x=torch.rand(size, 6, generator=generator),
                         edge_index=torch.randint(0, size, (2, 2 * size), generator=generator)))
    return made


@pytest.mark.parametrize("pool", ["mean", "sum", "max"])
def test_readout_rows_equal_the_node_rows_read_out(pool):
    model, items = encoder(), graphs(13)
    forms = {"list": items, "Batch": Batch.from_data_list(items), "DataLoader": DataLoader(items, batch_size=5),
             "dataset": GraphSet(items)}
    for layer in (None, 0, 2, [1, 3], [3]):
        for batch_size in (None, 1, 4, 64):
            nodes = model.embed(items, layer=layer, pool="none", batch_size=batch_size, progress=False)
            expected = torch.stack([readout(rows, pool) for rows in nodes])
            for form, inputs in forms.items():
                rows = model.embed(inputs, layer=layer, pool=pool, batch_size=batch_size, progress=False)
                assert torch.equal(rows, expected), (form, layer, batch_size)  # max abs diff 0.0
    assert torch.equal(model.embed(items, progress=False), model.embed(items, pool="sum", progress=False))


def node_rows_alive() -> int:
    """Rows of the embedding width in the float tensors alive now (weights are Parameters, left out),
    after a collection, so that garbage awaiting one is not counted."""
    gc.collect()
    return sum(item.numel() // WIDTH for item in gc.get_objects()
               if type(item) is torch.Tensor and item.is_floating_point() and item.dim() >= 2
               and item.shape[-1] == WIDTH)


@pytest.mark.parametrize("layer,kept", [(None, 1), ([1, 2, 3], 3)])
def test_readout_holds_one_batch_of_node_rows(layer, kept):
    """Counted before each forward pass: alive are the rows read out so far (`kept` a graph) and
    the last batch's node-level layer outputs and padded hidden states (num_layers each) and its
    `kept` selected layers; the bound takes that batch twice over (after the fix: 457 and 1,363).
    Holding every graph's node rows, the counts reached 3,125 and 9,367 (95 graphs before the last
    pass, 30 nodes each, `kept` rows a node)."""
    model, items = encoder(), graphs(96, nodes=30)
    counts = []
    model.register_forward_pre_hook(lambda *_: counts.append(node_rows_alive()))
    rows = model.embed(items, layer=layer, pool="mean", batch_size=4, progress=False)
    assert rows.shape[0] == 96 and len(counts) == 24
    bound = kept * len(items) + 2 * (2 * CONFIG.num_layers + kept) * 4 * 30  # 1,776 and 2,448
    assert max(counts) <= bound, (counts, bound)


@pytest.mark.parametrize("pool", ["sum", "max"])
def test_sum_and_max_join_pieces_in_any_order(pool):
    """A long item's windows come in any order; the running sum and max join them as the
    readout of all their tokens at once (max exactly, sum to float rounding, 1e-6)."""
    tokens = torch.randn(2, 10, 4, generator=torch.Generator().manual_seed(0))
    accumulator = _Accumulator(pool)
    for order in (2, 0, 1):
        accumulator.add(order, tokens[:, 4 * order:4 * order + 4])
    expected = readout(tokens, pool)
    assert accumulator.result().shape == (2, 4)
    assert torch.allclose(accumulator.result(), expected, rtol=0, atol=1e-6 if pool == "sum" else 0)
