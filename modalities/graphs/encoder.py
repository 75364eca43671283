"""`GraphEncoder`: what graph families share on top of `zoo.Encoder`.

Tokens are nodes. `forward` takes PyG's `x, edge_index, batch` (a disjoint union of
graphs), runs the family's message-passing layers and pads each graph's nodes into
(B, T, D) with a node mask; `pooled` is the graph readout. `embed` adds what graphs
need beyond the shared contract: node embeddings of one graph as one tensor, sum and
max readouts, and exact layer-wise inference for graphs too large to run at once.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.data.data import BaseData
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.sampler import NodeSamplerInput
from torch_geometric.utils import to_dense_batch

from modalities.graphs.neighbors import FullNeighborSampler
from modalities.graphs.processing import GraphProcessor, check_index_layout, graphs_of
from zoo.encoder import Encoder
from zoo.errors import InputError
from zoo.numerics import cast_input
from zoo.outputs import EncoderOutput
from zoo.pooling import LayerSpec, check_batch_sizes, is_single_layer
from zoo.processing import first_non_finite

#: "none" = one row per node; the others read a graph out into one row
GRAPH_POOLS = ("none", "mean", "sum", "max")
#: graphs per forward pass in `embed` unless the caller says
GRAPH_BATCH_SIZE = 32
READOUTS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


def check_forward_inputs(x: torch.Tensor, edge_index: torch.Tensor, batch: Optional[torch.Tensor],
                         in_dim: int) -> torch.Tensor:
    """The long edge index of `forward`'s batch, or an `InputError` naming what is wrong: `embed`
    checks each graph, but `forward` met bad tensors deep inside PyG (a width mismatch as a matmul
    error), and a `batch` not sorted by graph silently dropped nodes from the padded tokens."""
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != in_dim:
        raise InputError(f"x has shape {tuple(x.shape)}; this encoder takes (num_nodes > 0, {in_dim}) node features "
                         "(encoder.preprocess(graphs) prepares them)")
    bad = first_non_finite(x)
    if bad is not None:
        raise InputError(f"x holds NaN or infinite features (node {bad[0]}, feature {bad[1]}); clean the node "
                         "features first")
    check_index_layout(edge_index)
    edge_index = edge_index.long()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.shape[0]):
        raise InputError(f"edge_index holds node indices outside [0, {x.shape[0] - 1}] of x's {x.shape[0]} nodes")
    if batch is not None and (batch.shape != x.shape[:1] or (batch[1:] < batch[:-1]).any()):
        raise InputError(f"batch of shape {tuple(batch.shape)} must give each of x's {x.shape[0]} nodes its graph, "
                         "sorted by graph as torch_geometric's Batch.from_data_list makes it (padding into "
                         "(B, T, D) needs each graph's nodes together)")
    return edge_index


def check_prepared(x: torch.Tensor, edge_index: torch.Tensor, processor: Any) -> None:
    """Refuse a graph that did not pass through the processor. `enc(data.x, data.edge_index)`, as
    a PyG model is called, ran the checkpoint without the self-loop per node it was trained with
    (and, for the Planetoid checkpoints, on features not divided by their sum) and gave other
    embeddings without a word: cosine 0.08 to `embed`'s on a MUTAG graph."""
    fix = "forward takes graphs as the processor prepares them: call enc(**enc.processor(graphs)), or enc.embed(graphs)"
    loops = int((edge_index[0] == edge_index[1]).sum())
    if processor.self_loops and loops != x.shape[0]:
        raise InputError(f"edge_index has {loops} self-loops for {x.shape[0]} nodes, where the processor gives each "
                         f"node one, as the checkpoint was trained; {fix}")
    if processor.feature_norm == "row":
        sums = x.sum(dim=1)
        if not bool((((sums - 1).abs() <= 1e-3) | (sums == 0)).all()):
            raise InputError(f"x's rows sum to {float(sums.max()):g} at most, where the processor divides each node's "
                             f"features by their sum, as the checkpoint was trained; {fix}")


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

    def layerwise_edges(self, edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The whole graph's (2, E) edges and (E,) weights (None: unweighted) that every layer reads
        in layer-wise inference. A layer whose weights depend on degrees (GCN) computes them here,
        once on the whole graph, so that a batch's one-hop subgraph reads the same weights."""
        return edge_index, None

    def node_layer(self, index: int, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor],
                   num_targets: int) -> torch.Tensor:
        """Layer `index` (0 = the first message-passing layer) of the first `num_targets` nodes of a
        subgraph holding every in-edge of those nodes (and no other edges): (num_targets, D)."""
        raise NotImplementedError

    @property
    def layer_widths(self) -> list[int]:
        """Width of each hidden state: layer 0 is the input features."""
        return [self.config.in_dim] + [self.embed_dim] * self.num_layers

    @property
    def readout_pool(self) -> str:
        return "mean" if self.config.pooling == "none" else self.config.pooling

    def forward(
        self,
        x: torch.Tensor,
        edge_index: Optional[torch.Tensor] = None,
        batch: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Node features of a (batch of) graph(s).

        Args:
            x: (N, in_dim) node features of all graphs (taken in the weights' dtype).
            edge_index: (2, E) edges, source row first, as the processor prepares them (undirected,
                one self-loop per node; anything else is refused: `enc(**enc.processor(graphs))`).
            batch: (N,) graph index of each node; None for a single graph.
            output_hidden_states: also return every layer; layer 0 is `x` itself, whose
                width is the input feature width, not the embedding width.

        Returns:
            last_hidden_state (B, T, D) with T the largest graph's node count, `mask`
            (B, T), pooled (B, D) the readout of the last layer.
        """
        if not isinstance(x, torch.Tensor) or edge_index is None:  # enc(data), as some PyG models are called
            raise InputError(f"forward takes the processor's tensors, not {type(x).__name__}"
                             f"{'' if isinstance(x, torch.Tensor) else ' (a graph?)'} without edge_index: call "
                             "enc(**enc.processor(graphs)), or enc.embed(graphs) for embeddings")
        edge_index = check_forward_inputs(x, edge_index, batch, self.config.in_dim)
        check_prepared(x, edge_index, self.processor)
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
            return graphs_of(inputs)
        if isinstance(inputs, BaseData):
            return [inputs]
        if type(inputs).__module__.startswith("networkx"):
            raise InputError(f"a networkx {type(inputs).__name__} is not a graph input (iterating it gives its nodes); "
                             "convert it with torch_geometric.utils.from_networkx(graph) and set data.x")
        return [graph for item in super().as_item_list(inputs)
                for graph in (graphs_of(item) if isinstance(item, Batch) else [item])]

    @torch.no_grad()
    def embed(
        self,
        inputs: Any,
        layer: LayerSpec = None,
        pool: Optional[str] = None,
        batch_size: Optional[int] = GRAPH_BATCH_SIZE,
        device: Optional[str | torch.device] = None,
        progress: bool = True,
        *,
        node_batch_size: Optional[int] = None,
        **prepare_kwargs: Any,
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
            batch_size: graphs per forward pass (None: `embed_batch_size`).
            device: where to run; progress: show a tqdm bar.
            node_batch_size: embed one large graph layer by layer, this many nodes at a time with
                their one-hop in-neighbours (exactly the full-graph result; memory bounded by the batch
                and the (N, D) layer outputs, which stay on the CPU).
            prepare_kwargs: none are taken; one given is refused by name, as other encoders do.

        Returns:
            pool="none": a single graph gives (N, D) (or (K, N, D) for several layers, as every
            encoder gives (K, T, D)),
            several graphs a list of those; a readout gives (num_graphs, D) or (num_graphs, K, D),
            taken batch by batch, so that only one batch's node rows are held at a time.
        """
        check_batch_sizes(batch_size=batch_size, node_batch_size=node_batch_size)  # None: Encoder.embed's own
        self.processor.check_options(prepare_kwargs)
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
        elif pool != "none":  # each batch read out as it comes: no graph's node rows are kept to the end
            return super().embed(graphs, layer=layer, pool=pool, batch_size=batch_size, device=device,
                                 progress=progress)
        else:
            nodes = super().embed(graphs, layer=indices, pool="none", batch_size=batch_size, device=device,
                                  progress=progress)
            nodes = [n.unsqueeze(0) for n in nodes] if indices is None else nodes
        squeeze = is_single_layer(layer)
        if pool == "none":
            nodes = [n[0] if squeeze else n for n in nodes]
            return nodes[0] if single else nodes
        rows = torch.stack([readout(n, pool) for n in nodes])
        return rows[:, 0] if squeeze else rows

    def embed_nodes(self, graph: Data, indices: Optional[list[int]], node_batch_size: int, device,
                    progress: bool) -> torch.Tensor:
        """(K, N, D) node features of one graph, layer by layer (PyG's layer-wise inference).

        Every layer's output is computed for all nodes, `node_batch_size` target nodes at a time
        from their one-hop in-neighbourhood in the previous layer's (N, D) output, which is kept
        on the CPU. A batch never sees more than its targets and their in-neighbours, so nothing
        is recomputed (seed batches with whole L-hop neighbourhoods recomputed most of a graph
        without locality for every batch), and each output is an exact hidden state.
        """
        prepared = self.processor.prepare(graph)
        wanted = indices if indices is not None else [self.num_layers]
        edge_index, edge_weight = self.layerwise_edges(prepared.edge_index, prepared.num_nodes)
        sampler = FullNeighborSampler(Data(edge_index=edge_index, num_nodes=prepared.num_nodes), num_layers=1)
        batches = torch.arange(prepared.num_nodes).split(node_batch_size)
        x = cast_input(prepared.x, self.dtype, "x")
        kept = {0: x.float()} if 0 in wanted else {}
        with self.embedding(device), self.progress_bar(len(batches) * self.num_layers, progress, unit="batch") as bar:
            for index in range(self.num_layers):
                x = self.layer_of_all_nodes(index, x, sampler, edge_weight, batches, bar)
                if index + 1 in wanted:
                    kept[index + 1] = x.float()
        nodes = kept[wanted[0]].unsqueeze(0) if len(wanted) == 1 else torch.stack([kept[i] for i in wanted])
        self.check_finite_rows([nodes])
        return nodes

    def layer_of_all_nodes(self, index: int, x: torch.Tensor, sampler: FullNeighborSampler,
                           edge_weight: Optional[torch.Tensor], batches: tuple[torch.Tensor, ...],
                           bar: Any) -> torch.Tensor:
        """(N, D) output of layer `index` from its (N, F) CPU input, a batch of target nodes at a time."""
        output = None
        for targets in batches:
            sample = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=targets))
            inputs = self.to_device({"x": x[sample.node], "edge_index": torch.stack([sample.row, sample.col])})
            weight = None if edge_weight is None else edge_weight[sample.edge].to(self.device)
            rows = self.node_layer(index, inputs["x"], inputs["edge_index"], weight, targets.numel()).cpu()
            if output is None:
                output = rows.new_empty(x.shape[0], rows.shape[-1])
            output[targets] = rows
            bar.update(1)
        return output
