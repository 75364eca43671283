"""Helpers the tests import (tests/ is on pytest's pythonpath): shared data, tiny configs,
and a Hugging Face cache populated the way huggingface_hub lays it out."""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import soundfile
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: the example inputs shipped with the package
EXAMPLES = Path(__file__).resolve().parents[1] / "zoo" / "examples"


def shared_path(*parts: str) -> Path:
    """A path under ../shared; the test is skipped with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need the ../shared folder beside the repository")
    return path


MICRO_HUBERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)

#: a MERT with the real conv stack (320-sample hop at 16 kHz), so that the CQT front end fits
MICRO_MERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, sample_rate=16000,
)


def check_embedded_entry(name: str):
    """Load the embedded checkpoint `name` and check that its config, parameter count and
    card are what its hub_config and model_cards/ say; returns (encoder, hub_config entry)."""
    import json

    import zoo
    from zoo.registry import data_folder

    encoder, entry = zoo.load(name), zoo.info(name)
    assert entry["embedded"]
    saved = {k: v for k, v in encoder.config.to_dict().items() if k not in ("family", "zoo_version")}
    assert json.loads(json.dumps(saved)) == entry["architecture"]
    assert sum(p.numel() for p in encoder.parameters()) == entry["params"]
    card = (data_folder("checkpoints") / name / "README.md").read_text()
    assert card == (data_folder("model_cards") / f"{name}.md").read_text()
    return encoder, entry


def check_float16_within_budget(name: str, encoder, budget_mb: int = 12) -> None:
    """The embedded checkpoint `name` stores float16 weights, `encoder` (loaded from it) holds
    them as float32, and its folder stays within the package's per-model budget."""
    import torch
    from safetensors import safe_open

    from zoo.registry import data_folder

    folder = data_folder("checkpoints") / name
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float16}
    assert next(encoder.parameters()).dtype == torch.float32
    assert sum(path.stat().st_size for path in folder.iterdir()) <= budget_mb * 1024 * 1024


def put_in_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",),
                    no_exist: tuple[str, ...] = ()) -> Path:
    """Copy `folder`'s files into `cache` as huggingface_hub stores a downloaded snapshot; `no_exist`
    names files the Hub said the repo lacks, marked as huggingface_hub marks them (.no_exist/COMMIT/NAME)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for path in folder.iterdir():
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(path, blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / path.name)
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    for name in no_exist:
        (repo / ".no_exist" / commit).mkdir(parents=True, exist_ok=True)
        (repo / ".no_exist" / commit / name).touch()
    return snapshot


@contextmanager
def ctrl_c_at_step(monkeypatch, step: int) -> Iterator[None]:
    """Inside the block, a training run stops at step `step` as Ctrl-C stops it (KeyboardInterrupt),
    after the checkpoints written before it: how the resume tests interrupt a run."""
    from zoo.training import Trainer

    train_step = Trainer.train_step

    def interrupted(self, batch):
        if self.step == step:
            raise KeyboardInterrupt
        return train_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    try:
        yield
    finally:
        monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.fixture(autouse=True)
def one_thread():
    """Run torch on one thread: on a 2-core machine other jobs share, that is far faster than
    two for small graphs and tables. A conftest.py that imports it applies it to its folder."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def audio_clips(encoder) -> list[dict]:
    """Two noise clips of different lengths at the encoder's rate, so that one is padded."""
    rate = encoder.processor.sampling_rate
    generator = np.random.default_rng(0)
    return [{"array": generator.standard_normal(int(seconds * rate)).astype(np.float32) * 0.1, "sampling_rate": rate}
            for seconds in (1.0, 0.6)]


def cora_like_graph(encoder):
    """A random graph with the width of the encoder's inputs (Cora's 1,433 features)."""
    from torch_geometric.data import Data

    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(120, encoder.config.in_dim, generator=generator) < 0.02).float()
    edges = torch.randint(0, 120, (2, 600), generator=generator)
    return Data(x=x, edge_index=torch.cat([edges, edges.flip(0)], 1))


#: a few raw inputs for an embedded encoder of each family, for tests that run every family
EMBEDDED_INPUTS = {
    "hubert-tiny-fsdd": audio_clips,
    "mert-tiny": audio_clips,
    "beats-tiny": audio_clips,
    "gmml-vit-tiny-cifar10": lambda encoder: sorted(map(str, (EXAMPLES / "vision").iterdir())),
    "tjepa-adult": lambda encoder: str(EXAMPLES / "tabular" / "adult_test_rows.csv"),
    "graphmae-cora": cora_like_graph,
}


def transformers_hubert(seed: int, folder: Path):
    """A transformers HubertModel with random weights, saved as a Hub repo would hold it."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(seed)
    config = {key: list(value) if isinstance(value, tuple) else value for key, value in MICRO_HUBERT.items()}
    model = HubertModel(HubertConfig(**config)).eval()
    model.save_pretrained(folder)
    return model


def write_tones(folder: Path, count: int = 24) -> None:
    """`{low,high}_{index}.wav`: noisy 300 Hz and 2 kHz tones; indices 0-3 are the test split."""
    generator = np.random.default_rng(0)
    folder.mkdir()
    for index in range(count):
        label = ("low", "high")[index % 2]
        time = np.arange(int(generator.integers(3000, 6000))) / 16000
        wave = np.sin(2 * np.pi * (300 if label == "low" else 2000) * time) + 0.1 * generator.standard_normal(len(time))
        soundfile.write(folder / f"{label}_{index // 2}.wav", (0.5 * wave).astype(np.float32), 16000)


class ChunkRecordingEncoder:
    """Just enough of an encoder for `zoo.embed_job`'s jobs: subclasses say what `embed` gives a
    chunk; `largest_chunk` is the most items one call was given, so tests can bound it."""

    embed_batch_size = 8
    family = "fake"
    largest_chunk = 0

    def check_embed_options(self, layer, pool):
        return None

    def config_dict_to_save(self):
        return {"family": "fake"}

    def state_dict(self):
        return {}

    def progress_bar(self, total, progress, unit="item"):
        from tqdm.auto import tqdm

        return tqdm(total=total, disable=True)

    def record(self, chunk) -> list:
        self.largest_chunk = max(self.largest_chunk, len(chunk))
        return chunk


def graphmae_pretraining_key(key: str, layers: str, rename: Callable[[str], str]) -> str:
    """Name in the zoo's `GraphMAEPretraining` of a key of upstream GraphMAE's `PreModel`: the
    encoder's and decoder's `layers` (".layers." in GIN, ".gat_layers." in GAT) become the zoo's,
    and each layer key's suffix is renamed by `rename`."""
    stack, found, rest = key.partition(layers)
    if not found:
        return key  # enc_mask_token, encoder_to_decoder.weight
    index, _, suffix = rest.partition(".")
    return f"{'encoder.gnn' if stack == 'encoder' else stack}.layers.{index}.{rename(suffix)}"
