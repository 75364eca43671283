"""Token classification heads: a class for each graph node, audio frame or image patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

import zoo
from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
from zoo.errors import ConfigError, InputError
from zoo.heads import IGNORE_INDEX, TOKEN_COUNTS

RATE = 16000


def graph_encoder() -> GraphMAEEncoder:
    torch.manual_seed(0)
    return GraphMAEEncoder(GraphMAEConfig(in_dim=6, num_hidden=8, num_heads=2, num_layers=2)).eval()


def communities(num_nodes: int = 40, seed: int = 0) -> Data:
    """Two communities (dense inside, one bridge); a node's features hint at its community."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(num_nodes) >= num_nodes // 2).long()
    pairs = torch.randint(0, num_nodes // 2, (2, 4 * num_nodes), generator=generator)
    edges = torch.cat([pairs, pairs + num_nodes // 2 * (torch.rand(1, 4 * num_nodes, generator=generator) > 0.5)], 1)
    edges = torch.cat([edges, torch.tensor([[0], [num_nodes - 1]])], 1)
    hint = 1.5 * labels[:, None] * torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    features = torch.randn(num_nodes, 6, generator=generator) + hint
    return Data(x=features, edge_index=edges, y=labels)


def frames(encoder, waves) -> list[int]:
    return [len(tokens) for tokens in encoder.embed(waves, sampling_rate=RATE, pool="none", progress=False)]


def test_a_node_classifier_learns_from_the_labelled_nodes():
    graph = communities()
    train = torch.arange(len(graph.y)) % 4 == 0
    classifier = zoo.for_token_classification(graph_encoder(), labels=["left", "right"], freeze=False)
    batch = classifier.collate([{"input": graph, "label": torch.where(train, graph.y, IGNORE_INDEX)}])
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.02)
    classifier.train()
    losses = []
    for _ in range(40):
        loss = classifier(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    predicted = [node[0][0] for node in classifier.predict(graph)]
    held_out = [name == ["left", "right"][label] for name, label, seen in zip(predicted, graph.y, train) if not seen]
    assert np.mean(held_out) >= 0.9, np.mean(held_out)


@pytest.mark.parametrize("layer", [None, 1, "weighted"])
def test_raw_inputs_score_as_the_batch_path_for_graphs(layer):
    """`logits` reads `embed(pool="none")`, whose layers come node-first for graphs; it must give
    the forward's logits (max abs diff 1e-5)."""
    classifier = zoo.for_token_classification(graph_encoder(), num_labels=3, layer=layer).eval()
    if classifier.layer_weights is not None:
        classifier.layer_weights.logits.data = torch.tensor([0.5, -1.0])
    graphs = [communities(12, seed=1), communities(20, seed=2)]
    with torch.no_grad():
        batched = classifier(**classifier.processor(graphs)).logits
    rows = classifier.logits(graphs)
    assert [tuple(row.shape) for row in rows] == [(12, 3), (20, 3)]
    for index, row in enumerate(rows):
        torch.testing.assert_close(row, batched[index, : len(row)], atol=1e-5, rtol=0)
    torch.testing.assert_close(classifier.logits(graphs[0]), rows[0], atol=0, rtol=0)  # one Data: (N, C)


@pytest.mark.parametrize("pool", ["sum", "max", "mean"])
def test_a_graph_classifier_reads_a_readout_the_same_in_a_padded_batch_and_from_raw_graphs(pool):
    """A graph head may read the encoder's sum or max readout (GraphMAE's graph checkpoints are
    trained with one): in a padded batch the padding takes no part (max abs diff 1e-5 against
    `logits`, which reads `embed`'s readout of each graph)."""
    classifier = zoo.for_classification(graph_encoder(), num_labels=3, pool=pool).eval()
    graphs = [communities(12, seed=1), communities(20, seed=2)]
    graphs[0].x = graphs[0].x - 5.0  # negative features: a max over zero padding would show
    with torch.no_grad():
        batched = classifier(**classifier.processor(graphs)).logits
    torch.testing.assert_close(classifier.logits(graphs), batched, atol=1e-5, rtol=0)
    expected = classifier.head(classifier.encoder.embed(graphs[:1], pool=pool, progress=False))
    torch.testing.assert_close(batched[:1], expected, atol=1e-5, rtol=0)


def test_a_readout_is_for_graph_encoders(micro_hubert):
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    with pytest.raises(ConfigError, match="pool='sum' is a graph readout and HubertEncoder is a speech encoder; use "
                                          "pool='mean'$"):
        zoo.for_classification(micro_hubert, num_labels=2, pool="sum")
    vit = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=1, num_heads=3))
    with pytest.raises(ConfigError, match="GmmlEncoder is a vision encoder; use pool='mean' or 'cls'$"):  # was 'mean'
        zoo.for_classification(vit, num_labels=2, pool="max")


@pytest.mark.parametrize("layer", [None, "weighted"])
def test_raw_inputs_score_as_the_batch_path_for_audio_frames(micro_hubert, layer):
    classifier = zoo.for_token_classification(micro_hubert, num_labels=4, layer=layer).eval()
    if classifier.layer_weights is not None:
        classifier.layer_weights.logits.data = torch.linspace(-1, 1, len(classifier.layer_weights.indices))
    wave = np.sin(np.arange(6000) / 7).astype(np.float32)
    with torch.no_grad():
        batched = classifier(**classifier.processor([wave], sampling_rate=RATE)).logits[0]
    (row,) = classifier.logits([wave], sampling_rate=RATE)
    assert row.shape == (frames(micro_hubert, [wave])[0], 4)
    torch.testing.assert_close(row, batched, atol=1e-5, rtol=0)


def test_an_image_head_labels_patches_not_the_cls_token():
    torch.manual_seed(0)
    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=8, hidden_size=24, depth=2, num_heads=2)).eval()
    classifier = zoo.for_token_classification(encoder, num_labels=3).eval()
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        batched = classifier(**classifier.processor([image])).logits
    assert batched.shape == (1, 16, 3)  # a 4 x 4 grid of patches
    torch.testing.assert_close(classifier.logits([image])[0], batched[0], atol=1e-5, rtol=0)
    loss = classifier(**classifier.collate([{"input": image, "label": [0, 1, 2, 0] * 4}])).loss
    assert torch.isfinite(loss)


