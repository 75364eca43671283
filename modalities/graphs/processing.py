"""Graphs in: PyG `Data` objects checked and normalised the way the checkpoint was trained.

GraphMAE's and ParetoGNN's node encoders were trained on undirected graphs with one
self-loop per node (GraphMAE: `dgl.to_bidirected`, then remove and re-add self-loops)
and, for the Planetoid sets, row-normalised bag-of-words features. The processor applies
the same steps to any graph a user passes, so raw PyG datasets give the embeddings the
checkpoint was trained to give. Checkpoints of sets without node features (the IMDB,
COLLAB and REDDIT sets) take one-hot node degrees, which the processor computes itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch

from zoo.errors import InputError
from zoo.processing import Processor

FEATURE_NORMS = (None, "row", "standard")
NODE_FEATURES = ("x", "degree")
STATISTICS = ("feature_mean", "feature_std")


@dataclasses.dataclass
class GraphProcessor(Processor):
    """Validates and normalises graphs; batches several into one disjoint graph.

    Args:
        in_dim: node feature width the encoder takes; None accepts any width.
        to_undirected: add the reverse of every edge (the encoders were trained on
            undirected graphs; a directed input would otherwise see half its neighbours).
        self_loops: drop the self-loops a graph has and add exactly one per node, so
            isolated nodes still attend to themselves and no node counts itself twice.
        feature_norm: None; "row" to divide each node's features by their sum (DGL's
            Planetoid loader does this; a row of zeros stays zero); or "standard": zero mean
            and unit variance per feature, as GraphMAE's StandardScaler for ogbn-arxiv and
            Reddit, with `feature_mean` / `feature_std` fitted on the pretraining graph
            (`fitted`), so that any graph embedded later is scaled as that one was. Before
            they are fitted (a recipe's random-init encoder), each graph is scaled by its own.
        node_features: "x" (the graph's own features) or "degree": one-hot numbers of
            distinct neighbours, clipped at `in_dim - 1`, computed from the edges (any `x`
            is ignored); GraphMAE's features for sets that have none.
    """

    processor_type = "graph"

    in_dim: Optional[int] = None
    to_undirected: bool = True
    self_loops: bool = True
    feature_norm: Optional[str] = None
    node_features: str = "x"
    feature_mean: Optional[list[float]] = None
    feature_std: Optional[list[float]] = None

    def __post_init__(self) -> None:
        if self.feature_norm not in FEATURE_NORMS:
            raise InputError(f"feature_norm={self.feature_norm!r} is not one of {FEATURE_NORMS}")
        if self.node_features not in NODE_FEATURES:
            raise InputError(f"node_features={self.node_features!r} is not one of {NODE_FEATURES}")
        if self.node_features == "degree" and self.in_dim is None:
            raise InputError("node_features='degree' needs in_dim (the width of the one-hot degrees)")
        stats = [len(values) for values in (self.feature_mean, self.feature_std) if values is not None]
        if stats and (self.feature_norm != "standard" or len(stats) != 2 or stats[0] != stats[1]
                      or self.in_dim not in (None, stats[0])):
            raise InputError(f"feature_mean / feature_std of lengths {stats} go together, with feature_norm='standard' "
                             f"and one value per feature (in_dim={self.in_dim}, feature_norm={self.feature_norm!r})")

    def to_dict(self) -> dict[str, Any]:
        """The settings, with the feature statistics only where they are fitted."""
        settings = super().to_dict()
        return {key: value for key, value in settings.items() if key not in STATISTICS or value is not None}

    def fitted(self, graphs: Any) -> "GraphProcessor":
        """This processor with `feature_mean` / `feature_std` of the nodes of `graphs` (a graph
        or a list), where its `feature_norm` is "standard"; otherwise itself."""
        if self.feature_norm != "standard":
            return self
        graphs = graphs if isinstance(graphs, list) else [graphs]
        x = torch.cat([check_graph(graph, self.in_dim)[0] for graph in graphs])
        mean, std = feature_statistics(x)
        return dataclasses.replace(self, feature_mean=mean.tolist(), feature_std=std.tolist())

    def prepare(self, item: Any, **options: Any) -> Any:
        """Check one graph and return a normalised copy holding only `x` and `edge_index`."""
        from torch_geometric.data import Data

        self.check_options(options)
        if self.node_features == "degree":
            item = with_degree_features(item, self.in_dim)
        x, edge_index = check_graph(item, self.in_dim)
        edge_index = self.normalise_edges(edge_index, x.shape[0])
        if self.feature_norm == "row":
            x = row_normalised(x)
        elif self.feature_norm == "standard":
            x = self.standardise(x)
        return Data(x=x, edge_index=edge_index)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        if self.feature_mean is None:
            mean, std = feature_statistics(x)
        else:
            mean, std = torch.tensor(self.feature_mean), torch.tensor(self.feature_std)
        return (x - mean) / std

    def normalise_edges(self, edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        from torch_geometric.utils import add_self_loops, coalesce, remove_self_loops, to_undirected

        if self.to_undirected:
            edge_index = to_undirected(edge_index, num_nodes=num_nodes)
        else:
            edge_index = coalesce(edge_index, num_nodes=num_nodes)
        if self.self_loops:
            edge_index, _ = remove_self_loops(edge_index)
            edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
        return edge_index

    def batch(self, inputs: Sequence[Any] | Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Graphs into one batch; a PyG `Batch` (what its DataLoader yields) counts as its graphs,
        so that `head(**head.processor(batch), labels=batch.y)` gives one row per graph. A bad graph's
        error names its place in the list or batch (`input 2: ...`), as `embed`'s errors do."""
        from torch_geometric.data import Batch

        return super().batch(graphs_of(inputs) if isinstance(inputs, Batch) else inputs, **kwargs)

    def size(self, piece: Any) -> int:
        return piece.num_nodes

    def collate(self, pieces: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Graphs -> one disjoint union: `x`, `edge_index` and `batch` (graph of each node)."""
        from torch_geometric.data import Batch

        batch = Batch.from_data_list(list(pieces))
        return {"x": batch.x, "edge_index": batch.edge_index, "batch": batch.batch}


def feature_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and population std, as sklearn's StandardScaler fits them: a feature
    constant up to rounding gets std 1, so that a later graph where it varies is not blown up."""
    mean, std = x.mean(0), x.std(0, unbiased=False)
    return mean, std.masked_fill(std <= 1e-7 * mean.abs().clamp(min=1.0), 1.0)


def row_normalised(x: torch.Tensor) -> torch.Tensor:
    """Each node's features divided by their sum, as DGL's Planetoid loader scales bag-of-words counts.
    Negative features (standardised or centred ones) are refused: their sums lie near zero or below,
    and dividing by them made Cora embeddings of 1e11."""
    if (x < 0).any():
        raise InputError(
            f"graph has {int((x < 0).sum())} negative node features (min {float(x.min()):.3g}), but this checkpoint "
            "divides each node's features by their sum (feature_norm='row') as it was trained on non-negative "
            "bag-of-words counts; pass the raw features, not standardised or centred ones"
        )
    return x / x.sum(dim=1, keepdim=True).clamp(min=1e-12)


def neighbour_counts(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Distinct neighbours of each node: self-loops and repeated or reverse edges not counted."""
    from torch_geometric.utils import degree, remove_self_loops, to_undirected

    edges, _ = remove_self_loops(to_undirected(edge_index, num_nodes=num_nodes))
    return degree(edges[0], num_nodes, dtype=torch.long)


def one_hot_degrees(edge_index: torch.Tensor, num_nodes: int, width: int) -> torch.Tensor:
    """(num_nodes, width) one-hot `neighbour_counts`, clipped at width - 1."""
    import torch.nn.functional as F

    counts = neighbour_counts(edge_index, num_nodes).clamp(max=width - 1)
    return F.one_hot(counts, width).to(torch.float32)


def with_degree_features(item: Any, width: int) -> Any:
    """A copy of a graph whose `x` is its one-hot degrees; the node count comes from
    `num_nodes` (or the edges, or `x`, as PyG infers it)."""
    from torch_geometric.data import Data

    check_is_data(item)
    check_num_nodes(item, getattr(item, "x", None), "drop x (this encoder computes degree features itself)")
    num_nodes = item.num_nodes
    if not num_nodes:
        raise InputError("graph has no nodes; set data.num_nodes (this encoder computes degree features itself)")
    edge_index = check_edge_index(item, num_nodes, f"data.num_nodes is {num_nodes}",
                                  "set data.num_nodes to the number of nodes")
    check_counted_from_ids(item, edge_index, num_nodes)
    return Data(x=one_hot_degrees(edge_index, num_nodes, width), edge_index=edge_index)


def check_counted_from_ids(item: Any, edge_index: torch.Tensor, num_nodes: int) -> None:
    """Refuse a graph whose node count PyG guessed from its largest node id (no `x`, no `num_nodes`)
    while ids below it appear in no edge: raw ids (a user's or a database's, not 0..N-1) made those
    gaps isolated nodes, which changed every readout and node list without a word, and ids in the
    millions allocated a one-hot row for each."""
    if "num_nodes" in item or getattr(item, "x", None) is not None or edge_index.numel() == 0:
        return
    if num_nodes != int(edge_index.max()) + 1:
        return
    named = int(edge_index.unique().numel())
    if named < num_nodes:
        raise InputError(
            f"graph has no x and no num_nodes, so PyG counts {num_nodes} nodes from its largest node id "
            f"({num_nodes - 1}), but only {named} ids appear in edge_index: the other {num_nodes - named} would "
            "be embedded as isolated nodes. Renumber the nodes from 0 (ids, data.edge_index = "
            "data.edge_index.unique(return_inverse=True)), or set data.num_nodes if those isolated nodes are real"
        )


def graphs_of(batch: Any) -> list[Any]:
    """A PyG `Batch`'s graphs, each with the node count the batch was built with (its `ptr`):
    `to_data_list` drops every graph's explicit `num_nodes` where the batch's first graph had none,
    which hid a graph whose `num_nodes` and `x` disagree (it embedded as x's rows)."""
    graphs = batch.to_data_list()
    ptr = getattr(batch, "ptr", None)
    if ptr is not None:
        for graph, count in zip(graphs, ptr.diff().tolist()):
            if graph.num_nodes != count:
                graph.num_nodes = count
    return graphs


def check_num_nodes(item: Any, x: Any, fix: str = "give x a row per node") -> None:
    """Refuse a graph whose explicit `num_nodes` (what PyG's `Data.num_nodes` returns when set) is not
    x's row count. The processor builds the graph from `x` and `edge_index`, so the nodes past x's
    rows went missing without a word, and x's rows past `num_nodes` were embedded as nodes."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or "num_nodes" not in item:
        return
    if item.num_nodes != x.shape[0]:
        raise InputError(
            f"graph has num_nodes={item.num_nodes} but x of shape {tuple(x.shape)}, a row for {x.shape[0]} nodes; "
            f"they must agree: drop num_nodes (del data.num_nodes) or {fix}"
        )


def check_is_data(item: Any) -> None:
    """Refuse anything but a homogeneous PyG `Data` (a `Batch` is one), saying how to make one of
    a `HeteroData`."""
    from torch_geometric.data import Data, HeteroData

    if isinstance(item, HeteroData):
        raise InputError(
            f"a HeteroData graph (node types {item.node_types}) is not supported: these encoders take one node and "
            "one edge type; pass one type's Data(x=data[NODE].x, edge_index=data[NODE, REL, NODE].edge_index), "
            "or data.to_homogeneous() where every node type has features of one width"
        )
    if not isinstance(item, Data):
        raise InputError(
            f"graph input of type {type(item).__name__} is not supported; pass a torch_geometric.data.Data "
            "with x (num_nodes, num_features) and edge_index (2, num_edges)"
        )


def check_graph(item: Any, in_dim: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The float node features and long edge index of a graph on the CPU, or an `InputError` saying what is
    wrong. A graph on a GPU is copied, as `embed` moves each batch to the encoder's device itself: there it
    met the CPU feature statistics and neighbour sampler, and graphs of several devices met in one batch."""
    check_is_data(item)
    x = getattr(item, "x", None)
    if x is None:
        raise InputError("graph has no node features `x`; set data.x (e.g. one-hot degrees with T.OneHotDegree)")
    if not isinstance(x, torch.Tensor):
        raise InputError(f"graph has x of type {type(x).__name__}; node features are a torch tensor "
                         "(e.g. data.x = torch.as_tensor(x, dtype=torch.float32))")
    if x.layout != torch.strided:  # sparse bag-of-words features, as Cora's are stored
        x = x.to_dense()
    if x.is_complex():  # torch casts to real with a warning: the imaginary part was dropped, rows as if never there
        raise InputError(f"graph has complex node features (dtype {x.dtype}); pass real ones (e.g. x.real, x.abs() "
                         "or both as columns), as audio and image inputs must be")
    if x.dim() != 2 or x.shape[0] == 0:
        raise InputError(f"graph has x of shape {tuple(x.shape)}; expected (num_nodes > 0, num_features)")
    check_num_nodes(item, x)
    if in_dim is not None and x.shape[1] != in_dim:
        raise InputError(
            f"graph has {x.shape[1]} node features but this encoder was trained on {in_dim}; "
            "use a checkpoint trained on this dataset or pretrain one (zoo pretrain)"
        )
    x = x.to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise InputError(f"graph has {int((~torch.isfinite(x)).sum())} NaN or infinite features; clean x first")
    return x, check_edge_index(item, x.shape[0], f"x has shape {tuple(x.shape)}", "give x a row per node")


def check_index_layout(edge_index: torch.Tensor) -> None:
    """A (2, num_edges) tensor of integers, or an `InputError`: what a graph's `edge_index` and
    `GraphEncoder.forward`'s both need."""
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise InputError(f"edge_index has shape {tuple(edge_index.shape)}; expected (2, num_edges)")
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise InputError(f"edge_index has dtype {edge_index.dtype}; node indices must be integers")


def check_edge_index(item: Any, num_nodes: int, counted: str, fix: str) -> torch.Tensor:
    """The long edge index of a graph, or an `InputError`: a numpy array, a sparse tensor or a bool
    index would fail inside PyG with a message that does not say what to pass. An entry outside the
    `num_nodes` nodes (`counted` says where that count comes from) is named, the largest first."""
    edge_index = getattr(item, "edge_index", None)
    if edge_index is None:
        raise InputError(
            "graph has no `edge_index`; set data.edge_index (2, num_edges), e.g. from a sparse adjacency "
            "with torch_geometric.utils.to_edge_index (an empty torch.empty(2, 0, dtype=torch.long) for no edges)"
        )
    if not isinstance(edge_index, torch.Tensor) or edge_index.layout != torch.strided:
        kind = f"{edge_index.layout} tensor" if isinstance(edge_index, torch.Tensor) else type(edge_index).__name__
        raise InputError(f"edge_index is a {kind}; it is a dense torch tensor (2, num_edges) of node indices "
                         "(e.g. torch.as_tensor(edge_index, dtype=torch.long); a sparse adjacency through "
                         "torch_geometric.utils.to_edge_index)")
    check_index_layout(edge_index)
    edge_index = edge_index.to("cpu", torch.long)
    outside = int(((edge_index < 0) | (edge_index >= num_nodes)).sum())
    if outside:
        largest = int(edge_index.max())
        named = largest if largest >= num_nodes else int(edge_index.min())
        raise InputError(
            f"edge_index refers to node {named} ({outside} such entries) but the graph has {num_nodes} nodes "
            f"({counted}); indices must lie in [0, {num_nodes - 1}]: renumber the edges or drop those to missing "
            f"nodes, or {fix}"
        )
    return edge_index
