"""One GraphMAE pretraining step with Cora's recipe (GAT, mask 0.5, replace 0.05, alpha 3) against
the official DGL code (THUDM/GraphMAE b14f080, `official_gat_step/make.py`): same weights, graph
and seed, so the same masked, replaced and token nodes, the same dropout, loss and gradients.

At Cora's full size (2708 nodes, 512 hidden, 4 heads) the same comparison gives a loss diff of 0
and gradients within 3.7e-9 with replace_rate 0; with 0.05, 3.2e-6 in the loss: upstream
truncates both shares of the 1354 masked nodes (1286 token + 67 replaced), leaving one with its
own features, which `mask_nodes` gives the token (see its docstring). 80 nodes split 38 + 2,
with nothing left over.
"""

from pathlib import Path

import torch
from helpers import graphmae_pretraining_key

from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.graphs.graphmae.objective import GraphMAEPretraining

FIXTURE = Path(__file__).parent / "official_gat_step" / "step.pt"
NAMES = {"fc.weight": "conv.lin.weight", "attn_l": "conv.att_src", "attn_r": "conv.att_dst", "bias": "conv.bias",
         "activation.weight": "activation.weight"}


def zoo_key(key: str) -> str:
    """Name in `GraphMAEPretraining` of a key of upstream's GAT `PreModel`."""
    return graphmae_pretraining_key(key, ".gat_layers.", NAMES.__getitem__)


def test_gat_pretraining_step_matches_the_official_loss_and_gradients():
    fixture = torch.load(FIXTURE, weights_only=True)
    config = GraphMAEConfig(in_dim=10, num_hidden=12, num_heads=3, num_layers=2)
    model = GraphMAEPretraining(GraphMAEEncoder(config), mask_rate=0.5, replace_rate=0.05, alpha_l=3)
    model.load_state_dict({zoo_key(key): value for key, value in fixture["state"].items()})
    model.train()
    torch.manual_seed(5)  # make.py's SEED
    loss = model({"x": fixture["x"], "edge_index": fixture["edge_index"]}).loss
    loss.backward()
    assert abs(loss.item() - fixture["loss"].item()) < 1e-6, (loss.item(), fixture["loss"].item())  # measured 1.2e-7
    params = dict(model.named_parameters())
    assert {zoo_key(key) for key in fixture["grads"]} == {name for name, p in params.items() if p.grad is not None}
    worst, where = max(
        ((params[zoo_key(key)].grad - grad).abs().max().item(), key) for key, grad in fixture["grads"].items()
    )
    # measured 1.2e-7, the largest gradient being 1.17; other CPUs sum float32 in other orders
    assert worst < 1e-5, f"max abs gradient diff {worst:.2e} in {where}"