def test_token_labels_that_do_not_fit_are_named(micro_hubert):
    classifier = zoo.for_token_classification(micro_hubert, labels=["silence", "tone"])
    waves = [np.zeros(3200, np.float32), np.ones(6400, np.float32) * 0.1]
    short, long = frames(micro_hubert, waves)
    batch = classifier.processor(waves, sampling_rate=RATE)
    fitting = torch.full((2, long), IGNORE_INDEX)
    fitting[0, :short], fitting[1] = 0, 1
    assert torch.isfinite(classifier(**batch, labels=fitting[:, : long - 1]).loss)  # trailing tokens unlabelled
    beyond = fitting.clone()
    beyond[0, short] = 1
    with pytest.raises(InputError, match=f"item 0 of the batch has a label for token {short} but only {short} tokens"):
        classifier(**batch, labels=beyond)
    longer = torch.cat([fitting, torch.full((2, 1), IGNORE_INDEX)], 1)
    assert torch.isfinite(classifier(**batch, labels=longer).loss)  # ignored labels past the end are fine
    longer[1, long] = 0
    with pytest.raises(InputError, match=f"item 1 of the batch has a label for token {long} but only {long} tokens"):
        classifier(**batch, labels=longer)
    out_of_range = fitting.clone()
    out_of_range[1, 0] = 2
    with pytest.raises(InputError, match="label 2 is out of range for 2 classes"):
        classifier(**batch, labels=out_of_range)
    with pytest.raises(InputError, match=r"shape \(2, tokens\)"):
        classifier(**batch, labels=torch.tensor([0, 1]))
    with pytest.raises(InputError, match=r"shape \(2, tokens\)"):
        classifier(**batch, labels=fitting.float())


