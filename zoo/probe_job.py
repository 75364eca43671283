"""`zoo probe`: embed a labelled set of files and report a linear probe, k-NN accuracy and
RankMe, with labels and the train/test split read from the file names or folders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence

from zoo.errors import InputError
from zoo.io import visible_files


def labelled_files(data: Path, label_regex: Optional[str], test_regex: Optional[str],
                   suffixes: Sequence[str] = ()) -> list[tuple[Path, str, bool]]:
    """(path, label, is_test) for every file under `data` ending in one of `suffixes` (the
    encoder's kinds of file; none: every file), so that notes or label lists beside them are not inputs.

    The label is the first group of `label_regex` on the file name, else the parent
    folder's name; a file is in the test split when `test_regex` matches its name, else
    when a folder on its path is called "test".
    """
    if not data.is_dir():
        raise InputError(f"--data {str(data)!r} is not a folder")
    rows = []
    for path in visible_files(data, suffixes or None):
        if label_regex:
            match = re.search(label_regex, path.name)
            if match is None:
                raise InputError(f"--label-regex {label_regex!r} does not match file {path.name!r}")
            label = match.group(1)
        else:
            label = path.parent.name
        is_test = bool(re.search(test_regex, path.name)) if test_regex else "test" in path.relative_to(data).parts[:-1]
        rows.append((path, label, is_test))
    if not rows:
        kinds = f" ({', '.join(suffixes)})" if suffixes else ""
        raise InputError(f"--data {str(data)!r} holds no files{kinds} the encoder reads")
    splits = {is_test for _, _, is_test in rows}
    if splits != {True, False}:
        raise InputError(f"{len(rows)} files but no train/test split: give --test-regex or a test/ folder")
    trained = {label for _, label, is_test in rows if not is_test}
    unseen = sorted({label for _, label, is_test in rows if is_test} - trained)
    if unseen:
        raise InputError(f"test labels {unseen} have no training files (training labels: {sorted(trained)}); "
                         "no probe can get them right: add training files or drop them from the test split")
    if len(trained) < 2:
        raise InputError(f"the training split has one label, {sorted(trained)}; a probe needs at least two")
    return rows


def run_probe(encoder: Any, rows: list[tuple[Path, str, bool]], layer=None, batch_size: int = 8,
              seed: int = 0, k: int = 20, pool: str = "mean") -> dict[str, float]:
    """Embed every file once, then fit the probes on the train split and score the test split.

    k-NN uses `k` neighbours, or every training item when there are fewer.
    """
    import numpy as np

    from zoo.evaluation import knn_accuracy, linear_probe, rankme

    files = [str(path) for path, _, _ in rows]
    embeddings = encoder.embed(files, layer=layer, pool=pool, batch_size=batch_size).numpy()
    labels = np.array([label for _, label, _ in rows])
    test = np.array([is_test for _, _, is_test in rows])
    k = min(k, int((~test).sum()))
    return {
        "linear_probe_accuracy": linear_probe(embeddings[~test], labels[~test], embeddings[test], labels[test],
                                              seed=seed),
        "knn_accuracy": knn_accuracy(embeddings[~test], labels[~test], embeddings[test], labels[test], k=k),
        "knn_k": k,
        "rankme": rankme(embeddings),
        "train_items": int((~test).sum()),
        "test_items": int(test.sum()),
        "classes": int(len(set(labels))),
    }
