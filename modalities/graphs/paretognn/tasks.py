"""ParetoGNN's five pretext tasks, computed full-batch on a `torch_geometric.data.Data`.

Each task owns its heads and turns a graph into a scalar loss with
`loss(encoder, data, generator)`, where `encoder(x, edge_index)` returns node embeddings
(N, D). Constants and the order of operations follow upstream `src/model.py::PretrainModule`,
`src/data_train.py::Universal_Collator` and what `pretrain_model_pareto.py` passes to it, with
DGL 0.9.0 (upstream README's pin; from DGL 1.0 DropEdge returns a copy, which the collator
discards, so there upstream's views keep every edge):

- p_recon, `FeatureReconstruction`: drop 35% of edges, give 50% of the nodes a learned mask
  token instead of their features, encode, map by a bias-free linear layer, zero the masked
  nodes again, decode with a graph convolution, scaled cosine error (alpha 3) on masked nodes.
- p_ming, `NodeGraphInfomax` (DGI): encode the graph and a copy whose feature rows are
  shuffled; summary = sigmoid(mean clean embedding); bilinear score h·(W s) without bias;
  BCE(clean, 1) + BCE(shuffled, 0), on sigmoid probabilities as upstream (`sigmoid_bce`).
- p_minsg, `SubgraphContrast` (GRACE): two views, each dropping 30% of edges and 30% of
  feature columns; projector Linear-ReLU-Linear; InfoNCE at temperature 0.1 with intra- and
  inter-view negatives, averaged over both directions and all nodes.
- p_decor, `Decorrelation` (CCA-SSG as upstream writes it): two views dropping 20% of edges
  and of feature columns; standardised embeddings, no head;
  ||z1 - z2||_F / N + λ (||I - z1ᵀz1 / N||_F + ||I - z2ᵀz2 / N||_F) with λ 1e-3. The norms
  are Frobenius norms, not their squares as in the CCA-SSG paper.
- p_link, `LinkPrediction`: input dropout 0.4 (rescaled), encode, L2-normalise, Linear-ReLU to
  predictor_dim, product of the two ends, Linear to a logit; BCE (`sigmoid_bce`) over the
  positive edges and as many negatives.

What differs from upstream:

- Upstream draws a subgraph per step for p_link: 10 positive edges (its collator takes
  `len(indices) × 10` edge ids and its DataLoader sets no batch size, so 1; the scripts'
  `--per_gpu_batch_size` B, 1024 or 512, never reaches p_link), as many negatives, and 3-layer
  neighbour sampling (fanouts 15, 10, 5) of which the 2-layer encoder uses two. The other tasks
  draw one only on graphs above a size (p_minsg: the 3-hop in-neighbourhood of B seed nodes,
  above B × `--batch_size_multiplier_minsg` nodes; p_decor: GraphSAINT node sampling of
  `--decor_size` nodes, above that many; p_ming: a 3-hop neighbourhood of B seed nodes, above
  B × `--batch_size_multiplier_ming` nodes; on ogbn-products, with `--use_saint`, p_minsg and
  p_ming use GraphSAINT node sampling instead and p_recon GraphSAINT samples of 200,000 nodes).
  Here every task sees the whole graph, and p_link all edges or `positive_edges_per_step` of
  them. p_recon on the other graphs (and p_ming on PubMed, multiplier 0) is full-graph upstream
  too. p_minsg's InfoNCE needs O(N²) memory.
- p_link's negatives come from `torch_geometric.utils.negative_sampling`, DGL's GlobalUniform's
  upstream: both draw node pairs that are neither edges nor self-loops, from different random
  streams. Upstream's graph stores one self-loop per node, so its positives include
  self-loops; ours include those `edge_index` has (the processor adds one per node).
- Not a difference: the encoder a task gets from `ParetoGNNPretraining`
  (`ParetoGNNEncoder.node_embeddings`) and p_recon's decoder normalise as DGL's GraphConv (no
  self-loops added, sources scaled by their out-degree; `gcn.graphconv_edge_weights`), so a
  view whose DropEdge removed edges and self-loops is encoded as upstream encodes it. (PyG's
  GCNConv adds the self-loops back and uses in-degrees: on Cora that moved the p_minsg loss
  by 0.31 and the MGDA weights by up to 4e-3.) As upstream, a masked node that no unmasked
  node feeds (its in-edges dropped, or all from masked nodes, whose decoder inputs are zeroed)
  is reconstructed as the decoder's bias alone; while that bias is still zero, F.normalize's
  floor gives it a first-step gradient of ~6e10 on Cora, which AdamW's second moment then
  holds nearly still (see `pretrain`).
- Upstream's two views share one feature tensor (`dgl_graph_copy` shares `ndata['feat']` and
  DGL's FeatMask zeroes columns in place), so both views get the union of the two column
  masks; where a task copies the whole graph (p_minsg and p_decor on a graph as small as
  Cora) that tensor is the graph's own, so the zeroed columns also accumulate from step to
  step. Here each view draws its own mask from the intact features, as GRACE and CCA-SSG intend.

All randomness (masks, permutations, dropped edges, negatives) comes from `generator` when one
is given, so a step can be replayed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv
from torch_geometric.utils import negative_sampling

from modalities.graphs.losses import sce_loss
from modalities.graphs.paretognn.gcn import graphconv_edge_weights
from zoo.errors import ConfigError

Encoder = Callable[[Tensor, Tensor], Tensor]
#: the tasks every upstream pretraining script uses (`--tasks`)
SCRIPT_TASKS = ("p_recon", "p_ming", "p_decor", "p_minsg", "p_link")


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U[0, 1) draws from `generator` (on its own device) or the global RNG, on `device`."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _permutation(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A random permutation of range(n) on `device`."""
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def drop_edges(edge_index: Tensor, drop_ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Drop each directed edge independently with probability `drop_ratio` (DGL's DropEdge)."""
    keep = _uniform((edge_index.size(1),), generator, edge_index.device) >= drop_ratio
    return edge_index[:, keep]


def mask_feature_columns(x: Tensor, mask_ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero each feature column (for every node) with probability `mask_ratio` (DGL's FeatMask)."""
    masked = _uniform((x.size(1),), generator, x.device) < mask_ratio
    return x.masked_fill(masked, 0.0)


def feature_dropout(x: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Elementwise dropout with 1 / (1 - ratio) rescaling, as `F.dropout` in training mode."""
    keep = _uniform(tuple(x.shape), generator, x.device) >= ratio
    return x * keep / (1.0 - ratio)


def augmented_view(
    encoder: Encoder, data: Data, edge_drop_ratio: float, feature_drop_ratio: float, generator: torch.Generator | None
) -> Tensor:
    """Node embeddings of one view with edges dropped and feature columns masked (GRACE, CCA-SSG)."""
    edge_index = drop_edges(data.edge_index, edge_drop_ratio, generator)
    return encoder(mask_feature_columns(data.x, feature_drop_ratio, generator), edge_index)


def sample_negative_edges(
    edge_index: Tensor, num_nodes: int, count: int, generator: torch.Generator | None = None
) -> Tensor:
    """About `count` node pairs that are neither edges nor self-loops.

    PyG's sampler draws from Python's `random`; with a generator, that module is seeded from
    it for the call and restored afterwards, so the draw is reproducible without side effects.
    """
    if generator is None:
        return negative_sampling(edge_index, num_nodes=num_nodes, num_neg_samples=count)
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    state = random.getstate()
    random.seed(seed)
    try:
        return negative_sampling(edge_index, num_nodes=num_nodes, num_neg_samples=count)
    finally:
        random.setstate(state)


def xavier_init_(module: nn.Module) -> None:
    """Upstream's `PretrainModule.weights_init`: Xavier-uniform weights, zero biases, on every Linear."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def cosine_similarity_matrix(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """All-pairs cosine similarity (upstream's `utils.sim_matrix`, norms floored at eps)."""
    a = a / a.norm(dim=1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(eps)
    return a @ b.T


def grace_infonce(anchor: Tensor, other: Tensor, temperature: float) -> Tensor:
    """Per-node GRACE loss: the other view's same node against every other node of both views."""
    intra = torch.exp(cosine_similarity_matrix(anchor, anchor) / temperature)
    inter = torch.exp(cosine_similarity_matrix(anchor, other) / temperature)
    denominator = intra.sum(dim=1) + inter.sum(dim=1) - intra.diagonal()
    return -torch.log(inter.diagonal() / denominator)


def sigmoid_bce(logits: Tensor, target: Tensor) -> Tensor:
    """Upstream's BCE of sigmoid probabilities, kept rather than BCE-with-logits because the two
    differ where it matters: a logit past about ±16.6 makes the float32 sigmoid exactly 0 or 1,
    so a confidently wrong node costs 100 (PyTorch's log clamp) and passes no gradient, where
    the logit form charges |logit| and pushes it back. On Cora at the recipe's initialisation
    (seed 0) 16 of 5416 p_ming scores are such, and the loss is 3.67 upstream's way, 3.22 the other."""
    return F.binary_cross_entropy(torch.sigmoid(logits), target)


def standardize(h: Tensor) -> Tensor:
    """Zero mean, unit (unbiased) standard deviation per embedding dimension."""
    return (h - h.mean(dim=0)) / h.std(dim=0)


class PretextTask(nn.Module):
    """A pretext task: its own heads, and a scalar loss for a graph under the shared encoder."""

    def loss(self, encoder: Encoder, data: Data, generator: torch.Generator | None = None) -> Tensor:
        """The task's loss on `data` with node embeddings from `encoder(x, edge_index)`."""
        raise NotImplementedError


class FeatureReconstruction(PretextTask):
    """p_recon: GraphMAE-style masked feature reconstruction."""

    def __init__(
        self, in_dim: int, embed_dim: int, mask_ratio: float = 0.5, edge_drop_ratio: float = 0.35, alpha: float = 3.0
    ) -> None:
        super().__init__()
        self.mask_ratio, self.edge_drop_ratio, self.alpha = mask_ratio, edge_drop_ratio, alpha
        self.mask_token = nn.Parameter(torch.zeros(1, in_dim))
        self.encoder_to_decoder = nn.Linear(embed_dim, embed_dim, bias=False)
        self.decoder = GCNConv(embed_dim, in_dim, normalize=False)
        xavier_init_(self.encoder_to_decoder)

    def loss(self, encoder: Encoder, data: Data, generator: torch.Generator | None = None) -> Tensor:
        edge_index = drop_edges(data.edge_index, self.edge_drop_ratio, generator)
        x = data.x
        masked = _permutation(data.num_nodes, generator, x.device)[: int(self.mask_ratio * data.num_nodes)]
        is_masked = torch.zeros(data.num_nodes, dtype=torch.bool, device=x.device)
        is_masked[masked] = True
        corrupted = torch.where(is_masked[:, None], self.mask_token, x)
        h = self.encoder_to_decoder(encoder(corrupted, edge_index))
        h = h.masked_fill(is_masked[:, None], 0.0)
        weights = graphconv_edge_weights(edge_index, data.num_nodes, h.dtype)
        reconstruction = self.decoder(h, edge_index, weights)[masked]
        return sce_loss(reconstruction, x[masked], self.alpha)


class NodeGraphInfomax(PretextTask):
    """p_ming: DGI's node–graph mutual information, with row-shuffled features as negatives."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(embed_dim)
        self.weight = nn.Parameter(torch.empty(embed_dim, embed_dim).uniform_(-bound, bound))

    def loss(self, encoder: Encoder, data: Data, generator: torch.Generator | None = None) -> Tensor:
        shuffled = data.x[_permutation(data.num_nodes, generator, data.x.device)]
        clean = encoder(data.x, data.edge_index)
        corrupt = encoder(shuffled, data.edge_index)
        score = self.weight @ torch.sigmoid(clean.mean(dim=0))
        positive, negative = clean @ score, corrupt @ score
        return sigmoid_bce(positive, torch.ones_like(positive)) + sigmoid_bce(negative, torch.zeros_like(negative))


class SubgraphContrast(PretextTask):
    """p_minsg: GRACE-style InfoNCE between two augmented views of the graph."""

    def __init__(
        self,
        embed_dim: int,
        predictor_dim: int = 512,
        temperature: float = 0.1,
        edge_drop_ratio: float = 0.3,
        feature_drop_ratio: float = 0.3,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.edge_drop_ratio, self.feature_drop_ratio = edge_drop_ratio, feature_drop_ratio
        self.projector = nn.Sequential(
            nn.Linear(embed_dim, predictor_dim), nn.ReLU(), nn.Linear(predictor_dim, embed_dim)
        )
        xavier_init_(self.projector)

    def _view(self, encoder: Encoder, data: Data, generator: torch.Generator | None) -> Tensor:
        """Projected embeddings of one augmented view."""
        return self.projector(augmented_view(encoder, data, self.edge_drop_ratio, self.feature_drop_ratio, generator))

    def loss(self, encoder: Encoder, data: Data, generator: torch.Generator | None = None) -> Tensor:
        h1, h2 = self._view(encoder, data, generator), self._view(encoder, data, generator)
        per_node = 0.5 * (grace_infonce(h1, h2, self.temperature) + grace_infonce(h2, h1, self.temperature))
        return per_node.mean()


class Decorrelation(PretextTask):
    """p_decor: CCA-SSG's invariance plus decorrelation between two augmented views (no head)."""

    def __init__(
        self, decorrelation_weight: float = 1e-3, edge_drop_ratio: float = 0.2, feature_drop_ratio: float = 0.2
    ) -> None:
        super().__init__()
        self.decorrelation_weight = decorrelation_weight
        self.edge_drop_ratio, self.feature_drop_ratio = edge_drop_ratio, feature_drop_ratio

    def _view(self, encoder: Encoder, data: Data, generator: torch.Generator | None) -> Tensor:
        """Standardised embeddings of one augmented view."""
        return standardize(augmented_view(encoder, data, self.edge_drop_ratio, self.feature_drop_ratio, generator))

    def loss(self, encoder: Encoder, data: Data, generator: torch.Generator | None = None) -> Tensor:
        z1, z2 = self._view(encoder, data, generator), self._view(encoder, data, generator)
        n = data.num_nodes
        identity = torch.eye(z1.size(1), device=z1.device, dtype=z1.dtype)
        invariance = torch.linalg.matrix_norm((z1 - z2) / n)
        decorrelation = torch.linalg.matrix_norm(identity - z1.T @ z1 / n) + torch.linalg.matrix_norm(
            identity - z2.T @ z2 / n
        )
        return invariance + self.decorrelation_weight * decorrelation


class LinkPrediction(PretextTask):
    """p_link: existing edges against sampled non-edges, scored from the product of both ends."""

    def __init__(
        self,
        embed_dim: int,
        predictor_dim: int = 512,
        feature_dropout: float = 0.4,
        negative_ratio: int = 1,
        positive_edges_per_step: int | None = None,
    ) -> None:
        super().__init__()
        self.feature_dropout, self.negative_ratio = feature_dropout, negative_ratio
        self.positive_edges_per_step = positive_edges_per_step
        self.hidden = nn.Linear(embed_dim, predictor_dim)
        self.classifier = nn.Linear(predictor_dim, 1)
        xavier_init_(self)

    def _positive_edges(self, edge_index: Tensor, generator: torch.Generator | None) -> Tensor:
        """All edges, or a random `positive_edges_per_step` of them."""
        if self.positive_edges_per_step is None or self.positive_edges_per_step >= edge_index.size(1):
            return edge_index
        chosen = _permutation(edge_index.size(1), generator, edge_index.device)[: self.positive_edges_per_step]
        return edge_index[:, chosen]

    def _logits(self, h: Tensor, pairs: Tensor) -> Tensor:
        """One logit per node pair (2, P)."""
        return self.classifier(h[pairs[0]] * h[pairs[1]]).squeeze(-1)

    def loss(self, encoder: Encoder, data: Data, generator: torch.Generator | None = None) -> Tensor:
        positive = self._positive_edges(data.edge_index, generator)
        negative = sample_negative_edges(
            data.edge_index, data.num_nodes, positive.size(1) * self.negative_ratio, generator
        )
        x = feature_dropout(data.x, self.feature_dropout, generator)
        h = F.relu(self.hidden(F.normalize(encoder(x, data.edge_index), dim=1)))
        logits = torch.cat([self._logits(h, positive), self._logits(h, negative)])
        target = torch.cat([logits.new_ones(positive.size(1)), logits.new_zeros(negative.size(1))])
        return sigmoid_bce(logits, target)


#: task name -> builder(in_dim, embed_dim, predictor_dim, settings)
TASK_BUILDERS: dict[str, Callable[[int, int, int, dict], PretextTask]] = {
    "p_recon": lambda in_dim, embed_dim, predictor_dim, kw: FeatureReconstruction(in_dim, embed_dim, **kw),
    "p_ming": lambda in_dim, embed_dim, predictor_dim, kw: NodeGraphInfomax(embed_dim, **kw),
    "p_minsg": lambda in_dim, embed_dim, predictor_dim, kw: SubgraphContrast(embed_dim, predictor_dim, **kw),
    "p_decor": lambda in_dim, embed_dim, predictor_dim, kw: Decorrelation(**kw),
    "p_link": lambda in_dim, embed_dim, predictor_dim, kw: LinkPrediction(embed_dim, predictor_dim, **kw),
}


def build_tasks(
    names: Sequence[str], in_dim: int, embed_dim: int, predictor_dim: int = 512, **settings: dict
) -> nn.ModuleDict:
    """The named tasks with their heads, in order.

    `settings` maps a task name to keyword arguments of its class, e.g.
    `build_tasks(SCRIPT_TASKS, 500, 256, p_minsg={"temperature": 0.2})`.
    """
    unknown = [name for name in names if name not in TASK_BUILDERS]
    if unknown:
        raise ConfigError(f"unknown ParetoGNN tasks {unknown}; choose from {sorted(TASK_BUILDERS)}")
    stray = sorted(set(settings) - set(names))
    if stray:
        raise ConfigError(f"settings given for {stray}, which are not among the tasks {list(names)}; add or drop them")
    return nn.ModuleDict(
        {name: TASK_BUILDERS[name](in_dim, embed_dim, predictor_dim, dict(settings.get(name, {}))) for name in names}
    )
