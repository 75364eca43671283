"""The embedded `tjepa-adult` checkpoint: loads offline, matches its hub_config and card,
carries Adult's fitted schema, and embeds the bundled example rows and the test split."""

import torch

import zoo
from helpers import check_embedded_entry, shared_path
from zoo.demo import example_inputs
from zoo.registry import data_folder

NAME = "tjepa-adult"


def test_loads_offline_and_matches_its_hub_config(offline_cache):
    encoder, entry = check_embedded_entry(NAME)
    assert encoder.family == "tjepa" and encoder.modality == "tabular"
    assert encoder.processor.target == entry["preprocessing"]["target"]
    assert encoder.processor.cardinalities == entry["architecture"]["cardinalities"]
    assert (data_folder("checkpoints") / NAME / "model.safetensors").stat().st_size < 2_000_000


def test_embeds_the_example_rows_and_the_adult_test_split(offline_cache):
    from modalities.tabular.datasets import load_adult

    encoder = zoo.load(NAME)
    rows = encoder.embed([str(path) for path in example_inputs("tabular")], progress=False)
    assert rows.shape == (6, 64) and torch.isfinite(rows).all()
    test = load_adult(shared_path("data", "adult")).test
    tokens = encoder.embed(test.iloc[:2000], pool="none", progress=False)
    assert tokens.shape == (2000, 15, 64)
    # tokens are standardised over the training rows, so the test rows' channels have about unit spread
    spread = tokens.std(dim=0)
    assert encoder.config.standardize_output and 0.8 < spread.mean() < 1.2 and (spread > 0.1).all()
    pooled = torch.nn.functional.normalize(encoder.embed(test.iloc[:2000], progress=False), dim=1)
    assert (pooled @ pooled.T).mean() < 0.1  # raw T-JEPA rows all have cosine similarity ~0.99999
