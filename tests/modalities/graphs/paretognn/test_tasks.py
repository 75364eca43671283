"""ParetoGNN's encoder and pretext tasks on a small fixed graph: finite losses that reach the
encoder, replayable randomness, and learning within 50 Adam steps."""

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import stochastic_blockmodel_graph

from modalities.graphs.paretognn.gcn import BATCHNORM_MOMENTUM, GCNStack
from modalities.graphs.paretognn.tasks import (
    SCRIPT_TASKS,
    Decorrelation,
    LinkPrediction,
    build_tasks,
    drop_edges,
    feature_dropout,
    mask_feature_columns,
    sample_negative_edges,
)

IN_DIM, HIDDEN, PREDICTOR_DIM = 16, (32, 16), 32

#: probe loss after 50 Adam steps (lr 1e-2) / before, for encoder seeds 0-3:
#: recon 0.15-0.28, ming 0.57-0.68, decor 0.31-0.42, minsg 0.52-0.62, link 0.59-0.73
MAX_LOSS_RATIO = {"p_recon": 0.5, "p_ming": 0.85, "p_decor": 0.6, "p_minsg": 0.8, "p_link": 0.85}



@pytest.fixture(scope="module")
def graph() -> Data:
    """Four communities of 16 nodes whose features scatter around one centroid per community."""
    torch.manual_seed(0)
    edge_index = stochastic_blockmodel_graph([16] * 4, [[0.3 if i == j else 0.02 for j in range(4)] for i in range(4)])
    generator = torch.Generator().manual_seed(0)
    community = torch.arange(4).repeat_interleave(16)
    x = torch.randn(4, IN_DIM, generator=generator)[community] + 0.5 * torch.randn(64, IN_DIM, generator=generator)
    return Data(x=x, edge_index=edge_index)


def encoder_and_task(name: str, seed: int = 0):
    torch.manual_seed(seed)
    encoder = GCNStack(IN_DIM, HIDDEN, prelu=True, dropout=0.0)
    return encoder, build_tasks([name], IN_DIM, encoder.embed_dim, predictor_dim=PREDICTOR_DIM)[name]


# ----------------------------------------------------------------------------- encoder


def test_encoder_layout_follows_upstream(graph):
    encoder = GCNStack(IN_DIM, HIDDEN, prelu=True, dropout=0.0)
    assert encoder.embed_dim == 16
    assert [norm.momentum for norm in encoder.norms] == [BATCHNORM_MOMENTUM] * 2 == [0.99] * 2
    assert all(isinstance(activation, torch.nn.PReLU) for activation in encoder.activations)
    hidden = encoder(graph.x, graph.edge_index, output_hidden_states=True)
    assert [tuple(h.shape) for h in hidden] == [(64, 32), (64, 16)]
    assert torch.equal(hidden[-1], encoder(graph.x, graph.edge_index))
    assert isinstance(GCNStack(IN_DIM, HIDDEN, prelu=False).activations[0], torch.nn.ReLU)
    with pytest.raises(ValueError, match="norm"):
        GCNStack(IN_DIM, HIDDEN, norm="group")


def test_first_layer_is_dgl_graphconv_on_a_self_looped_graph(graph):
    """DGL GraphConv (norm 'both', bias) on the graph with one self-loop per node, then BN and PReLU."""
    encoder = GCNStack(IN_DIM, HIDDEN).eval()
    conv = encoder.convs[0]
    adjacency = torch.zeros(64, 64)
    adjacency[graph.edge_index[1], graph.edge_index[0]] = 1.0
    adjacency += torch.eye(64)
    scale = adjacency.sum(dim=1).rsqrt()
    expected = (scale[:, None] * adjacency * scale[None, :]) @ graph.x @ conv.lin.weight.T + conv.bias
    expected = encoder.activations[0](encoder.norms[0](expected))
    assert torch.allclose(encoder(graph.x, graph.edge_index, output_hidden_states=True)[0], expected, atol=1e-5)


# ----------------------------------------------------------------------------- augmentations


