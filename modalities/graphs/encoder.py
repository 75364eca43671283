"""`GraphEncoder`: what graph families share on top of `zoo.Encoder`.

Tokens are nodes. `forward` takes PyG's `x, edge_index, batch` (a disjoint union of
graphs), runs the family's message-passing layers and pads each graph's nodes into
(B, T, D) with a node mask; `pooled` is the graph readout. `embed` adds what graphs
need beyond the shared contract: node embeddings of one graph as one tensor, sum and
max readouts, and exact mini-batch inference over seed nodes for graphs too large to
run at once.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.data.data import BaseData
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.utils import to_dense_batch

from modalities.graphs.neighbors import node_loader
from modalities.graphs.processing import GraphProcessor
from zoo.encoder import Encoder
from zoo.errors import InputError
from zoo.outputs import EncoderOutput
from zoo.pooling import LayerSpec, check_batch_sizes, is_single_layer, select_layers

#: "none" = one row per node; the others read a graph out into one row
GRAPH_POOLS = ("none", "mean", "sum", "max")
#: graphs per forward pass in `embed` unless the caller says
GRAPH_BATCH_SIZE = 32
READOUTS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


def readout(nodes: torch.Tensor, pool: str) -> torch.Tensor:
    """One graph's (..., N, D) node features -> (..., D)."""
    if pool == "mean":
        return nodes.mean(dim=-2)
    if pool == "sum":
        return nodes.sum(dim=-2)
    return nodes.amax(dim=-2)


