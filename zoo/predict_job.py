"""`zoo predict`: what a fine-tuned model (a `zoo finetune` run's classifier/, a saved head, a
converted BEATs tagger) predicts for files, a Hub parquet set's rows or table rows, written as a
CSV, Parquet or JSON-lines table with one row per input: its name, then its best label and that
label's probability (and the next ones, `top_k`), or a regressor's predicted values.

The head reads its encoder's `embed` rows of its layer and pool, as `predict` does in Python,
so the features are made by a resumable embedding job (`zoo.embed_job`) in `OUT.parts/` (for
tables, into a parquet file that names the rows): an interrupted run over many inputs goes on
from their shards, a rerun with another model or inputs is refused, and the head scores the rows
at the end. A table's rows are named `FILE#ROW` (ROW counted from 0 in each file), as are a parquet
set's. A named graph or table dataset (`--dataset`, as `zoo embed`'s) is embedded in one pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from zoo.embed_job import (
    SHARD_SIZE, claim_parts, dataset_rows, is_current, job_lock, job_settings, read_shard, run_embed_job, write_stamp,
)
from zoo.errors import ConfigError, InputError
from zoo.heads import EncoderForRegression, EncoderForTokenClassification, EncoderWithHead, LabelledHead
from zoo.io import atomic_write_with, check_writable_file, remove_folder

FORMATS = (".csv", ".parquet", ".jsonl")


def check_predictor(model: Any, name: str, dataset: Optional[str] = None, top_k: int = 1) -> None:
    """A model that predicts one label set or value per input (a classifier, tagger or regressor),
    or with a named `dataset`, also one per node (a node classifier); `top_k` labels need labels."""
    if isinstance(model, EncoderForTokenClassification) and not dataset:
        raise ConfigError(f"{name} labels each token (for a graph, each node); `zoo predict` writes one row per "
                          "input file, so name the graph dataset: --dataset NAME [--data ROOT] gives a row per "
                          "node. In Python: zoo.load(...).predict(graph)")
    if not isinstance(model, EncoderWithHead):
        raise ConfigError(f"{name} is an encoder without a head, so it has nothing to predict; train one with "
                          "`zoo finetune` and pass its classifier/ folder, or write features with `zoo embed`")
    if top_k != 1 and not isinstance(model, LabelledHead):
        raise ConfigError(f"--top-k {top_k} asks for labels; {name} predicts values (a regressor), one per input")


def check_prediction_output(output: Path) -> None:
    """Refuse an output that is not .csv, .parquet or .jsonl, or that cannot be written there,
    before the model loads or anything is embedded."""
    if output.suffix not in FORMATS:
        raise InputError(f"output {str(output)!r} must end in one of {FORMATS}")
    check_writable_file(output, "output")


def run_predict(model: EncoderWithHead, inputs: Sequence[Any], names: Sequence[str], output: Path, top_k: int = 1,
                batch_size: Optional[int] = None, shard_size: Optional[int] = None, progress: bool = True,
                **prepare_kwargs: Any) -> str:
    """Write `model`'s predictions for `inputs` (named `names`; table files give a row per table
    row) to `output`; returns a description of what was written. `shard_size` None: 1,024."""
    check_prediction_output(output)
    shard_size = shard_size or SHARD_SIZE
    parts = output.with_name(output.name + ".parts")
    job = dict(layer=model.feature_layer, pool=model.pool, batch_size=batch_size, shard_size=shard_size,
               progress=progress, **prepare_kwargs)
    with job_lock(parts, output):  # a second job on this output named the shards folder inside OUT.parts/
        claim_parts(parts, job_settings(model, names, model.feature_layer, model.pool, shard_size, prepare_kwargs))
        if hasattr(model.encoder, "table_chunks"):  # the job names each table row FILE#ROW in its parquet output
            features, names = table_features(model, inputs, parts / "shard-00000.parquet", names, **job)
        else:
            features = read_shard(embedded(model, inputs, parts / "shard-00000.npy", names, **job), np.load)
        written = write_predictions(model, names, features, output, top_k)
        remove_folder(parts)
    return written


def run_predict_dataset(model: EncoderWithHead, dataset: str, data_root: Optional[str | Path], output: Path,
                        top_k: int = 1, batch_size: Optional[int] = None, device: Optional[str] = None,
                        progress: bool = True) -> str:
    """Write `model`'s predictions for a named graph or table dataset (`zoo embed --dataset`'s):
    a row per node of a node dataset, per graph of a set of graphs (per node, for a node
    classifier), or per table row ("train#I", then "test#I"), named as `zoo embed` names them."""
    check_prediction_output(output)
    names, rows = dataset_rows(model.encoder, dataset, data_root, layer=model.feature_layer, pool=model.pool,
                               batch_size=batch_size, device=device, progress=progress)
    return write_predictions(model, names, np.stack(rows), output, top_k)


def write_predictions(model: EncoderWithHead, names: Sequence[str], features: np.ndarray, output: Path,
                      top_k: int) -> str:
    """Score the embedded `features` with the head and write their prediction table to `output`."""
    with torch.no_grad():
        scores = model.head_scores(torch.from_numpy(features))
    frame = prediction_frame(model, names, scores, top_k)
    atomic_write_with(output, lambda tmp: write_frame(frame, tmp, output.suffix))
    return f"{len(frame)} predictions, columns {list(frame.columns)}"


def embedded(model: EncoderWithHead, inputs: Sequence[Any], features: Path, names: Sequence[str],
             **job: Any) -> Path:
    """`features`, the encoder's rows for the head: a finished job's file whose input files are
    unchanged since (`is_current`), or made by a (resumed) job."""
    if not is_current(features, names):
        run_embed_job(model.encoder, inputs, features, names=names, **job)
        write_stamp(features, names)
    return features


def table_features(model: EncoderWithHead, tables: Sequence[Any], features: Path, names: Sequence[str],
                   **job: Any) -> tuple[np.ndarray, list[str]]:
    """The encoder's rows for the head of every row of `tables` (files), with their `FILE#ROW`
    names, from one embedding job's parquet output (a file of only a header gives no rows)."""
    import pyarrow.parquet as pq

    written = read_shard(embedded(model, tables, features, names, **job), pq.read_table)
    shape = written["shape"][0].as_py()
    values = written["embedding"].combine_chunks().values.to_numpy(zero_copy_only=False, writable=True)
    rows = values.reshape(len(written), *shape)
    return rows, written["input"].to_pylist()


