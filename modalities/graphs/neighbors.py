"""Every in-neighbour of a batch of nodes, without sampling: exact subgraphs of a large graph.

`GraphEncoder.embed(..., node_batch_size=B)` runs one layer at a time over batches of B
nodes with their one-hop in-neighbourhoods (`FullNeighborSampler(data, 1)`), PyG's
layer-wise inference. `node_loader` gives seed batches with their whole L-hop
neighbourhoods instead, on which an L-layer encoder's seed outputs are exact too, e.g. to
train a node head on a graph too large to run at once; without locality those
neighbourhoods cover most of the graph for every batch, which is why inference does not
use it.

PyG's `NeighborLoader` does this with `num_neighbors=[-1] * L`, but its sampler needs the
compiled `pyg-lib` or `torch-sparse`, which have no wheels for every torch on PyPI. When
neither is importable the same loader class, PyG's `NodeLoader`, runs with
`FullNeighborSampler`, a pure-torch sampler over a CSC index of the graph.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch_geometric.loader import NeighborLoader, NodeLoader
from torch_geometric.sampler import BaseSampler, NodeSamplerInput, SamplerOutput


def has_compiled_sampler() -> bool:
    """Whether PyG's own NeighborLoader can sample here."""
    return any(importlib.util.find_spec(name) is not None for name in ("pyg_lib", "torch_sparse"))


def node_loader(data: Any, num_layers: int, batch_size: int, **kwargs: Any) -> Any:
    """A loader over every node of `data` in batches of `batch_size` seeds with full L-hop neighbourhoods.

    Each batch is a `Data` whose first `batch.batch_size` nodes are the seeds and whose
    `n_id` maps local nodes to the graph's.
    """
    if has_compiled_sampler():
        return NeighborLoader(data, num_neighbors=[-1] * num_layers, batch_size=batch_size, **kwargs)
    return NodeLoader(data, node_sampler=FullNeighborSampler(data, num_layers), batch_size=batch_size, **kwargs)


class FullNeighborSampler(BaseSampler):
    """Every in-neighbour of every node up to `num_layers` hops, with no sampling.

    Output nodes are the seeds first, then each hop's new nodes; the edges are all edges
    into nodes fewer than `num_layers` hops away (the ones the encoder's layers read).
    """

    def __init__(self, data: Any, num_layers: int) -> None:
        self.num_nodes = data.num_nodes
        self.num_layers = num_layers
        source, target = data.edge_index
        order = torch.argsort(target, stable=True)
        self.perm = order
        self.sources, self.targets = source[order], target[order]
        self.rowptr = torch.zeros(self.num_nodes + 1, dtype=torch.long)
        self.rowptr[1:] = torch.cumsum(torch.bincount(target, minlength=self.num_nodes), 0)

    def in_edges(self, nodes: torch.Tensor) -> torch.Tensor:
        """Positions (in CSC order) of every edge whose target is in `nodes`."""
        starts, ends = self.rowptr[nodes], self.rowptr[nodes + 1]
        counts = ends - starts
        offsets = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)
        return torch.arange(int(counts.sum())) + offsets

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs: Any) -> SamplerOutput:
        seeds = index.node
        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        local[seeds] = torch.arange(seeds.numel())
        nodes, frontier, edges = [seeds], seeds, []
        count = seeds.numel()
        for _ in range(self.num_layers):
            positions = self.in_edges(frontier)
            edges.append(positions)
            fresh = torch.unique(self.sources[positions])
            fresh = fresh[local[fresh] < 0]
            local[fresh] = torch.arange(count, count + fresh.numel())
            count += fresh.numel()
            nodes.append(fresh)
            frontier = fresh
        positions = torch.cat(edges)
        return SamplerOutput(
            node=torch.cat(nodes), row=local[self.sources[positions]], col=local[self.targets[positions]],
            edge=self.perm[positions], num_sampled_nodes=[n.numel() for n in nodes],
            num_sampled_edges=[e.numel() for e in edges], metadata=(index.input_id, index.time),
        )

    def sample_from_edges(self, index: Any, neg_sampling: Any = None) -> Any:
        raise NotImplementedError("FullNeighborSampler samples around seed nodes only")

    @property
    def edge_permutation(self) -> None:
        return None
