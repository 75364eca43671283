"""Fine-tuning heads: they learn in a plain loop and in transformers' Trainer, and save/load."""

import functools

import numpy as np
import pytest
import torch
from helpers import EMBEDDED_INPUTS, MICRO_HUBERT, cora_like_graph

import zoo
from zoo.errors import ConfigError, InputError
from zoo.heads import IGNORE_INDEX

RATE = 16000


def tones(count: int, seed: int = 0):
    """Two classes of noisy sine tones (300 Hz vs 2 kHz) of random lengths."""
    generator = np.random.default_rng(seed)
    items, labels = [], []
    for index in range(count):
        label = index % 2
        length = int(generator.integers(3000, 6000))
        time = np.arange(length) / RATE
        wave = np.sin(2 * np.pi * (300 if label == 0 else 2000) * time) + 0.1 * generator.standard_normal(length)
        items.append(wave.astype(np.float32))
        labels.append(label)
    return items, labels


def test_classifier_learns_in_a_plain_loop(micro_hubert):
    classifier = zoo.for_classification(micro_hubert, num_labels=2, layer="weighted")
    assert not any(p.requires_grad for p in classifier.encoder.parameters())
    items, labels = tones(16)
    batch = classifier.processor(items, sampling_rate=RATE)
    optimizer = torch.optim.Adam([p for p in classifier.parameters() if p.requires_grad], lr=0.05)
    classifier.train()
    losses = []
    for _ in range(40):
        loss = classifier(**batch, labels=torch.tensor(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert not classifier.encoder.training  # a frozen encoder keeps dropout off


def test_hidden_states_are_asked_of_the_encoder_not_the_head(micro_hubert):
    """transformers' `model(**batch, output_hidden_states=True)` on a head was a TypeError,
    "got multiple values for keyword argument 'output_hidden_states'", naming the whole encoder."""
    batch = micro_hubert.processor(tones(2)[0], sampling_rate=RATE)
    for head in (zoo.for_classification(micro_hubert, num_labels=2), zoo.for_token_classification(micro_hubert, 3)):
        with pytest.raises(ConfigError, match=r"for the hidden states call its encoder: "
                                              r"model.encoder\(\*\*batch, output_hidden_states=True\)"):
            head(**batch, output_hidden_states=True)
    assert len(micro_hubert(**batch, output_hidden_states=True).hidden_states) == micro_hubert.num_layers + 1


def test_fine_tuning_updates_the_encoder(micro_hubert):
    classifier = zoo.for_classification(micro_hubert, num_labels=2, freeze=False, layer=1)
    before = classifier.encoder.model.encoder.layers[0].feed_forward.output_dense.weight.clone()
    items, labels = tones(4)
    loss = classifier(**classifier.processor(items, sampling_rate=RATE), labels=torch.tensor(labels)).loss
    loss.backward()
    torch.optim.SGD(classifier.parameters(), lr=0.1).step()
    assert not torch.equal(before, classifier.encoder.model.encoder.layers[0].feed_forward.output_dense.weight)


def test_a_frozen_feature_encoder_gets_no_gradients_and_keeps_its_filters(micro_hubert):
    """As transformers' `freeze_feature_encoder`: the conv front end is fixed, the layers train."""
    classifier = zoo.for_classification(micro_hubert, num_labels=2, freeze=False)
    classifier.freeze_feature_encoder()
    items, labels = tones(4)
    batch = classifier.processor(items, sampling_rate=RATE)
    front_end = classifier.encoder.model.feature_extractor
    before = {key: value.clone() for key, value in front_end.state_dict().items()}
    classifier.train()
    classifier(**batch, labels=torch.tensor(labels)).loss.backward()
    torch.optim.SGD([p for p in classifier.parameters() if p.requires_grad], lr=0.1).step()
    assert all(parameter.grad is None for parameter in front_end.parameters())
    assert all(torch.equal(value, before[key]) for key, value in front_end.state_dict().items())
    assert classifier.encoder.model.encoder.layers[0].feed_forward.output_dense.weight.grad is not None
    gmml = zoo.for_classification(zoo.load("gmml-vit-tiny-cifar10"), num_labels=2, freeze=False)
    with pytest.raises(ConfigError, match="gmml encoders have no conv feature encoder to freeze"):
        gmml.freeze_feature_encoder()


def test_a_frozen_beats_patch_embedding_gets_no_gradients_and_keeps_its_filters():
    """BEATs' front end is one conv over fbank patches (upstream fixes it with feature_grad_mult 0);
    `freeze_feature_encoder` raised "no conv feature encoder to freeze" for it."""
    classifier = zoo.for_classification(zoo.load("beats-tiny"), num_labels=2, freeze=False)
    classifier.freeze_feature_encoder()
    items, labels = tones(2)
    front_end = classifier.encoder.patch_embedding
    before = {key: value.clone() for key, value in front_end.state_dict().items()}
    classifier.train()
    classifier(**classifier.processor(items, sampling_rate=RATE), labels=torch.tensor(labels)).loss.backward()
    torch.optim.SGD([p for p in classifier.parameters() if p.requires_grad], lr=0.1).step()
    assert all(parameter.grad is None for parameter in front_end.parameters())
    assert all(torch.equal(value, before[key]) for key, value in front_end.state_dict().items())
    assert classifier.encoder.layer_norm.weight.grad is not None and not classifier.freeze


def test_trainer_runs_the_head(micro_hubert, tmp_path):
    from transformers import Trainer, TrainingArguments

    classifier = zoo.for_classification(micro_hubert, num_labels=2)
    items, labels = tones(16)
    dataset = [{"input": item, "label": label} for item, label in zip(items, labels)]
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=8, num_train_epochs=8,
                             learning_rate=0.05, logging_steps=1, report_to=[], save_strategy="no",
                             remove_unused_columns=False, use_cpu=True)
    trainer = Trainer(model=classifier, args=args, train_dataset=dataset,
                      data_collator=lambda examples: classifier.collate(examples, sampling_rate=RATE))
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert np.isfinite(result.training_loss) and losses[-1] < losses[0], losses


def test_trainer_dropping_the_input_column_is_explained(micro_hubert, tmp_path):
    """transformers' Trainer drops a datasets.Dataset's columns that forward() does not name,
    'input' among them; the message said to rename a column the dataset already had."""
    import datasets
    from transformers import Trainer, TrainingArguments

    classifier = zoo.for_classification(micro_hubert, labels=["low", "high"])
    items, labels = tones(4)
    dataset = datasets.Dataset.from_dict({"input": items, "label": labels})
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=4, num_train_epochs=1,
                             report_to=[], save_strategy="no", use_cpu=True)
    collate = functools.partial(classifier.collate, sampling_rate=RATE)
    with pytest.raises(InputError, match="lacks \\['input'\\].*remove_unused_columns=False"):
        Trainer(model=classifier, args=args, train_dataset=dataset, data_collator=collate).train()
    args.remove_unused_columns = False
    assert np.isfinite(Trainer(model=classifier, args=args, train_dataset=dataset,
                               data_collator=collate).train().training_loss)


