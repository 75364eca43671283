"""GraphMAE's objective: masked node-feature reconstruction with a re-masked GNN decoder.

Per step (THUDM/GraphMAE, `graphmae/models/edcoder.py::PreModel`): a `mask_rate` share
of nodes is masked; of those, a `replace_rate` share takes the features of random nodes
and the rest are zeroed and given the learnable [MASK] token. The encoder runs on that
graph (optionally with edges dropped); its output is mapped by a bias-free linear layer,
the masked nodes are zeroed again (re-mask), and a one-layer GNN decoder reconstructs
the input features. The loss is the scaled cosine error over masked nodes only.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from modalities.graphs.graphmae.model import GraphMAEEncoder
from modalities.graphs.losses import sce_loss
from zoo.errors import ConfigError
from zoo.outputs import PretrainOutput


def mask_nodes(x: torch.Tensor, mask_rate: float, replace_rate: float, mask_token: torch.Tensor,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted features and the indices of the masked nodes.

    Counts are truncated as upstream: int(mask_rate * N) masked, int(replace_rate * masked)
    of them replaced by the features of nodes drawn without replacement from all nodes, the
    rest given the token (upstream truncates both shares, which can leave one masked node
    with its own features; here none is left). The random draws are upstream's, in its
    order, so a seeded step masks the same nodes.
    """
    num_nodes = x.shape[0]
    masked = torch.randperm(num_nodes, device=x.device, generator=generator)[: int(mask_rate * num_nodes)]
    corrupted = x.clone()
    token_nodes = masked
    if replace_rate > 0:
        num_noise = int(replace_rate * len(masked))
        order = torch.randperm(len(masked), device=x.device, generator=generator)
        token_nodes = masked[order[: len(masked) - num_noise]]
        noise_nodes = masked[order[len(masked) - num_noise:]]
        sources = torch.randperm(num_nodes, device=x.device, generator=generator)[:num_noise]
        corrupted[noise_nodes] = x[sources]
    corrupted[token_nodes] = 0.0
    corrupted[token_nodes] += mask_token
    return corrupted, masked


def drop_edges(edge_index: torch.Tensor, num_nodes: int, rate: float) -> torch.Tensor:
    """Drop each edge with probability `rate`, then give every node exactly one self-loop.

    Upstream re-adds self-loops on top of surviving ones (a node may get two); here each
    node gets one, as everywhere else in the zoo.
    """
    from torch_geometric.utils import add_self_loops, dropout_edge, remove_self_loops

    kept, _ = dropout_edge(edge_index, p=rate, training=True)
    kept, _ = remove_self_loops(kept)
    return add_self_loops(kept, num_nodes=num_nodes)[0]


class GraphMAEPretraining(nn.Module):
    """Encoder + [MASK] token + encoder-to-decoder map + one-layer decoder; `forward(batch)` is one step.

    `batch` is a dict with the processor's `x` and `edge_index` (and `batch` for several graphs).
    State-dict names follow upstream's (`enc_mask_token`, `encoder_to_decoder`, `decoder`).
    """

    def __init__(self, encoder: GraphMAEEncoder, mask_rate: float = 0.5, replace_rate: float = 0.05,
                 alpha_l: float = 3.0, drop_edge_rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 < mask_rate < 1.0:
            raise ConfigError(f"mask_rate={mask_rate} must lie in (0, 1)")
        if not 0.0 <= replace_rate < 1.0 or not 0.0 <= drop_edge_rate < 1.0:
            raise ConfigError(f"replace_rate={replace_rate} and drop_edge_rate={drop_edge_rate} must lie in [0, 1)")
        config = encoder.config
        self.encoder = encoder
        self.mask_rate, self.replace_rate, self.alpha_l, self.drop_edge_rate = (
            mask_rate, replace_rate, alpha_l, drop_edge_rate)
        self.enc_mask_token = nn.Parameter(torch.zeros(1, config.in_dim))
        self.encoder_to_decoder = nn.Linear(config.num_hidden, config.num_hidden, bias=False)
        self.decoder = config.build_backbone(config.num_hidden, config.in_dim, 1, encoding=False,
                                             heads=config.num_heads, out_heads=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        x, edge_index = batch["x"], batch["edge_index"]
        corrupted, masked = mask_nodes(x, self.mask_rate, self.replace_rate, self.enc_mask_token)
        encoder_edges = drop_edges(edge_index, x.shape[0], self.drop_edge_rate) if self.drop_edge_rate else edge_index
        hidden = self.encoder.node_layers(corrupted, encoder_edges)[-1]
        hidden = self.encoder_to_decoder(hidden).index_fill(0, masked, 0.0)
        reconstruction = self.decoder(hidden, edge_index)[-1]
        loss = sce_loss(reconstruction[masked], x[masked], self.alpha_l)
        return PretrainOutput(loss=loss, logs={"masked_nodes": int(masked.numel())})
