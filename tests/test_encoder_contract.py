"""The encoder contract on tiny models: batch invariance, layers, pooling, chunking, save/load."""

import numpy as np
import pytest
import torch

import zoo
from zoo.audio import frame_count
from zoo.errors import ConfigError, InputError, UnknownModelError

RATE = 16000


def waves(*lengths, seed=0):
    generator = np.random.default_rng(seed)
    return [generator.standard_normal(n).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("fixture", ["micro_hubert", "micro_hubert_stable"])
def test_padding_never_changes_a_row(fixture, request):
    """Each item alone equals the same item inside any padded batch (max abs diff <= 1e-5)."""
    encoder = request.getfixturevalue(fixture)
    items = waves(16000, 4410, 9000, 1234, 16000, 700)
    alone = torch.cat([encoder.embed([item], sampling_rate=RATE, progress=False) for item in items])
    for batch_size in (2, 3, 6):
        batched = encoder.embed(items, sampling_rate=RATE, batch_size=batch_size, progress=False)
        assert (batched - alone).abs().max() <= 1e-5
    tokens_alone = encoder.embed([items[3]], pool="none", layer="all", sampling_rate=RATE, progress=False)[0]
    tokens_batched = encoder.embed(items, pool="none", layer="all", sampling_rate=RATE, batch_size=6, progress=False)[3]
    assert tokens_alone.shape == tokens_batched.shape
    assert (tokens_alone - tokens_batched).abs().max() <= 1e-5


def test_forward_in_one_padded_batch_equals_items_alone(micro_hubert):
    items = waves(8000, 3000)
    batch = micro_hubert.preprocess(items, sampling_rate=RATE)
    with torch.no_grad():
        out = micro_hubert(**batch, output_hidden_states=True)
        short = micro_hubert(**micro_hubert.preprocess(items[1:], sampling_rate=RATE), output_hidden_states=True)
    frames = int(out.mask[1].sum())
    assert frames == short.last_hidden_state.shape[1]
    for padded, alone in zip(out.hidden_states, short.hidden_states):
        assert (padded[1, :frames] - alone[0]).abs().max() <= 1e-5
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert (out.pooled[1] - short.pooled[0]).abs().max() <= 1e-5


def test_outputs_are_read_by_name_and_position_as_transformers_outputs(micro_hubert):
    """`out[0]` and `out["pooled"]` were "'EncoderOutput' object is not subscriptable"."""
    batch = micro_hubert.preprocess(waves(4000), sampling_rate=RATE)
    with torch.no_grad():
        out, every = micro_hubert(**batch), micro_hubert(**batch, output_hidden_states=True)
    assert out["pooled"] is out.pooled and out[0] is out.last_hidden_state
    assert len(out.to_tuple()) == 3 and out[-1] is out.pooled  # hidden_states only when asked for
    assert every[-1] is every.hidden_states and every[:2] == (every.last_hidden_state, every.mask)
    assert list(out) == out.keys() == ["last_hidden_state", "mask", "pooled"] and "pooled" in out  # a dict's keys
    assert "hidden_states" not in out and len(every) == 4 and dict(every.items())["mask"] is every.mask
    assert dict(out)["pooled"] is out.pooled and out.values()[2] is out.pooled
    with pytest.raises(KeyError, match="EncoderOutput has no 'logits'; its fields are last_hidden_state, mask, "
                                       "pooled, hidden_states"):
        out["logits"]


def test_layer_selection_shapes(micro_hubert):
    items = waves(4000, 6000)
    dim, layers = micro_hubert.embed_dim, micro_hubert.num_layers
    assert micro_hubert.embed(items, sampling_rate=RATE, progress=False).shape == (2, dim)
    assert micro_hubert.embed(items, layer=0, sampling_rate=RATE, progress=False).shape == (2, dim)
    assert micro_hubert.embed(items, layer=[0, -1], sampling_rate=RATE, progress=False).shape == (2, 2, dim)
    assert micro_hubert.embed(items, layer="all", sampling_rate=RATE, progress=False).shape == (2, layers + 1, dim)
    last = micro_hubert.embed(items, sampling_rate=RATE, progress=False)
    assert torch.allclose(micro_hubert.embed(items, layer=-1, sampling_rate=RATE, progress=False), last)
    tokens = micro_hubert.embed(items, pool="none", sampling_rate=RATE, progress=False)
    assert torch.allclose(last[1], tokens[1].mean(0), atol=1e-6)
    with pytest.raises(ConfigError, match="pool='cls': HubertEncoder has no cls token"):  # was the first frame
        micro_hubert.embed(items, pool="cls", sampling_rate=RATE, progress=False)
    with pytest.raises(ConfigError, match="HubertEncoder has no cls token"):
        zoo.for_classification(micro_hubert, num_labels=2, pool="cls")
    with pytest.raises(ConfigError, match="out of range"):
        micro_hubert.embed(items, layer=layers + 1, sampling_rate=RATE, progress=False)
    numpy_ints = micro_hubert.embed(items, layer=np.int64(0), sampling_rate=RATE, progress=False)
    assert torch.equal(numpy_ints, micro_hubert.embed(items, layer=0, sampling_rate=RATE, progress=False))
    pair = micro_hubert.embed(items, layer=[0, 1], sampling_rate=RATE, progress=False)
    for ints in (np.array([0, 1]), torch.tensor([0, 1]), np.arange(2, dtype=np.uint8)):  # were "not understood"
        assert torch.equal(micro_hubert.embed(items, layer=ints, sampling_rate=RATE, progress=False), pair)
    assert torch.equal(micro_hubert.embed(items, layer=torch.tensor(0), sampling_rate=RATE, progress=False),
                       numpy_ints)
    for bad in (True, 1.0, np.array([0.0, 1.0]), torch.tensor([True]), np.zeros((1, 2), int)):  # True was layer 1
        with pytest.raises(ConfigError, match="is not understood; use an int, a list of ints"):
            micro_hubert.embed(items, layer=bad, sampling_rate=RATE, progress=False)
    with pytest.raises(ConfigError, match="pool=.max. is not one of"):
        micro_hubert.embed(items, pool="max", sampling_rate=RATE, progress=False)
    with pytest.raises(ConfigError, match="layer=\\[\\] names no layer"):  # was torch's "stack expects a non-empty"
        micro_hubert.embed(items, layer=[], sampling_rate=RATE, progress=False)
    before = micro_hubert.embed(items, sampling_rate=RATE, progress=False)
    with pytest.raises(ConfigError, match="device='meta' holds no values: moving the model there drops its weights"):
        micro_hubert.embed(items, device="meta", sampling_rate=RATE)  # was NotImplementedError, and weights gone
    assert torch.equal(micro_hubert.embed(items, sampling_rate=RATE, progress=False), before)
    with pytest.raises(ConfigError, match="progress='yes'; pass True, False or an open tqdm bar"):  # AttributeError
        micro_hubert.embed(items, sampling_rate=RATE, progress="yes")
    with pytest.raises(InputError, match="audio inputs take one option, sampling_rate=; got foo=: drop"):  # TypeError
        micro_hubert.embed(items, foo=1, progress=False)
    with pytest.raises(InputError, match="no inputs to make a batch of"):  # was max()'s ValueError
        micro_hubert.preprocess([])
    with pytest.raises(UnknownModelError, match=r"info\(None\): pass a zoo name"):  # was pathlib's TypeError
        zoo.info(None)


def test_long_inputs_are_chunked_and_pooled_over_all_frames(micro_hubert):
    micro_hubert.processor.chunk_seconds = 0.5
    item = waves(40000)[0]
    pieces = micro_hubert.processor.split(torch.from_numpy(item))
    assert len(pieces) > 1 and max(p.numel() for p in pieces) <= 8000  # 0.5 s windows
    tokens = micro_hubert.embed([item], pool="none", sampling_rate=RATE, progress=False)[0]
    field, hop = micro_hubert.config.receptive_field, micro_hubert.config.frame_hop
    assert len(tokens) == frame_count(40000, field, hop)  # every frame of the whole recording, none lost at an edge
    per_piece = [micro_hubert.embed([p.numpy()], pool="none", sampling_rate=RATE, progress=False)[0] for p in pieces]
    assert torch.allclose(tokens, torch.cat(per_piece), atol=1e-5)
    mean = micro_hubert.embed([item], sampling_rate=RATE, progress=False)[0]
    assert torch.allclose(mean, tokens.mean(0), atol=1e-5)


def test_bad_items_are_named_by_index(micro_hubert):
    with pytest.raises(InputError, match="input 1: audio input is empty"):
        micro_hubert.embed(waves(4000) + [np.zeros(0, dtype=np.float32)], sampling_rate=RATE, progress=False)
    with pytest.raises(InputError, match="no inputs"):
        micro_hubert.embed([], progress=False)
    with pytest.raises(ConfigError, match="batch_size=0; use a positive number"):
        micro_hubert.embed(waves(4000), sampling_rate=RATE, batch_size=0, progress=False)
    assert micro_hubert.embed(waves(4000), sampling_rate=RATE, batch_size=np.int64(2), progress=False).shape[0] == 1


@pytest.mark.parametrize("fixture", ["micro_hubert", "micro_hubert_stable"])
def test_save_and_load_round_trip(fixture, request, tmp_path):
    encoder = request.getfixturevalue(fixture)
    encoder.processor.do_normalize = True
    encoder.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    loaded = zoo.load(tmp_path / "ckpt")
    assert type(loaded) is type(encoder) and loaded.config == encoder.config
    assert loaded.processor == encoder.processor
    items = waves(5000, 3000)
    assert torch.equal(loaded.embed(items, sampling_rate=RATE, progress=False),
                       encoder.embed(items, sampling_rate=RATE, progress=False))


def test_dtype_and_device_on_load(micro_hubert, tmp_path):
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    half = zoo.load(tmp_path / "ckpt", dtype=torch.bfloat16, device="cpu")
    assert next(half.parameters()).dtype == torch.bfloat16
    rows = half.embed(waves(4000), sampling_rate=RATE, progress=False)
    assert rows.dtype == torch.float32 and torch.isfinite(rows).all()
    assert next(zoo.load(tmp_path / "ckpt", dtype="float16").parameters()).dtype == torch.float16


def test_bad_dtype_device_and_revision_on_load_are_named(micro_hubert, tmp_path):
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match="dtype='float8'; use a floating torch dtype"):
        zoo.load(tmp_path / "ckpt", dtype="float8")
    with pytest.raises(ConfigError, match="dtype=torch.int8"):
        zoo.load(tmp_path / "ckpt", dtype=torch.int8)
    with pytest.raises(ConfigError, match="device='tpu'"):
        zoo.load(tmp_path / "ckpt", device="tpu")
    with pytest.raises(ConfigError, match="device='tpu'"):
        micro_hubert.embed(waves(4000), sampling_rate=RATE, device="tpu", progress=False)
    if not torch.cuda.is_available():  # device=0 is torch's cuda:0; it was read as no device and ignored
        with pytest.raises(ConfigError, match="cannot move the model to device='0'"):
            zoo.load(tmp_path / "ckpt", device=0)
    for name in (tmp_path / "ckpt", "hubert-tiny-fsdd"):
        with pytest.raises(ConfigError, match="not read from a Hub repo, so it has no revisions"):
            zoo.load(name, revision="v2")
    # transformers' keywords were Python's "unexpected keyword argument", with no word of the zoo's own
    with pytest.raises(ConfigError, match=r"load\(\) takes no torch_dtype=; pass dtype= \(e.g. dtype='bfloat16'\)"):
        zoo.load(tmp_path / "ckpt", torch_dtype=torch.float16)
    with pytest.raises(ConfigError, match="takes no trust_remote_code=; leave it out: the zoo runs no code"):
        type(micro_hubert).from_pretrained(tmp_path / "ckpt", trust_remote_code=True)
    with pytest.raises(ConfigError, match="takes no colour=; its keywords are revision, cache_dir, local_files_only"):
        zoo.load(tmp_path / "ckpt", colour="red")


