"""The contract every family keeps, run over each family's smallest hub_config (its embedded
checkpoint, else the architecture of its smallest recipe, built with fresh weights): an item's row
is the same alone or in any batch, and a saved folder loads into the same rows. A new family
folder is picked up here without a line of this file changing; the per-family tests check more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import zoo
from zoo import registry
from zoo.demo import example_inputs


def smallest_entry(family: str) -> registry.ModelEntry:
    """The family's hub_config with the fewest parameters, preferring embedded weights (no download)."""
    entries = [entry for entry in registry.entries().values() if entry.family == family
               and (entry.embedded or not entry.has_weights)]
    if not entries:
        pytest.fail(f"family {family!r} has no embedded checkpoint or recipe hub_config to build a tiny model from; "
                    "add one to hub_configs/")
    return min(entries, key=lambda entry: (not entry.embedded, entry.params or 0))


def random_graph(nodes: int, in_dim: int, seed: int) -> object:
    from torch_geometric.data import Data

    generator = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, nodes, (2, 3 * nodes), generator=generator)
    return Data(x=torch.rand(nodes, in_dim, generator=generator), edge_index=edges)


def inputs_of(encoder: object) -> list:
    """Five inputs of the encoder's modality, of different sizes (lengths, image sizes, node counts)."""
    generator = np.random.default_rng(0)
    if encoder.modality in ("audio", "speech"):
        rate = encoder.processor.sampling_rate
        return [{"array": (0.1 * generator.standard_normal(int(rate * seconds))).astype(np.float32),
                 "sampling_rate": rate} for seconds in (0.4, 1.3, 0.7, 2.1, 0.5)]
    if encoder.modality == "vision":
        return [generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
                for height, width in ((32, 32), (48, 40), (64, 64), (20, 36), (33, 31))]
    if encoder.modality == "tabular":
        rows = pd.read_csv(example_inputs("tabular")[0]).head(5)
        return [rows.iloc[[index]] for index in range(len(rows))]
    return [random_graph(nodes, encoder.config.in_dim, seed) for seed, nodes in enumerate((5, 12, 3, 9, 7))]


def embed(encoder: object, items: list, batch_size: int) -> torch.Tensor:
    """One pooled row per item; a table's rows are one frame."""
    batch = pd.concat(items, ignore_index=True) if encoder.modality == "tabular" else items
    return encoder.embed(batch, pool="mean", batch_size=batch_size, progress=False)


@pytest.fixture(params=sorted(registry.family_modules()))
def family_model(request) -> tuple:
    entry = smallest_entry(request.param)
    torch.manual_seed(0)
    return entry, zoo.load(entry.name, pretrained=entry.embedded)


def test_an_items_row_is_the_same_alone_and_in_any_batch(family_model):
    entry, encoder = family_model
    items = inputs_of(encoder)
    alone = torch.cat([embed(encoder, [item], 1) for item in items])
    scale = alone.abs().max()
    for batch_size in (2, 5):
        batched = embed(encoder, items, batch_size)
        assert batched.shape == (5, encoder.embed_dim)
        # measured: 0 (gmml, tjepa), 2.4e-7 to 4.8e-7 (audio, paretognn), 9.2e-5 at a scale of 462 (graphmae)
        assert (batched - alone).abs().max() <= 2e-6 * max(1.0, scale), entry.name


def test_a_saved_folder_loads_into_the_same_rows(family_model, tmp_path):
    entry, encoder = family_model
    items = inputs_of(encoder)
    encoder.save_pretrained(tmp_path / "saved")
    loaded = zoo.load(tmp_path / "saved")
    assert type(loaded) is type(encoder) and loaded.config.to_dict() == encoder.config.to_dict()
    assert loaded.processor.to_dict() == encoder.processor.to_dict()
    assert torch.equal(embed(loaded, items, 5), embed(encoder, items, 5)), entry.name
