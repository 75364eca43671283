"""Activation checkpointing: the same outputs and gradients with fewer activations kept, for
every family whose blocks allow it; transformers' switches and its Trainer."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import EMBEDDED_INPUTS, EXAMPLES, audio_clips

import zoo
from zoo.checkpointing import Checkpointing, set_checkpointing
from zoo.errors import ConfigError
from zoo.finetune_objectives import ClassifierObjective


def training_step(model, batch: dict, checkpointed: bool) -> tuple[torch.Tensor, dict, int]:
    """One seeded forward and backward in training mode (dropout on): the output, every
    gradient, and the bytes autograd keeps for the backward pass outside checkpointed blocks."""
    if checkpointed:
        model.activation_checkpointing_enable()
    else:
        model.activation_checkpointing_disable()
    model.train()
    model.zero_grad(set_to_none=True)
    kept = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(**batch)
        loss = (out.last_hidden_state * out.mask[..., None]).square().mean()
    loss.backward()
    grads = {key: parameter.grad.clone() for key, parameter in model.named_parameters() if parameter.grad is not None}
    return out.last_hidden_state.detach(), grads, sum(kept)


@pytest.mark.parametrize("name", list(EMBEDDED_INPUTS))
def test_checkpointed_training_gives_the_same_outputs_and_gradients_keeping_less(name):
    encoder = zoo.load(name)
    batch = encoder.preprocess(EMBEDDED_INPUTS[name](encoder))
    plain, plain_grads, plain_kept = training_step(encoder, batch, checkpointed=False)
    output, grads, kept = training_step(encoder, batch, checkpointed=True)
    assert (output - plain).abs().max() <= 1e-6  # dropout draws the same masks in the recompute
    assert grads.keys() == plain_grads.keys() and len(grads) > 0
    worst = max(float((grads[key] - plain_grads[key]).abs().max()) for key in grads)
    assert worst <= 1e-6, worst
    assert kept < 0.4 * plain_kept, (kept, plain_kept)  # 0.05-0.25 here; 0.56 if HuBERT's conv layers were not


def test_inference_is_unchanged_and_the_switches_report_their_state():
    encoder = zoo.load("hubert-tiny-fsdd")
    clips = audio_clips(encoder)
    before = encoder.embed(clips, progress=False)
    assert not encoder.is_activation_checkpointing and encoder.supports_gradient_checkpointing
    encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"preserve_rng_state": True})
    assert encoder.is_activation_checkpointing and encoder.is_gradient_checkpointing
    assert torch.equal(encoder.embed(clips, progress=False), before)
    encoder.gradient_checkpointing_disable()
    assert not encoder.is_activation_checkpointing


def test_every_n_layers_and_offload():
    encoder = zoo.load("gmml-vit-tiny-cifar10")
    batch = encoder.preprocess(EMBEDDED_INPUTS["gmml-vit-tiny-cifar10"](encoder))
    plain, plain_grads, plain_kept = training_step(encoder, batch, checkpointed=False)
    _, _, all_kept = training_step(encoder, batch, checkpointed=True)
    encoder.activation_checkpointing_enable(every_n_layers=3)
    encoder.train()
    torch.manual_seed(0)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        encoder(**batch)
    assert all_kept < sum(kept) < plain_kept
    encoder.activation_checkpointing_enable(offload=True)
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    out = encoder(**batch)
    (out.last_hidden_state * out.mask[..., None]).square().mean().backward()
    assert (out.last_hidden_state - plain).abs().max() <= 1e-6
    assert max(float((p.grad - plain_grads[k]).abs().max()) for k, p in encoder.named_parameters()
               if p.grad is not None) <= 1e-6


def test_every_n_layers_checkpoints_the_first_block_and_each_nth_after_it(monkeypatch):
    """every_n_layers=3 over 8 blocks checkpoints blocks 0, 3 and 6, so a stack of fewer than n
    blocks still has its first checkpointed; counting from block n - 1 (2 and 5) checkpointed
    nothing in a stack of 2 blocks."""
    import zoo.checkpointing

    checkpointed = []

    def spy(block, *args, **kwargs):
        checkpointed.append(block.index)
        return block(*args)

    class Block:
        def __init__(self, index: int) -> None:
            self.index = index

        def __call__(self, x):
            return x + 1

    monkeypatch.setattr(zoo.checkpointing, "checkpoint", spy)
    for n, blocks, expected in ((3, 8, [0, 3, 6]), (3, 2, [0]), (1, 4, [0, 1, 2, 3]), (4, 8, [0, 4])):
        checkpointed.clear()
        setting = Checkpointing(every_n_layers=n)
        assert [setting.run(index, Block(index), index) for index in range(blocks)] == list(range(1, blocks + 1))
        assert checkpointed == expected, (n, blocks)


def test_offload_holds_the_kept_tensors_in_host_memory_and_only_then(monkeypatch):
    """offload=True runs each checkpointed block inside `torch.autograd.graph.save_on_cpu`
    (pinned where CUDA is there); off, it is not entered. Outputs cannot tell: on the CPU the
    two agree."""
    entered = []
    real = torch.autograd.graph.save_on_cpu

    def spy(*args, **kwargs):
        entered.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", spy)
    x = torch.ones(3, requires_grad=True)
    for offload, expected in ((False, []), (True, [{"pin_memory": torch.cuda.is_available()}] * 2)):
        entered.clear()
        setting = Checkpointing(every_n_layers=2, offload=offload)
        out = sum(setting.run(index, torch.sin, x) for index in range(4))
        out.sum().backward()
        assert entered == expected, offload


def test_bad_settings_and_batch_norm_blocks_are_refused():
    encoder = zoo.load("gmml-vit-tiny-cifar10")
    with pytest.raises(ConfigError, match="every_n_layers=0; use a positive integer"):
        encoder.activation_checkpointing_enable(every_n_layers=0)
    with pytest.raises(ConfigError, match="use_reentrant=True loses the gradients"):
        encoder.activation_checkpointing_enable({"use_reentrant": True})
    assert not encoder.is_activation_checkpointing
    for name, stack in (("paretognn-cora", "GCNStack"), ("graphmae-mutag", "GIN")):
        with pytest.raises(ConfigError, match=f"batch norms in its blocks \\({stack}\\), whose running statistics"):
            zoo.load(name).activation_checkpointing_enable()
    objective = ClassifierObjective(zoo.for_classification(zoo.load("graphmae-mutag"), num_labels=2, freeze=False))
    with pytest.raises(ConfigError, match="^GraphMAEEncoder has batch norms"):  # was ClassifierObjective
        set_checkpointing(objective, Checkpointing())


def test_a_head_in_transformers_trainer_with_checkpointing(tmp_path):
    """`Trainer` turns it on through the head model, which reaches the encoder's blocks."""
    from transformers import Trainer, TrainingArguments

    classifier = zoo.for_classification(zoo.load("hubert-tiny-fsdd"), labels=["one", "seven", "zero"], freeze=False)
    files = sorted((EXAMPLES / "speech").iterdir())
    examples = [{"input": str(path), "label": Path(path).name.split("_")[0]} for path in files]
    option = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
              else "gradient_checkpointing")
    arguments = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=3, max_steps=2,
                                  learning_rate=1e-4, report_to=[], remove_unused_columns=False, use_cpu=True,
                                  save_strategy="no", **{option: True})
    trainer = Trainer(model=classifier, args=arguments, train_dataset=examples, data_collator=classifier.collate)
    trainer.train()
    assert trainer.state.global_step == 2 and np.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert classifier.is_activation_checkpointing