def test_trainer_reads_an_undecoded_audio_dataset_with_label_names(micro_hubert, tmp_path):
    """How to fine-tune on a `datasets` audio set here: `datasets` >= 4 decodes Audio only through
    torchcodec, so the column is cast to Audio(decode=False) and the processor reads the files."""
    import datasets
    import soundfile
    from transformers import Trainer, TrainingArguments

    items, labels = tones(8)
    paths = [str(tmp_path / f"{index}.wav") for index in range(len(items))]
    for path, item in zip(paths, items):
        soundfile.write(path, item[::2] * 0.5, RATE // 2)  # the processor resamples the files' 8 kHz
    names = ["low", "high"]
    dataset = datasets.Dataset.from_dict({"input": paths, "label": [names[label] for label in labels]})
    dataset = dataset.cast_column("input", datasets.Audio(decode=False))
    classifier = zoo.for_classification(micro_hubert, labels=names)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=4, num_train_epochs=2,
                             report_to=[], save_strategy="no", use_cpu=True, remove_unused_columns=False)
    result = Trainer(model=classifier, args=args, train_dataset=dataset, data_collator=classifier.collate).train()
    assert result.global_step == 4 and np.isfinite(result.training_loss)


def test_heads_save_and_load_like_checkpoints(micro_hubert, tmp_path):
    regressor = zoo.for_regression(micro_hubert, num_targets=1, layer="weighted")
    torch.nn.init.normal_(regressor.head.weight)
    regressor.save_pretrained(tmp_path / "reg")
    loaded = zoo.load(tmp_path / "reg")
    assert isinstance(loaded, zoo.EncoderForRegression) and loaded.layer == "weighted"
    items, targets = tones(3)
    batch = regressor.processor(items, sampling_rate=RATE)
    regressor.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, regressor(**batch).logits)
        loss = loaded(**batch, labels=torch.tensor(targets, dtype=torch.float32)).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert isinstance(zoo.EncoderForRegression.from_pretrained(tmp_path / "reg"), zoo.EncoderForRegression)
    with pytest.raises(zoo.ZooError, match="not a EncoderForClassification"):
        zoo.EncoderForClassification.from_pretrained(tmp_path / "reg")