def test_augmentations_drop_edges_and_whole_feature_columns():
    generator = torch.Generator().manual_seed(0)
    edges = torch.randint(0, 100, (2, 20000), generator=generator)
    kept = drop_edges(edges, 0.3, generator).size(1) / 20000
    assert 0.68 < kept < 0.72
    zeros = mask_feature_columns(torch.rand(50, 400, generator=generator) + 1.0, 0.3, generator) == 0
    assert torch.equal(zeros.any(dim=0), zeros.all(dim=0)), "a column is zeroed for every node or for none"
    assert 0.25 < zeros.all(dim=0).float().mean() < 0.35


def test_feature_dropout_rescales_the_kept_features_as_f_dropout():
    """Dropout at ratio 0.3 zeroes about 30% of the entries and multiplies the rest by 1 / 0.7, so
    the mean is kept (within 0.02 over 40,000 ones); unscaled, it would fall to about 0.7."""
    dropped = feature_dropout(torch.ones(200, 200), 0.3, torch.Generator().manual_seed(0))
    assert dropped.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert float(dropped.mean()) == pytest.approx(1.0, abs=0.02)


def test_negative_edges_avoid_edges_and_leave_python_random_alone(graph):
    import random

    random.seed(7)
    expected_next = random.random()
    random.seed(7)
    negatives = sample_negative_edges(graph.edge_index, 64, 100, torch.Generator().manual_seed(0))
    assert random.random() == expected_next
    existing = set(map(tuple, graph.edge_index.T.tolist()))
    assert negatives.size(1) == 100
    assert not existing & set(map(tuple, negatives.T.tolist()))
    assert (negatives[0] != negatives[1]).all()


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("name", SCRIPT_TASKS)
def test_loss_is_a_finite_scalar_that_reaches_the_encoder(graph, name):
    encoder, task = encoder_and_task(name)
    loss = task.loss(encoder, graph, torch.Generator().manual_seed(0))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for parameter_name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    assert all(conv.lin.weight.grad.abs().sum() > 0 for conv in encoder.convs)
    for parameter_name, parameter in task.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", SCRIPT_TASKS)
def test_a_generator_replays_the_loss(graph, name):
    encoder, task = encoder_and_task(name)
    first = task.loss(encoder, graph, torch.Generator().manual_seed(3))
    second = task.loss(encoder, graph, torch.Generator().manual_seed(3))
    other = task.loss(encoder, graph, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", SCRIPT_TASKS)
def test_loss_falls_over_50_adam_steps(graph, name):
    """The loss on one fixed draw of masks/views/negatives, before and after 50 steps on fresh draws."""
    encoder, task = encoder_and_task(name)
    optimizer = torch.optim.Adam([*encoder.parameters(), *task.parameters()], lr=1e-2)

    def probe() -> float:
        return task.loss(encoder, graph, torch.Generator().manual_seed(123)).item()

    before = probe()
    generator = torch.Generator().manual_seed(10)
    for _ in range(50):
        loss = task.loss(encoder, graph, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert probe() < MAX_LOSS_RATIO[name] * before


# ----------------------------------------------------------------------------- factory


def test_build_tasks_settings_and_errors():
    tasks = build_tasks(SCRIPT_TASKS, 500, 256, p_decor={"decorrelation_weight": 0.01})
    assert list(tasks) == list(SCRIPT_TASKS)
    assert tasks["p_decor"].decorrelation_weight == 0.01 and isinstance(tasks["p_decor"], Decorrelation)
    assert tasks["p_minsg"].temperature == 0.1 and tasks["p_minsg"].projector[0].out_features == 512
    assert isinstance(tasks["p_link"], LinkPrediction) and tasks["p_link"].hidden.out_features == 512
    assert tasks["p_recon"].mask_token.shape == (1, 500) and tasks["p_recon"].mask_ratio == 0.5
    with pytest.raises(ValueError, match="p_gm"):
        build_tasks(["p_gm"], 500, 256)
    with pytest.raises(ValueError, match="p_link"):
        build_tasks(["p_recon"], 500, 256, p_link={"negative_ratio": 2})