def test_collate_pads_token_labels_and_takes_names(micro_hubert):
    classifier = zoo.for_token_classification(micro_hubert, labels=["silence", "tone"])
    waves = [np.zeros(3200, np.float32), np.ones(6400, np.float32) * 0.1]
    batch = classifier.collate([{"input": waves[0], "label": ["silence", "tone", IGNORE_INDEX]},
                                {"input": waves[1], "label": np.array([1, 0])}], sampling_rate=RATE)
    assert batch["labels"].tolist() == [[0, 1, IGNORE_INDEX], [1, 0, IGNORE_INDEX]]
    assert batch[TOKEN_COUNTS].tolist() == [3, 2]
    with pytest.raises(InputError, match="item 0 of the batch has 3 token labels but 159 tokens; give one label "
                                         "per token"):  # the rows' last tokens were read as padding, without a word
        classifier(**batch)
    frames = [len(tokens) for tokens in micro_hubert.embed(waves, sampling_rate=RATE, pool="none", progress=False)]
    whole = classifier.collate([{"input": wave, "label": [index % 2 for index in range(count)]}
                                for wave, count in zip(waves, frames)], sampling_rate=RATE)
    assert frames == [159, 319] and torch.isfinite(classifier(**whole).loss)
    with pytest.raises(InputError, match="one label per token"):
        classifier.collate([{"input": waves[0], "label": 1}], sampling_rate=RATE)
    with pytest.raises(InputError, match="'hum' is not one of the head's 2 labels"):
        classifier.collate([{"input": waves[0], "label": ["hum"]}], sampling_rate=RATE)
    with pytest.raises(InputError, match="label 0.5 is not a class index"):
        classifier.collate([{"input": waves[0], "label": [0.5]}], sampling_rate=RATE)


def test_a_batch_without_labelled_tokens_gives_zero_loss_and_gradient():
    """The mean over labelled tokens would be 0/0 = NaN, and one NaN step ruins the weights."""
    classifier = zoo.for_token_classification(graph_encoder(), num_labels=2, freeze=False)
    graph = communities(10)
    loss = classifier(**classifier.collate([{"input": graph, "label": [IGNORE_INDEX] * 10}])).loss
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in classifier.parameters() if p.grad is not None)


def test_trainer_fine_tunes_a_node_classifier_on_graphs_of_different_sizes(tmp_path):
    from transformers import Trainer, TrainingArguments

    classifier = zoo.for_token_classification(graph_encoder(), num_labels=2, freeze=False)
    graphs = [communities(20 + 4 * (i % 3), seed=i) for i in range(12)]
    dataset = [{"input": graph, "label": graph.y} for graph in graphs]
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=4, num_train_epochs=6,
                             learning_rate=0.02, logging_steps=1, report_to=[], save_strategy="no",
                             remove_unused_columns=False, use_cpu=True)
    trainer = Trainer(model=classifier, args=args, train_dataset=dataset, data_collator=classifier.collate)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0], losses


def test_a_token_head_saves_loads_and_says_what_it_is(tmp_path):
    classifier = zoo.for_token_classification(graph_encoder(), labels=["a", "b", "c"], layer="weighted").eval()
    classifier.save_pretrained(tmp_path / "nodes")
    loaded = zoo.load(tmp_path / "nodes")
    assert isinstance(loaded, zoo.EncoderForTokenClassification) and loaded.labels == ["a", "b", "c"]
    graph = communities(15)
    torch.testing.assert_close(loaded.logits(graph), classifier.logits(graph), atol=0, rtol=0)
    card = (tmp_path / "nodes" / "README.md").read_text()
    assert "pipeline_tag: graph-ml" in card
    assert "A token-classification head over 3 labels (a, b, c) on each node of a learned mix of every layer" in card
    assert "model.predict(graphs)  # per input, per node" in card


def test_bad_token_head_arguments(micro_hubert):
    with pytest.raises(ConfigError, match="a table's tokens are its columns"):
        zoo.for_token_classification(zoo.load("tjepa-adult"), num_labels=2)
    with pytest.raises(ConfigError, match="needs num_labels or labels"):
        zoo.for_token_classification(micro_hubert)
    with pytest.raises(ConfigError, match=r"a token-classification head's pool='mean'; use one of \('none',\)"):
        zoo.EncoderForTokenClassification(micro_hubert, 2, pool="mean")
    with pytest.raises(ConfigError, match="top_k=0"):
        zoo.for_token_classification(micro_hubert, num_labels=2).predict([np.zeros(3200, np.float32)], top_k=0,
                                                                         sampling_rate=RATE)