def test_a_saved_head_says_what_it_is_in_its_card(micro_hubert, tmp_path):
    """The card written when none is given: a pushed classifier must not present itself as a bare
    encoder, and says how to call it."""
    zoo.for_classification(micro_hubert, labels=["yes", "no"], layer=1, freeze=False).save_pretrained(tmp_path / "clf")
    card = (tmp_path / "clf" / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "# hubert classification model" in card
    assert ("A classification head over 2 labels (yes, no) on the mean of the tokens of layer 1 of a hubert speech "
            "encoder (2 layers, width 32,") in card and "training it updates the head and the encoder." in card
    assert 'model.predict(["clip.wav"], top_k=3)' in card
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    HubertEncoder(HubertEncoderConfig(**{**MICRO_HUBERT, "num_hidden_layers": 1})).save_pretrained(tmp_path / "one")
    assert "(1 layer, width" in (tmp_path / "one" / "README.md").read_text()  # it said "1 layers"
    zoo.for_regression(micro_hubert, pool="mean").save_pretrained(tmp_path / "reg")
    card = (tmp_path / "reg" / "README.md").read_text()
    assert "A regression head over 1 target on the mean of the tokens of the last layer" in card
    assert "training it updates the head only." in card  # frozen: was said to train the encoder too
    micro_hubert.save_pretrained(tmp_path / "enc")
    card = (tmp_path / "enc" / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "model.embed([\"clip.wav\"])  # (N, 32)" in card


def test_an_image_encoders_card_files_it_under_image_feature_extraction():
    """The Hub's task for an image encoder is image-feature-extraction: a vision card saying
    feature-extraction (the text and audio one) was filed, and searched for, with those."""
    from zoo.cards import default_card

    assert "pipeline_tag: image-feature-extraction\n" in default_card(zoo.load("gmml-vit-tiny-cifar10"))


def test_each_kind_of_head_has_its_pipeline_tag_and_predict_line(micro_hubert):
    """Each head class says how the Hub files it and how it is called, by its encoder's modality."""
    from zoo.cards import default_card

    cards = {
        "audio tagging": default_card(zoo.for_tagging(micro_hubert, labels=["a", "b"])),
        "audio frames": default_card(zoo.for_token_classification(micro_hubert, num_labels=2)),
        "table regression": default_card(zoo.for_regression(zoo.load("tjepa-adult"))),
        "table classification": default_card(zoo.for_classification(zoo.load("tjepa-adult"), num_labels=2)),
    }
    expected = {
        "audio tagging": ("audio-classification", 'model.predict(["clip.wav"], top_k=3)  # [[(label, probability)'),
        "audio frames": ("token-classification", 'model.predict(["clip.wav"])  # per input, per frame:'),
        "table regression": ("tabular-regression", "model.predict(table)  # (N, targets)"),
        "table classification": ("tabular-classification", "model.predict(table, top_k=3)"),
    }
    for kind, (tag, usage) in expected.items():
        assert f"pipeline_tag: {tag}\n" in cards[kind] and usage in cards[kind], kind


def test_bad_head_arguments(micro_hubert):
    with pytest.raises(ConfigError, match="out of range"):
        zoo.for_classification(micro_hubert, num_labels=2, layer=9)
    with pytest.raises(ConfigError, match="pool"):
        zoo.for_classification(micro_hubert, num_labels=2, pool="max")
    with pytest.raises(ConfigError, match="a whole number of outputs, at least one; got 0"):
        zoo.for_classification(micro_hubert, num_labels=0)
    for one_class in (lambda: zoo.for_classification(micro_hubert, num_labels=1),  # predicted 1.0, a loss of 0
                      lambda: zoo.for_classification(micro_hubert, labels=["only"]),
                      lambda: zoo.for_token_classification(micro_hubert, num_labels=1)):
        with pytest.raises(ConfigError, match="head needs at least 2 classes, got 1: one class is always predicted"):
            one_class()
    assert zoo.for_regression(micro_hubert, 1).num_outputs == 1
    with pytest.raises(ConfigError, match=r"labels=\[1, 0\] names class 0 1, but an integer label is a class index: "
                                          "an example labelled 1 would train class 1, not the one named 1"):
        zoo.for_classification(micro_hubert, labels=np.array([1, 0]).tolist())  # label 1 trained the class "0"
    assert zoo.for_classification(micro_hubert, labels=[0, 1, 2]).labels == ["0", "1", "2"]  # in index order
    with pytest.raises(ConfigError, match="got 2.0"):
        zoo.for_classification(micro_hubert, num_labels=2.0)
    with pytest.raises(ConfigError, match="head layer=\\[1, 2\\]; use one layer"):
        zoo.for_classification(micro_hubert, num_labels=2, layer=[1, 2])
    with pytest.raises(ConfigError, match="head layer=array\\(\\[1, 2\\]\\); use one layer"):  # numpy's "truth
        zoo.for_classification(micro_hubert, num_labels=2, layer=np.array([1, 2]))  # value is ambiguous" error
    assert zoo.for_classification(micro_hubert, num_labels=2, layer=torch.tensor(1)).layer == 1
    with pytest.raises(ConfigError, match="dropout=1.5; use a probability"):
        zoo.for_classification(micro_hubert, num_labels=2, dropout=1.5)
    numpy_sized = zoo.for_classification(micro_hubert, num_labels=np.int64(2), layer=np.int64(1))
    assert (numpy_sized.num_outputs, numpy_sized.layer) == (2, 1) and type(numpy_sized.layer) is int


def test_tagging_head_scores_multi_label_targets(micro_hubert, tmp_path):
    tagger = zoo.for_tagging(micro_hubert, labels=["a", "b", "c"])
    batch = tagger.processor([np.zeros(4000, np.float32), np.ones(4000, np.float32) * 0.1], sampling_rate=16000)
    output = tagger(**batch, labels=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        output.logits, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert torch.allclose(output.loss, expected)
    tagger.save_pretrained(tmp_path / "t")
    assert zoo.load(tmp_path / "t").labels == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="2 label names for 3 outputs"):
        zoo.EncoderForTagging(micro_hubert, 3, labels=["a", "b"])
    with pytest.raises(ConfigError, match=r"label names \['a'\] are given more than once"):
        zoo.for_classification(micro_hubert, labels=["a", "b", "a"])
    for make in (zoo.for_classification, zoo.for_tagging, zoo.for_token_classification):  # were 3 classes a, b, c
        with pytest.raises(ConfigError, match="labels='abc' is a string; give a list of names"):
            make(micro_hubert, labels="abc")
    with pytest.raises(ConfigError, match="already a tagging model .* on its encoder: `model.encoder`"):
        zoo.for_classification(tagger, num_labels=2)
    wave = np.zeros(4000, np.float32)
    assert len(tagger.predict([wave], top_k=10, sampling_rate=16000)[0]) == 3
    with pytest.raises(ConfigError, match="top_k=0; ask for at least one label"):
        tagger.predict([wave], top_k=0, sampling_rate=16000)
    assert len(tagger.predict([wave], top_k=np.int64(2), sampling_rate=16000)[0]) == 2  # was "at least one label"
    with pytest.raises(ConfigError, match=r"top_k=2.0; give a whole number of labels"):
        tagger.predict([wave], top_k=2.0, sampling_rate=16000)
    assert zoo.for_tagging(micro_hubert, labels=np.int64(3)).num_outputs == 3  # y.max() + 1: was "not iterable"
    layer_zero = zoo.for_tagging(micro_hubert, labels=2, layer=0)  # was refused: "reads the mean-pooled last layer"
    assert layer_zero.probabilities([wave], sampling_rate=16000).shape == (1, 2)


@pytest.mark.parametrize("layer", [None, 1, "weighted"])
def test_a_classifier_predicts_named_classes_from_raw_inputs(micro_hubert, tmp_path, layer):
    """`predict` / `probabilities` / `logits` on raw inputs give, for every head layer, what the
    model gives on a batch of that one item (it had no predict at all)."""
    classifier = zoo.for_classification(micro_hubert, layer=layer, labels=["low", "high"])
    torch.nn.init.normal_(classifier.head.weight)
    if layer == "weighted":
        torch.nn.init.normal_(classifier.layer_weights.logits)
    items, _ = tones(3)
    logits = classifier.logits(items, sampling_rate=RATE)
    with torch.no_grad():
        alone = classifier.eval()(**classifier.processor(items[1:2], sampling_rate=RATE)).logits
    assert logits.shape == (3, 2) and (logits[1] - alone[0]).abs().max() <= 1e-5
    probabilities = classifier.probabilities(items, sampling_rate=RATE)
    assert torch.allclose(probabilities.sum(-1), torch.ones(3))
    best = classifier.predict(items, top_k=1, sampling_rate=RATE)
    assert [row[0][0] for row in best] == [["low", "high"][int(i)] for i in probabilities.argmax(-1)]
    classifier.save_pretrained(tmp_path / "c")
    assert zoo.load(tmp_path / "c").labels == ["low", "high"]
    regressor = zoo.for_regression(micro_hubert, num_targets=3, layer=layer)
    assert regressor.predict(items, sampling_rate=RATE).shape == (3, 3)
    with pytest.raises(ConfigError, match="needs num_labels or labels"):
        zoo.for_classification(micro_hubert)


def test_labels_that_do_not_fit_the_head_are_named(micro_hubert):
    batch = micro_hubert.processor([np.zeros(4000, np.float32)] * 2, sampling_rate=16000)
    classifier = zoo.for_classification(micro_hubert, num_labels=3)
    cases = [
        (classifier, torch.tensor([1, 5]), "label 5 is out of range for 3 classes"),
        (classifier, torch.tensor([-1, 0]), "label -1 is out of range"),
        (classifier, torch.tensor([1]), "shape \\(1,\\) for a batch of 2"),
        (classifier, torch.tensor([0.0, 1.0]), "class indices .* torch.float32"),
        (zoo.for_regression(micro_hubert, num_targets=2), torch.tensor([0.5, 1.0]), "pass \\(2, 2\\)"),
        (zoo.for_tagging(micro_hubert, labels=3), torch.tensor([1, 0]), "multi-hot rows of shape \\(2, 3\\)"),
        (zoo.for_tagging(micro_hubert, labels=2), torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "in \\[0, 1\\], got .*2\\]"),
    ]
    for head, labels, message in cases:
        with pytest.raises(InputError, match=message):
            head(**batch, labels=labels)
    assert zoo.for_regression(micro_hubert)(**batch, labels=[0.5, 1.0]).loss.shape == ()
    assert classifier(**batch, labels=[2, 0]).loss.shape == ()


def test_collate_names_examples_without_input_or_label_and_text_labels(micro_hubert):
    head = zoo.for_classification(micro_hubert, num_labels=2)
    wave = np.zeros(4000, np.float32)
    with pytest.raises(InputError, match="need the keys 'input' and 'label'; one lacks \\['label'\\]"):
        head.collate([{"input": wave}], sampling_rate=16000)
    with pytest.raises(InputError, match="label 'dog' is not one of the head's 2 labels \\(0, 1\\).*labels=\\[...\\]"):
        head.collate([{"input": wave, "label": "dog"}], sampling_rate=16000)
    with pytest.raises(InputError, match="label 0.5 is not a class index"):
        head.collate([{"input": wave, "label": 0.5}], sampling_rate=16000)
    with pytest.raises(InputError, match="labels such as None are not numbers .*; give class indices or label names"):
        head.collate([{"input": wave, "label": None}], sampling_rate=16000)
    # the advice fits the head: a regressor was told to give class indices, a tagger to use for_classification
    with pytest.raises(InputError, match="labels such as '3.5' are not numbers .*; give numbers \\(a regressor's"):
        zoo.for_regression(micro_hubert).collate([{"input": wave, "label": "3.5"}], sampling_rate=16000)
    with pytest.raises(InputError, match="making the head: zoo.for_tagging\\(encoder, labels=\\[...\\]\\)"):
        zoo.for_tagging(micro_hubert, ["rain"]).collate([{"input": wave, "label": ["snow"]}], sampling_rate=16000)
    assert head.collate([{"input": wave, "label": 1.0}], sampling_rate=16000)["labels"].tolist() == [1]
    assert head.collate([{"input": wave, "label": 1}], sampling_rate=16000)["labels"].tolist() == [1]


def test_examples_may_carry_label_names(micro_hubert):
    """Names given to the head are accepted in place of indices (and of multi-hot rows)."""
    wave = np.zeros(4000, np.float32)
    classifier = zoo.for_classification(micro_hubert, labels=["cat", "dog"])
    batch = classifier.collate([{"input": wave, "label": "dog"}, {"input": wave, "label": 0}], sampling_rate=16000)
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    tagger = zoo.for_tagging(micro_hubert, labels=["rain", "wind", "birds"])
    examples = [{"input": wave, "label": ["birds", "rain"]}, {"input": wave, "label": []}]
    assert tagger.collate(examples, sampling_rate=16000)["labels"].tolist() == [[1, 0, 1], [0, 0, 0]]
    assert tagger(**tagger.collate(examples, sampling_rate=16000)).loss.shape == ()
    with pytest.raises(InputError, match="label 'snow' is not one of the head's 3 labels \\(rain, wind, birds\\)"):
        tagger.collate([{"input": wave, "label": ["snow"]}], sampling_rate=16000)
    with pytest.raises(InputError, match="mix name lists with \\[0, 1, 0\\]"):
        tagger.collate([{"input": wave, "label": ["rain"]}, {"input": wave, "label": [0, 1, 0]}],
                       sampling_rate=16000)


@pytest.mark.parametrize("name", list(EMBEDDED_INPUTS) + ["beats-tiny-tokenizer"])
def test_a_fine_tuned_head_trains_exactly_the_parameters_its_loss_reaches(name):
    """`trainable` parameters are those a loss on the head gets gradients for: the parts
    `forward` never runs (GMML's reconstruction head, HuBERT's mask embedding, a BEATs
    tokenizer's quantizer) stay out, as they would only be decayed and counted."""
    encoder = zoo.load(name)
    batch = encoder.preprocess(EMBEDDED_INPUTS.get(name, EMBEDDED_INPUTS["beats-tiny"])(encoder))
    items = len(encoder(**batch).pooled)
    model = zoo.for_regression(encoder, 2, freeze=False).eval()  # in training, LayerDrop skips a random layer
    model(**batch, labels=torch.ones(items, 2)).loss.backward()
    reached = {key for key, parameter in model.named_parameters() if parameter.grad is not None}
    trainable = {key for key, parameter in model.named_parameters() if parameter.requires_grad}
    assert reached == trainable and len(reached) > 2, sorted(trainable - reached)


def test_a_head_on_a_name_an_empty_batch_and_a_nan_target_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"head goes on an encoder, not on 'hubert-tiny-fsdd' \(str\); pass the "
                                          r"encoder zoo.load\('hubert-tiny-fsdd'\) gives"):
        zoo.for_classification("hubert-tiny-fsdd", num_labels=2)
    regressor = zoo.for_regression(zoo.load("hubert-tiny-fsdd"))
    with pytest.raises(InputError, match=r"collate\(\[\]\): a batch needs at least one example"):
        regressor.collate([])
    batch = regressor.collate([{"input": {"array": np.zeros(16000, np.float32), "sampling_rate": 16000},
                                "label": float("nan")}])
    with pytest.raises(InputError, match="a regression target is nan; drop the examples without a finite target"):
        regressor(**batch)


@pytest.mark.parametrize("name", list(EMBEDDED_INPUTS))
def test_a_head_trains_on_the_features_it_predicts_from(name):
    """A head's `forward` (what training runs) and its `logits` on raw inputs (what `predict`
    and `zoo finetune`'s scoring read: `embed` rows) agree for every pool of the encoder and for
    a learned mix of layers. They did not for GMML's mean (forward averaged the cls token in,
    0.011 apart) nor for a max readout of mixed graph layers (0.088 apart on Cora)."""
    encoder = zoo.load(name)
    items = EMBEDDED_INPUTS[name](encoder)
    one = items[:1] if isinstance(items, list) else items  # audio in a padded batch is not each clip alone
    torch.manual_seed(0)
    for pool in [pool for pool in encoder.pools if pool != "none"]:
        for layer in (None, "weighted"):
            model = zoo.for_classification(encoder, num_labels=3, pool=pool, layer=layer).eval()
            torch.nn.init.normal_(model.head.weight)
            if layer == "weighted":
                torch.nn.init.normal_(model.layer_weights.logits)
            with torch.no_grad():
                trained_on = model(**encoder.preprocess(one)).logits
            assert (trained_on - model.logits(one)).abs().max() < 1e-4, (pool, layer)


@pytest.mark.parametrize("name, pool", [("graphmae-mutag", "sum"), ("gmml-vit-tiny-cifar10", "mean"),
                                        ("tjepa-adult", "mean")])
def test_a_head_pools_as_its_encoders_embed_unless_told(name, pool):
    """A graph checkpoint's head read the mean of its nodes by default where `embed`, `zoo finetune`
    and `zoo probe` read its readout (MUTAG's sum: 85.1 % in 10-fold probes, the mean 80.8 %)."""
    encoder = zoo.load(name)
    items = [cora_like_graph(encoder)] * 2 if name == "graphmae-mutag" else EMBEDDED_INPUTS[name](encoder)
    for make in (zoo.for_classification, zoo.for_regression, zoo.for_tagging):
        head = make(encoder, 2)
        assert head.pool == pool, make
        assert torch.equal(head.embedded(items, None, False), encoder.embed(items, progress=False)), make


@pytest.mark.parametrize("name", ["hubert-tiny-fsdd", "beats-tiny", "graphmae-cora"])
def test_a_half_precision_encoder_and_its_head_take_what_the_processor_makes(name):
    """`forward` on `preprocess` output (float32) of a bfloat16 encoder, and a float32 head's on
    top, run as they do in float32 (HuBERT, MERT and graph encoders raised a dtype mismatch)."""
    encoder = zoo.load(name, dtype="bfloat16")
    batch = encoder.preprocess(EMBEDDED_INPUTS[name](encoder))
    assert encoder(**batch).last_hidden_state.dtype == torch.bfloat16
    logits = zoo.for_classification(encoder, num_labels=2)(**batch).logits
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_beats_in_half_precision_computes_its_fbank_from_the_float32_waveform():
    """A waveform rounded to bfloat16 before BEATs' log-mel put its rounding noise into the quiet
    mel bins: an FSDD digit's pooled row was 26 % off the float32 one in bfloat16 (0.5 % now), 13 % in
    float16 (0.05 % now)."""
    from helpers import shared_path

    clip = str(sorted((shared_path("data", "fsdd", "recordings")).glob("3_*.wav"))[0])
    exact = zoo.load("beats-tiny").embed([clip], progress=False)
    for dtype, bound in (("bfloat16", 0.02), ("float16", 0.005)):
        half = zoo.load("beats-tiny", dtype=dtype).embed([clip], progress=False)
        assert ((half - exact).norm() / exact.norm()).item() < bound, dtype


def test_unfreezing_with_requires_grad_trains_the_encoder_and_is_saved(micro_hubert, tmp_path):
    """Linear probe, then fine-tune, unfreezing as in transformers and timm: the encoder ran under
    no_grad and in eval mode after `requires_grad_(True)` (0 of its 47 tensors changed by a step),
    and the saved config still said freeze=True."""
    classifier = zoo.for_classification(micro_hubert, num_labels=2, freeze=True)
    assert classifier.freeze and not classifier.encoder.training
    classifier.requires_grad_(True)
    classifier.train()
    assert not classifier.freeze and classifier.encoder.training
    before = {key: value.clone() for key, value in classifier.encoder.state_dict().items()}
    items, labels = tones(4)
    classifier(**classifier.processor(items, sampling_rate=RATE), labels=torch.tensor(labels)).loss.backward()
    torch.optim.SGD(classifier.parameters(), lr=0.1).step()
    assert sum(not torch.equal(before[key], value) for key, value in classifier.encoder.state_dict().items()) > 10
    classifier.save_pretrained(tmp_path / "clf")
    assert zoo.load(tmp_path / "clf").freeze is False
    assert "training it updates the head and the encoder" in (tmp_path / "clf" / "README.md").read_text()
    classifier.freeze_feature_encoder()  # the layers still train: not a frozen encoder
    assert not classifier.freeze
    classifier.encoder.requires_grad_(False)
    assert classifier.freeze and not classifier.train().encoder.training
    classifier.freeze = False  # the setter leaves out what forward never runs, as freeze=False does
    assert not classifier.encoder.model.masked_spec_embed.requires_grad and classifier.encoder.training


def test_a_new_head_is_in_training_mode_as_a_whole_and_a_loaded_one_in_eval_mode(micro_hubert, tmp_path):
    """zoo.load gives an encoder in eval mode; a fine-tuning head on it said `training` while its
    encoder ran without dropout, unless the loop called `.train()`."""
    fine_tuned = zoo.for_classification(micro_hubert, num_labels=2, freeze=False)
    assert fine_tuned.training and all(module.training for module in fine_tuned.modules())
    probe = zoo.for_classification(micro_hubert, num_labels=2, freeze=True)
    assert probe.training and probe.head.training and not probe.encoder.training
    fine_tuned.save_pretrained(tmp_path / "clf")
    loaded = zoo.load(tmp_path / "clf")
    assert not any(module.training for module in loaded.modules())


def test_labels_of_any_integer_dtype_train_every_head(micro_hubert):
    """int32 labels (numpy's default on Windows before NumPy 2) passed the checks, then torch's
    cross-entropy raised 'expected target dtype to be Long or Byte, but got Int'."""
    batch = micro_hubert.processor([np.zeros(4000, np.float32), np.ones(4000, np.float32) * 0.1], sampling_rate=RATE)
    classifier = zoo.for_classification(micro_hubert, num_labels=3).eval()
    expected = classifier(**batch, labels=torch.tensor([2, 0])).loss
    for labels in (torch.tensor([2, 0], dtype=torch.int32), np.array([2, 0], np.int32), torch.tensor([2, 0]).byte()):
        assert torch.equal(classifier(**batch, labels=labels).loss, expected), labels.dtype
    tokens = zoo.for_token_classification(micro_hubert, num_labels=2).eval()
    frames = torch.tensor([[0, 1, 1, 0], [1, 0, IGNORE_INDEX, 1]])
    assert torch.equal(tokens(**batch, labels=frames.int()).loss, tokens(**batch, labels=frames).loss)


def test_forward_takes_labels_as_collate_does(micro_hubert):
    """Label names, lists and numpy arrays go through `collate`'s conversion; names in
    `forward(labels=...)` raised torch's "ValueError: too many dimensions 'str'"."""
    batch = micro_hubert.processor([np.zeros(4000, np.float32), np.ones(4000, np.float32) * 0.1], sampling_rate=RATE)
    classifier = zoo.for_classification(micro_hubert, labels=["low", "high"]).eval()
    expected = classifier(**batch, labels=torch.tensor([1, 0])).loss
    for labels in (["high", "low"], [1, 0], np.array([1, 0]), np.array(["high", "low"]), ["high", 0]):
        assert torch.equal(classifier(**batch, labels=labels).loss, expected), labels
    with pytest.raises(InputError, match="'loud' is not one of the head's 2 labels"):
        classifier(**batch, labels=["loud", "low"])
    with pytest.raises(InputError, match="labels of shape \\(\\) for a batch of 2 inputs"):
        classifier(**batch, labels="high")
    tagger = zoo.for_tagging(micro_hubert, labels=["rain", "wind"]).eval()
    assert torch.equal(tagger(**batch, labels=[["wind"], []]).loss, tagger(**batch, labels=[[0, 1], [0, 0]]).loss)
    tokens = zoo.for_token_classification(micro_hubert, labels=["silence", "tone"]).eval()
    frames = len(micro_hubert.embed([np.zeros(4000, np.float32)], sampling_rate=RATE, pool="none", progress=False)[0])
    named = [["silence", "tone"] * (frames // 2) + ["tone"] * (frames % 2), [1, 0] * (frames // 2) + [1] * (frames % 2)]
    indices = torch.tensor([[0, 1] * (frames // 2) + [1] * (frames % 2), named[1]])
    assert torch.equal(tokens(**batch, labels=named).loss, tokens(**batch, labels=indices).loss)


def test_a_head_loaded_in_half_precision_keeps_its_own_layers_float32(micro_hubert, tmp_path):
    """As `for_classification` on a bfloat16 encoder: `zoo.load(head, dtype=...)` turned the
    head's linear layer and layer weights bfloat16 too. A head model tells its encoder's device
    and dtype, as the encoder does."""
    classifier = zoo.for_classification(micro_hubert, num_labels=2, layer="weighted")
    torch.nn.init.normal_(classifier.head.weight)
    classifier.save_pretrained(tmp_path / "clf")
    assert (classifier.device, classifier.dtype) == (torch.device("cpu"), torch.float32)
    half = zoo.load(tmp_path / "clf", dtype="bfloat16")
    assert half.dtype == half.encoder.dtype == torch.bfloat16 and half.device == torch.device("cpu")
    assert half.head.weight.dtype == half.layer_weights.logits.dtype == torch.float32
    assert torch.equal(half.head.weight, classifier.head.weight)
    items, _ = tones(2)
    logits = half(**half.processor(items, sampling_rate=RATE)).logits
    assert logits.dtype == torch.float32 and torch.allclose(logits, classifier.logits(items, sampling_rate=RATE),
                                                            atol=0.1)


def test_collate_and_preprocess_go_into_spawn_workers_without_the_model(micro_hubert):
    """HuBERT's weight-norm positional conv cannot be pickled, and `collate_fn=clf.collate` (or
    `encoder.preprocess`) pickled the whole model into each spawn worker (the default start on
    macOS and Windows): 'Serialization of parametrized modules is only supported through
    state_dict()'."""
    import pickle

    from torch.utils.data import DataLoader

    classifier = zoo.for_classification(micro_hubert, labels=["low", "high"])
    items, labels = tones(4)
    examples = [{"input": item, "label": ["low", "high"][label]} for item, label in zip(items, labels)]
    collate = functools.partial(classifier.collate, sampling_rate=RATE)
    loader = DataLoader(examples, batch_size=2, num_workers=1, multiprocessing_context="spawn", collate_fn=collate)
    batches = list(loader)
    assert [batch["labels"].tolist() for batch in batches] == [labels[:2], labels[2:]]
    assert torch.equal(batches[0]["input_values"], classifier.collate(examples[:2], sampling_rate=RATE)["input_values"])
    preprocess = pickle.loads(pickle.dumps(micro_hubert.preprocess))
    assert torch.equal(preprocess(items[:2], sampling_rate=RATE)["input_values"],
                       micro_hubert.preprocess(items[:2], sampling_rate=RATE)["input_values"])


def test_labels_as_transformers_dicts_are_read_in_index_order(micro_hubert):
    """id2label {1: "dog", 0: "cat"} gave the names ['1', '0']; label2id {"dog": 1, "cat": 0} named
    class 0 "dog"; a set's order changed with PYTHONHASHSEED."""
    import numpy as np

    assert zoo.for_classification(micro_hubert, labels={1: "dog", 0: "cat"}).labels == ["cat", "dog"]
    assert zoo.for_classification(micro_hubert, labels={"dog": np.int64(1), "cat": 0}).labels == ["cat", "dog"]
    assert zoo.for_tagging(micro_hubert, labels={"b": 1, "a": 0}).labels == ["a", "b"]
    assert zoo.for_token_classification(micro_hubert, labels={0: "x", 1: "y"}).labels == ["x", "y"]
    with pytest.raises(ConfigError, match=r"labels=\{'a': 1, 'b': 2\}: a dict is read as id2label .* or label2id "
                                          r".*, with the class indices 0 to 1"):
        zoo.for_classification(micro_hubert, labels={"a": 1, "b": 2})
    with pytest.raises(ConfigError, match="is a set, whose order changes from run to run; .* labels=sorted"):
        zoo.for_classification(micro_hubert, labels={"cat", "dog"})


@pytest.mark.parametrize("name", ["tjepa-adult", "graphmae-cora", "hubert-tiny-fsdd"])
def test_a_head_scores_raw_inputs_in_its_encoders_batches(name, monkeypatch):
    """`logits` (and so `probabilities` and `predict`) passed 8 to `embed` whatever the encoder:
    a table head ran 1,024 rows in 128 passes (1.5x slower on 4,000 Adult rows). It now takes the
    encoder's `embed_batch_size` unless given one."""
    encoder = zoo.load(name)
    model = zoo.for_classification(encoder, num_labels=2)
    sizes = []
    embed = type(encoder).embed

    def spied(self, inputs, **kwargs):
        sizes.append(kwargs["batch_size"])
        return embed(self, inputs, **kwargs)

    monkeypatch.setattr(type(encoder), "embed", spied)
    items = EMBEDDED_INPUTS[name](encoder)
    model.probabilities(items)
    model.predict(items, batch_size=3)
    assert sizes == [encoder.embed_batch_size, 3] and encoder.embed_batch_size in (8, 32, 1024)


def test_a_weighted_mix_of_one_layer_is_refused():
    """paretognn-cora's hidden states are 1433, 512 and 256 wide: layer="weighted" mixed the last
    alone, a last-layer head that said it mixed layers."""
    encoder = zoo.load("paretognn-cora")
    with pytest.raises(ConfigError, match=r"widths are \[1433, 512, 256\]: only the last is; use layer=None"):
        zoo.for_classification(encoder, num_labels=7, layer="weighted")
    assert zoo.for_classification(zoo.load("graphmae-cora"), num_labels=7, layer="weighted").layer_weights.indices
