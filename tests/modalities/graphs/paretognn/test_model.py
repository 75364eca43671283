"""ParetoGNN's encoder through the shared API, its MGDA objective and `zoo pretrain paretognn`."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch_geometric.data import Data

import zoo
from helpers import shared_path
from modalities.graphs.paretognn.model import ParetoGNNConfig, ParetoGNNEncoder
from modalities.graphs.paretognn.objective import ParetoGNNPretraining
from zoo.cli import main
from zoo.errors import ConfigError, InputError
from zoo.training import TrainConfig, train

SMALL = ParetoGNNConfig(in_dim=12, hidden_dims=(16, 8))



def community_graph(seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(60) % 3
    x = torch.rand(3, 12, generator=g)[labels] + 0.1 * torch.rand(60, 12, generator=g)
    source, target = torch.randint(0, 60, (2, 500), generator=g)
    keep = labels[source] == labels[target]
    return Data(x=x, edge_index=torch.stack([source[keep], target[keep]]))


def test_encoder_embeds_nodes_and_refuses_mixed_widths():
    torch.manual_seed(0)
    encoder = ParetoGNNEncoder(SMALL).eval()
    graph = community_graph()
    nodes = encoder.embed(graph, progress=False)
    assert nodes.shape == (60, 8)
    assert torch.allclose(encoder.embed(graph, node_batch_size=7, progress=False), nodes, atol=1e-5)
    assert encoder.embed(graph, layer=1, progress=False).shape == (60, 16)
    with pytest.raises(InputError, match="different widths"):
        encoder.embed(graph, layer="all", progress=False)
    with pytest.raises(ConfigError, match="norm"):
        ParetoGNNConfig(norm="group")


def seed_all(seed: int) -> None:
    random.seed(seed)  # PyG's negative sampling draws from Python's RNG
    torch.manual_seed(seed)


def test_weighted_update_equals_the_gradient_of_the_weighted_loss():
    """The surrogate loss hands the trainer exactly d(sum_t w_t L_t)/d(params). The graph is the
    processor's (a self-loop per node), as pretraining's is: a node without in-edges reconstructs
    as the decoder's bias alone, and its gradients (about 1e11) would leave the comparison to rounding."""
    torch.manual_seed(0)
    objective = ParetoGNNPretraining(ParetoGNNEncoder(SMALL), predictor_dim=8)
    graph = objective.encoder.processor.prepare(community_graph())
    batch = {"x": graph.x, "edge_index": graph.edge_index}
    seed_all(1)
    output = objective(batch)
    output.loss.backward()
    ours = [p.grad.clone() for p in objective.parameters()]
    weights = [output.logs[f"weight_{name}"] for name in objective.tasks]
    assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0
    objective.zero_grad()
    seed_all(1)
    data = Data(x=graph.x, edge_index=graph.edge_index)
    losses = [task.loss(objective.encoder.node_embeddings, data) for task in objective.tasks.values()]
    total = sum(w * loss for w, loss in zip(weights, losses))
    total.backward()
    assert output.loss.item() == pytest.approx(total.item(), rel=1e-5)
    for mine, reference in zip(ours, (p.grad for p in objective.parameters())):
        assert torch.allclose(mine, reference, rtol=1e-4, atol=1e-6)  # float32 sums in another order


def test_pretraining_lowers_the_multi_task_loss_and_logs_weights(tmp_path):
    graph = community_graph()
    torch.manual_seed(0)
    objective = ParetoGNNPretraining(ParetoGNNEncoder(SMALL), predictor_dim=8)
    prepared = objective.encoder.processor.prepare(graph)
    records = train(objective, [{"x": prepared.x, "edge_index": prepared.edge_index}], tmp_path,
                    TrainConfig(steps=40, lr=0.01, progress=False, max_grad_norm=None, checkpoint_every=40))
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.92 * first, (first, last)  # observed: 1.52 -> 1.31 (0.86)
    assert all(abs(sum(v for k, v in r.items() if k.startswith("weight_")) - 1) < 1e-6 for r in records)


def test_ablation_averages_the_tasks():
    torch.manual_seed(0)
    objective = ParetoGNNPretraining(ParetoGNNEncoder(SMALL), use_pareto=False, predictor_dim=8)
    graph = community_graph()
    logs = objective({"x": graph.x, "edge_index": graph.edge_index}).logs
    assert {v for k, v in logs.items() if k.startswith("weight_")} == {0.2}


def test_pretrain_and_probe_commands_on_cora(tmp_path, capsys):
    root = shared_path("data", "planetoid")
    out = tmp_path / "run"
    args = ["pretrain", "paretognn", "--dataset", "cora", "--data", str(root), "-o", str(out), "--steps", "2",
            "--set", "hidden_dims=[16, 8]", "--set", "predictor_dim=8", "--set", "warmup_steps=1", "--no-progress"]
    assert main([*args, "--time-limit", "0"]) == 0
    assert "time limit reached at step 1 of 2" in capsys.readouterr().err
    assert main(args) == 0  # resumes at step 1
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    tasks = ("p_recon", "p_ming", "p_decor", "p_minsg", "p_link")
    assert record["step"] == 2 and {f"weight_{task}" for task in tasks} <= set(record)
    assert zoo.load(out / "encoder").config.hidden_dims == (16, 8)
    capsys.readouterr()
    assert main(["probe", str(out / "encoder"), "--dataset", "cora", "--data", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["early_stopped_acc"] > 20


def test_the_recipe_decays_every_parameter_as_upstreams_adamw():
    import argparse

    from modalities.graphs.paretognn.pretrain import train_config
    from zoo.registry import get_entry
    from zoo.training import make_optimizer

    recipe = get_entry("paretognn-cora").pretraining
    args = argparse.Namespace(checkpoint_every=50, seed=0, device="cpu", no_progress=True, time_limit=None)
    config = train_config(recipe, args)
    encoder = ParetoGNNEncoder(SMALL)
    decayed, spared = make_optimizer(encoder, config).param_groups
    assert len(decayed["params"]) == len(list(encoder.parameters())) and not spared["params"]
    assert decayed["weight_decay"] == recipe["weight_decay"] == 1e-5
