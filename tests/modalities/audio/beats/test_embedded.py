"""The embedded beats-tiny encoder and tokenizer: offline loading by name, float16 storage
within the 12 MB budget, and the shared API on the bundled example notes."""

from __future__ import annotations

import pytest
import torch
import zoo
from zoo.demo import example_inputs
from zoo.errors import ConfigError, InputError
from zoo.registry import data_folder


def test_embedded_pair_loads_offline_from_float16_files(offline_cache):
    from safetensors import safe_open

    total = 0
    for name in ("beats-tiny", "beats-tiny-tokenizer"):
        folder = data_folder("checkpoints") / name
        with safe_open(str(folder / "model.safetensors"), "pt") as weights:
            assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float16}
        total += sum(path.stat().st_size for path in folder.iterdir())
        model = zoo.load(name)
        assert next(model.parameters()).dtype == torch.float32
        assert sum(p.numel() for p in model.parameters()) == zoo.info(name)["params"]
    assert total <= 12 * 1024 * 1024


def test_embedded_pair_embeds_and_tokenizes_the_example_notes():
    notes = [str(path) for path in example_inputs("audio")]
    encoder, tokenizer = zoo.load("beats-tiny"), zoo.load("beats-tiny-tokenizer")
    rows = encoder.embed(notes, progress=False)
    assert rows.shape == (4, 192) and torch.isfinite(rows).all()
    columns = (1 + (24000 - 400) // 160) // 16  # 1.5 s at 16 kHz: 148 fbank frames, 9 columns
    times, frames = encoder.embed_frames(notes[:1], progress=False)[0]
    assert frames.shape == (columns, 192) and times[-1].item() == pytest.approx((8 * 2560 + 1400) / 16000)
    labels = tokenizer.tokenize(notes, progress=False)  # progress= was "got multiple values for keyword argument"
    assert all(len(item) == 8 * frames.shape[0] for item in labels)
    assert all(int(item.max()) < 1024 for item in labels) and len(torch.cat(labels).unique()) > 1
    for option in ({"layer": 2}, {"layer": "all"}, {"pool": "mean"}):  # layer=2 quantised layer 2's tokens
        with pytest.raises(ConfigError, match=f"tokenize gives a code per patch of the last layer, so it takes no "
                                              f"{next(iter(option))}="):
            tokenizer.tokenize(notes, **option)
    for model in (encoder, zoo.load("hubert-tiny-fsdd"), zoo.load("mert-tiny")):  # pool= was a TypeError
        with pytest.raises(ConfigError, match="embed_frames gives every frame, so it takes no pool='none'; drop it"):
            model.embed_frames(notes[:1], pool="none")
    for call in (tokenizer.tokenize, encoder.embed_frames, zoo.load("gmml-vit-tiny-cifar10").embed_patches):
        with pytest.raises(InputError, match="got no inputs \\(an empty list or dataset\\); pass at least one item"):
            call([])  # tokenize and embed_patches said "embed() got no inputs"


def test_a_tokenizer_saved_without_a_card_says_it_tokenizes(tmp_path):
    """The default card named every checkpoint an encoder and showed `embed`; a tokenizer's
    product is its codes."""
    zoo.load("beats-tiny-tokenizer").save_pretrained(tmp_path / "tokenizer")
    card = (tmp_path / "tokenizer" / "README.md").read_text()
    assert "# beats acoustic tokenizer" in card and "A beats audio acoustic tokenizer (4 layers" in card
    assert 'model.tokenize(["clip.wav"])  # per clip, (patches,) indices into 1024 codes' in card
    zoo.load("beats-tiny").save_pretrained(tmp_path / "encoder")
    assert 'model.embed(["clip.wav"])  # (N, 192)' in (tmp_path / "encoder" / "README.md").read_text()