class GraphEncoder(Encoder):
    """Base class of graph encoders; subclasses implement `node_layers`.

    The config must have `pooling` ("none" for node-level checkpoints, else the graph
    readout the checkpoint was trained with) and `in_dim`.
    """

    modality = "graph"
    processor_class = GraphProcessor
    pools = GRAPH_POOLS
    embed_batch_size = GRAPH_BATCH_SIZE

    def node_layers(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's node features (N, D), first layer first."""
        raise NotImplementedError

    @property
    def layer_widths(self) -> list[int]:
        """Width of each hidden state: layer 0 is the input features."""
        return [self.config.in_dim] + [self.embed_dim] * self.num_layers

    @property
    def neighbourhood_hops(self) -> int:
        """Hops of in-edges a node's output depends on: one per message-passing layer.
        Layers that normalise by the source's degree (GCN) need one more."""
        return self.num_layers

    @property
    def readout_pool(self) -> str:
        return "mean" if self.config.pooling == "none" else self.config.pooling

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        batch: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Node features of a (batch of) graph(s).

        Args:
            x: (N, in_dim) node features of all graphs (taken in the weights' dtype).
            edge_index: (2, E) edges, source row first, as the processor prepares them.
            batch: (N,) graph index of each node; None for a single graph.
            output_hidden_states: also return every layer; layer 0 is `x` itself, whose
                width is the input feature width, not the embedding width.

        Returns:
            last_hidden_state (B, T, D) with T the largest graph's node count, `mask`
            (B, T), pooled (B, D) the readout of the last layer.
        """
        x = x.to(self.dtype)
        layers = self.node_layers(x, edge_index)
        if batch is None:
            batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        last, mask = to_dense_batch(layers[-1], batch)
        pooled = READOUTS[self.readout_pool](layers[-1], batch)
        hidden = None
        if output_hidden_states:
            hidden = tuple(to_dense_batch(h, batch)[0] for h in [x, *layers[:-1]]) + (last,)
        return EncoderOutput(last_hidden_state=last, mask=mask, pooled=pooled, hidden_states=hidden)

    def as_item_list(self, inputs: Any) -> list[Any]:
        """A `Data` is one graph (PyG makes it iterable over its attributes); a `Batch` (what PyG's
        DataLoader yields), datasets, loaders and lists are many. A `HeteroData` is one item too, which
        the processor refuses by name (iterating it raised a bare NotImplementedError)."""
        if isinstance(inputs, Batch):
            return inputs.to_data_list()
        if isinstance(inputs, BaseData):
            return [inputs]
        if type(inputs).__module__.startswith("networkx"):
            raise InputError(f"a networkx {type(inputs).__name__} is not a graph input (iterating it gives its nodes); "
                             "convert it with torch_geometric.utils.from_networkx(graph) and set data.x")
        return [graph for item in super().as_item_list(inputs)
                for graph in (item.to_data_list() if isinstance(item, Batch) else [item])]

    @torch.no_grad()
    def embed(
        self,
        inputs: Any,
        layer: LayerSpec = None,
        pool: Optional[str] = None,
        batch_size: int = GRAPH_BATCH_SIZE,
        node_batch_size: Optional[int] = None,
        device: Optional[str | torch.device] = None,
        progress: bool = True,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Embed graphs: node embeddings, or one readout row per graph.

        Args:
            inputs: a `Data`, a list of them, a PyG dataset, or a `Batch` or `DataLoader` (their graphs).
                Only `x` and `edge_index` are read: `edge_attr` and `edge_weight` are ignored, as the
                checkpoints were trained on unweighted edges.
            layer: None (last), an int (0 = input features), a list of ints or "all"
                (layers of the same width only).
            pool: None for the checkpoint's own ("none" for node-level checkpoints),
                "none" for node embeddings, or a readout: "mean", "sum" or "max".
            batch_size: graphs per forward pass.
            node_batch_size: embed one large graph this many seed nodes at a time, each
                with its whole neighbourhood (exactly the full-graph result, in bounded memory).
            device: where to run; progress: show a tqdm bar.

        Returns:
            pool="none": a single graph gives (N, D) (or (N, K, D) for several layers),
            several graphs a list of those; a readout gives (num_graphs, D) or (num_graphs, K, D).
        """
        check_batch_sizes(batch_size=batch_size, node_batch_size=node_batch_size)
        pool = self.config.pooling if pool is None else pool
        indices = self.check_embed_options(layer, pool)
        widths = self.layer_widths
        if indices is not None and len({widths[i] for i in indices}) > 1:
            raise InputError(
                f"layer={layer!r} selects hidden states of different widths {[widths[i] for i in indices]} "
                "(layer 0 is the input features); select layers of one width, or one layer at a time"
            )
        single = isinstance(inputs, Data) and not isinstance(inputs, Batch)
        graphs = self.as_item_list(inputs)
        if node_batch_size is not None:
            if not single:
                raise InputError("node_batch_size embeds one large graph in pieces; pass a single Data")
            nodes = [self.embed_nodes(graphs[0], indices, node_batch_size, device, progress)]
        else:
            nodes = super().embed(graphs, layer=indices, pool="none", batch_size=batch_size, device=device,
                                  progress=progress)
            nodes = [n.unsqueeze(0) for n in nodes] if indices is None else nodes
        squeeze = is_single_layer(layer)
        if pool == "none":
            nodes = [n[0] if squeeze else n.transpose(0, 1) for n in nodes]
            return nodes[0] if single else nodes
        rows = torch.stack([readout(n, pool) for n in nodes])
        return rows[:, 0] if squeeze else rows

    def embed_nodes(self, graph: Data, indices, node_batch_size: int, device, progress: bool) -> torch.Tensor:
        """(K, N, D) node features of one graph, computed a batch of seed nodes at a time."""
        prepared = self.processor.prepare(graph)
        result = None
        loader = node_loader(prepared, self.neighbourhood_hops, node_batch_size)
        with self.embedding(device), self.progress_bar(len(loader), progress, unit="batch") as bar:
            for batch in loader:
                output = self(**self.to_device({"x": batch.x, "edge_index": batch.edge_index}),
                              output_hidden_states=indices is not None)
                features = select_layers(output, indices)[0][:, : batch.batch_size].float().cpu()
                if result is None:
                    result = torch.empty(features.shape[0], prepared.num_nodes, features.shape[-1])
                result[:, batch.n_id[: batch.batch_size]] = features
                bar.update(1)
        return result
