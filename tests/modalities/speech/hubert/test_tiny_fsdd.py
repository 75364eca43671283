"""The embedded `hubert-tiny-fsdd` checkpoint: loads offline, matches its hub_config and card,
and its embeddings separate FSDD speakers."""

import json

import numpy as np
from helpers import shared_path

import zoo
from modalities.speech.hubert.model import HubertEncoder
from zoo.registry import data_folder

NAME = "hubert-tiny-fsdd"


def test_loads_offline_and_matches_its_hub_config(offline_cache):
    encoder = zoo.load(NAME)
    entry = zoo.info(NAME)
    assert isinstance(encoder, HubertEncoder) and entry["embedded"] and entry["format"] == "zoo"
    saved = {k: v for k, v in encoder.config.to_dict().items() if k not in ("family", "zoo_version")}
    assert json.loads(json.dumps(saved)) == entry["architecture"]
    assert entry["preprocessing"] == {k: v for k, v in encoder.processor.to_dict().items() if k != "processor_type"}
    assert sum(p.numel() for p in encoder.parameters()) == entry["params"]


def test_folder_card_is_the_model_card():
    folder = data_folder("checkpoints") / NAME
    card = data_folder("model_cards") / f"{NAME}.md"
    assert (folder / "README.md").read_text() == card.read_text()
    assert (folder / "model.safetensors").stat().st_size < 12_000_000


def test_embeddings_tell_speakers_apart():
    """Two takes of the same speaker are closer than two speakers saying the same digit."""
    recordings = shared_path("data", "fsdd", "recordings")
    encoder = zoo.load(NAME)
    files = [recordings / name for name in ("3_george_1.wav", "3_george_2.wav", "3_jackson_1.wav")]
    rows = encoder.embed(files, progress=False).numpy()
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    assert rows[0] @ rows[1] > rows[0] @ rows[2]