def test_embed_runs_in_eval_mode_and_gives_back_each_submodule_its_mode(micro_hubert):
    """Was only the top module's mode given back: a part frozen in eval mode inside a training
    model (frozen BatchNorm, a feature encoder) came back in training mode."""
    wave = [np.random.default_rng(0).standard_normal(4000).astype(np.float32)]
    expected = micro_hubert.eval().embed(wave, sampling_rate=16000, progress=False)
    micro_hubert.train()
    micro_hubert.model.feature_extractor.eval()
    modes = {name: module.training for name, module in micro_hubert.named_modules()}
    assert torch.equal(micro_hubert.embed(wave, sampling_rate=16000, progress=False), expected)
    assert {name: module.training for name, module in micro_hubert.named_modules()} == modes
    assert micro_hubert.training and not micro_hubert.model.feature_extractor.training


def test_threads_embedding_at_once_keep_eval_mode_until_the_last_is_done(micro_hubert):
    """Each thread gave back the modes it had saved: the first done put a training encoder back
    in train mode while another still embedded (rows with dropout, up to 0.2 off on
    hubert-tiny-fsdd), and one that had saved the first's eval mode left the caller's lost."""
    import threading

    micro_hubert.train()
    micro_hubert.model.feature_extractor.eval()
    modes = {name: module.training for name, module in micro_hubert.named_modules()}
    first_done, second_in, seen = threading.Event(), threading.Event(), []
    forward = micro_hubert.forward

    def overlapping_forward(*args, **kwargs):
        if threading.current_thread().name == "first":
            assert second_in.wait(30)
        else:  # runs once the first thread's embed has returned
            second_in.set()
            assert first_done.wait(30)
            seen.append(micro_hubert.training)
        return forward(*args, **kwargs)

    micro_hubert.forward = overlapping_forward

    def embed(name):
        micro_hubert.embed(waves(4000), sampling_rate=RATE, progress=False)
        if name == "first":
            first_done.set()

    threads = [threading.Thread(target=embed, args=(name,), name=name) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    del micro_hubert.forward
    assert seen == [False]
    assert {name: module.training for name, module in micro_hubert.named_modules()} == modes


def test_a_table_generator_switches_modes_a_chunk_at_a_time():
    """`iter_embed` held eval mode while the caller held the generator, and when it was collected
    later gave back the mode of its start, undoing the caller's `eval()`."""
    import gc

    encoder = zoo.load("tjepa-adult")
    rows = encoder.iter_embed(zoo.__path__[0] + "/examples/tabular/adult_test_rows.csv", chunk_rows=2, progress=False)
    encoder.train()
    next(rows)
    assert encoder.training
    encoder.eval()
    del rows
    gc.collect()
    assert not encoder.training


@pytest.mark.parametrize("name", ["hubert-tiny-fsdd", "gmml-vit-tiny-cifar10", "tjepa-adult", "graphmae-cora"])
def test_every_family_takes_batch_size_none_and_refuses_a_stray_option_alike(name):
    """batch_size=None (the heads' "the encoder's own") was a bare TypeError in every family, and
    a misspelt option a bare TypeError from graph and table encoders, where audio and images
    named it: `except ZooError` missed them."""
    from helpers import EMBEDDED_INPUTS

    encoder = zoo.load(name)
    items = EMBEDDED_INPUTS[name](encoder)
    assert torch.equal(encoder.embed(items, batch_size=None, progress=False), encoder.embed(items, progress=False))
    with pytest.raises(InputError, match="inputs take .*; got bogus=: drop it"):
        encoder.embed(items, bogus=1, progress=False)


@pytest.mark.parametrize("name, scale", [("hubert-tiny-fsdd", 1.0), ("gmml-vit-tiny-cifar10", 1.0),
                                         ("graphmae-cora", 1.0), ("tjepa-adult", 1e-4)])
def test_every_encoder_says_the_share_of_its_heads_lr_it_is_fine_tuned_at(name, scale):
    """README's advice for a loop of one's own, `encoder.finetune_lr_scale`, was an AttributeError
    outside T-JEPA; every encoder has it, 1 unless its output moves far more per step than a head."""
    assert zoo.load(name).finetune_lr_scale == scale
