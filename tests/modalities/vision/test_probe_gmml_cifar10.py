"""benchmarks/probe_gmml_cifar10.py end to end on a few CIFAR-10 images with a tiny random
GMML ViT: it scores every feature set, reuses its embedding cache and saves the grid."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import shared_path

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def test_probe_scores_caches_and_draws(tmp_path, monkeypatch):
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
    from zoo.hub import save_folder

    data = shared_path("data", "cifar10")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling `common`
    from probe_gmml_cifar10 import main

    torch.manual_seed(0)
    config = GmmlConfig(image_size=32, patch_size=8, hidden_size=24, depth=2, num_heads=2, recons_blocks=(1, 2),
                        reconstruction_head=True)
    save_folder(GmmlEncoder(config), tmp_path / "encoder")
    args = ["--checkpoint", str(tmp_path / "encoder"), "--data", str(data), "--output", str(tmp_path / "run"),
            "--train-limit", "200", "--test-limit", "100", "--max-iter", "50", "--json", str(tmp_path / "r.json")]
    assert main([*args, "--reconstructions", str(tmp_path / "grid.png"), "--grid", "4"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["train_images"], report["test_images"], report["test_images_available"]) == (200, 100, 5000)
    names = [row["features"] for row in report["results"]]
    assert names == ["checkpoint cls", "checkpoint mean", "random init cls", "random init mean",
                     "raw pixels (standardised)"]
    assert all(0.0 <= row["knn"] <= 1.0 and 0.0 <= row["linear"] <= 1.0 for row in report["results"])
    assert len(list((tmp_path / "run").glob("*.npz"))) == 4 and len(list((tmp_path / "run").glob("*.json"))) == 1

    from PIL import Image

    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (4 * 128, 3 * 128)
    assert main(args) == 0
    again = json.loads((tmp_path / "r.json").read_text())
    assert set(again["timings"].values()) == {"cached"}  # every embedding came from the cache
    assert again["results"][-1] == report["results"][-1]  # so did the raw-pixel scores
    assert [(row["knn"], row["linear"]) for row in again["results"]] == [
        (row["knn"], row["linear"]) for row in report["results"]]

    torch.manual_seed(1)
    save_folder(GmmlEncoder(config), tmp_path / "encoder")  # other weights under the same path
    assert main(args) == 0
    timings = json.loads((tmp_path / "r.json").read_text())["timings"]
    assert isinstance(timings["embed checkpoint (s)"], float) and timings["embed random init (s)"] == "cached"
