"""Every in-neighbour of a batch of nodes, without sampling: exact subgraphs of a large graph.

`GraphEncoder.embed(..., node_batch_size=B)` runs one layer at a time over batches of B
nodes with their one-hop in-neighbourhoods (`FullNeighborSampler(data, 1)`), PyG's
layer-wise inference. `FullNeighborSampler` is a pure-torch sampler over a CSC index of
the graph, so that no compiled `pyg-lib` or `torch-sparse` is needed (they have no wheels for
every torch on PyPI); as a PyG `BaseSampler` it also serves PyG's `NodeLoader`, which with
`num_layers=L` gives seed batches with their whole L-hop neighbourhoods.
"""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.sampler import BaseSampler, NodeSamplerInput, SamplerOutput


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
