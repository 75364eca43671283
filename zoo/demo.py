"""`zoo demo`: embed the bundled example inputs with every embedded checkpoint, offline,
and print the embedding shapes and a cosine-similarity table (of the inputs, or of the
rows of a table). Embedded checkpoints of a modality without bundled inputs (graphs: they
need a dataset) are named as skipped."""

from __future__ import annotations

from pathlib import Path

import torch

from zoo import registry


def example_inputs(modality: str) -> list[Path]:
    """The bundled files of a modality (zoo/examples/MODALITY), sorted; none where it has no
    folder (graphs take datasets)."""
    folder = Path(__file__).parent / "examples" / modality
    return sorted(path for path in folder.glob("*") if path.is_file()) if folder.is_dir() else []


def similarity_table(names: list[str], rows: torch.Tensor) -> str:
    """Cosine similarities as an aligned text table."""
    unit = torch.nn.functional.normalize(rows, dim=1)
    similarity = unit @ unit.T
    width = max(len(name) for name in names)
    lines = [" " * width + " " + " ".join(f"{name[:8]:>8s}" for name in names)]
    for name, values in zip(names, similarity):
        lines.append(f"{name:>{width}s} " + " ".join(f"{float(value):8.3f}" for value in values))
    return "\n".join(lines)


def run_demo() -> int:
    """Returns how many checkpoints were demonstrated."""
    from zoo.hub import load

    shown, skipped = 0, []
    for name, entry in registry.entries().items():
        inputs = example_inputs(entry.modality)
        if not entry.embedded:
            continue
        if not inputs:
            skipped.append(f"{name} ({entry.modality})")
            continue
        encoder = load(name)
        rows = encoder.embed([str(path) for path in inputs], progress=False)
        layers = encoder.embed([str(path) for path in inputs[:1]], layer="all", progress=False)
        print(f"\n== {name} ({entry.modality}, {entry.family}): {len(inputs)} inputs -> "
              f"embeddings {tuple(rows.shape)}, all layers {tuple(layers.shape)}")
        labels = [path.stem for path in inputs] if len(rows) == len(inputs) else [f"row{i}" for i in range(len(rows))]
        print(similarity_table(labels, rows))
        shown += 1
    if skipped:
        print(f"\nskipped, no bundled inputs for their modality (see the README's examples): {', '.join(skipped)}")
    if not shown:
        print("no embedded checkpoint has example inputs")
    return shown