def prediction_frame(model: EncoderWithHead, names: Sequence[str], scores: torch.Tensor, top_k: int) -> pd.DataFrame:
    """One row per input: "input", then "label" and "probability" (and "label_2", "probability_2",
    ... up to `top_k`), or a regressor's "prediction" ("prediction_1", ... for several targets)."""
    columns: dict[str, Any] = {"input": list(names)}
    if isinstance(model, LabelledHead):
        ranked = model.top_labels(model.to_probabilities(scores), top_k)
        for rank in range(len(ranked[0]) if ranked else 0):
            suffix = "" if rank == 0 else f"_{rank + 1}"
            columns[f"label{suffix}"] = [row[rank][0] for row in ranked]
            columns[f"probability{suffix}"] = [row[rank][1] for row in ranked]
    elif isinstance(model, EncoderForRegression):
        values = scores.double().numpy()
        for target in range(values.shape[1]):
            columns["prediction" if values.shape[1] == 1 else f"prediction_{target + 1}"] = values[:, target]
    return pd.DataFrame(columns)


def write_frame(frame: pd.DataFrame, path: Path, suffix: str) -> None:
    """Write the prediction table to `path` in the format of `suffix`, given apart since `path` is
    a temporary name; JSON lines go through `json`, whose floats round-trip."""
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        # json's floats round-trip; pandas' to_json keeps 10 digits (15 at most)
        with path.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in frame.to_dict("records"))
