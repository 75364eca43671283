"""The dataset cache: raw files are copied once, whatever the number of runs started together;
`zoo embed --dataset` writes a named dataset's embeddings."""

import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from filelock import FileLock
from helpers import shared_path

import zoo
from modalities.graphs.datasets import has_node_features, load_dataset, working_root
from zoo.cli import main
from zoo.errors import InputError


def test_runs_started_together_copy_the_raw_files_once(tmp_path, monkeypatch):
    # one `zoo pretrain` per seed started at once on the GPU collided in one staging folder
    # (FileExistsError) before each copy got a folder of its own
    source = tmp_path / "data" / "SET" / "raw"
    source.mkdir(parents=True)
    for index in range(20):
        (source / f"part{index}.txt").write_text("1, 2\n" * 2000)
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    with ThreadPoolExecutor(8) as pool:
        roots = list(pool.map(lambda _: working_root(tmp_path / "data", "SET"), range(8)))
    assert roots == [tmp_path / "cache"] * 8
    copied = tmp_path / "cache" / "SET"
    assert sorted(p.name for p in copied.iterdir()) == ["raw"]
    assert sorted(p.name for p in (copied / "raw").iterdir()) == sorted(p.name for p in source.iterdir())


def test_another_root_or_a_file_changed_in_place_is_processed_again_not_read_from_the_cache(tmp_path, monkeypatch):
    """PyG reuses its processed files without looking at the raw ones, and a raw file was copied
    again only when its size changed: MUTAG with its node labels shuffled (the same size), from
    another --data root or changed in place, gave the first graphs (max diff 0.0)."""
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        shutil.copytree(shared_path("data", "tu") / "MUTAG", root / "MUTAG")
    labels = second / "MUTAG" / "raw" / "MUTAG_node_labels.txt"
    lines = labels.read_text().splitlines(keepends=True)
    np.random.default_rng(0).shuffle(lines)
    labels.write_text("".join(lines))
    original = load_dataset("mutag", first)
    shuffled = load_dataset("mutag", second)
    assert not all(a.x.equal(b.x) for a, b in zip(original, shuffled))
    assert all(a.x.equal(b.x) for a, b in zip(load_dataset("mutag", first), original))
    shutil.copyfile(labels, first / "MUTAG" / "raw" / "MUTAG_node_labels.txt")  # changed in place
    assert all(a.x.equal(b.x) for a, b in zip(load_dataset("mutag", first), shuffled))
    extra = tmp_path / "cache" / "MUTAG" / "raw" / "MUTAG_node_attributes.txt"
    extra.write_text("1.0\n")  # a file the source does not hold: TUDataset would read it as features
    load_dataset("mutag", first)
    assert not extra.exists()


def test_a_copy_whose_time_a_coarser_file_system_kept_stands_for_its_source(tmp_path, monkeypatch):
    """A cache on a file system keeping coarser times (FAT: 2 s) than the source's copied and
    processed the dataset again on every run, as if each file had changed."""
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    load_dataset("mutag", shared_path("data", "tu"))
    copy = tmp_path / "cache" / "MUTAG" / "raw" / "MUTAG_A.txt"
    times = copy.stat()
    os.utime(copy, ns=(times.st_atime_ns, times.st_mtime_ns - 1_500_000_000))
    kept = tmp_path / "cache" / "MUTAG" / "processed" / "kept"
    kept.write_text("")
    assert len(load_dataset("mutag", shared_path("data", "tu"))) == 188 and kept.exists()


def test_zoo_embed_writes_a_named_datasets_nodes_or_graphs(tmp_path, capsys):
    """`zoo embed NAME --dataset D`: Cora's 2,708 nodes (the checkpoint's own pool) or one row per
    MUTAG graph, equal to `embed` on the loaded dataset; files and datasets are not mixed."""
    planetoid, tu = shared_path("data", "planetoid"), shared_path("data", "tu")
    assert main(["embed", "graphmae-cora", "--dataset", "cora", "--data", str(planetoid),
                 "-o", str(tmp_path / "nodes.npy")]) == 0
    expected = zoo.load("graphmae-cora").embed(load_dataset("cora", planetoid), progress=False)
    assert np.array_equal(np.load(tmp_path / "nodes.npy"), expected.numpy()) and expected.shape == (2708, 512)
    assert main(["embed", "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--pool", "max",
                 "-o", str(tmp_path / "graphs.parquet")]) == 0
    table = pq.read_table(tmp_path / "graphs.parquet").to_pydict()
    expected = zoo.load("graphmae-mutag").embed(load_dataset("mutag", tu), pool="max", progress=False)
    assert table["input"][:2] == ["graph#0", "graph#1"] and len(table["input"]) == 188
    record = json.loads(pq.read_schema(tmp_path / "graphs.parquet").metadata[b"zoo"])
    assert record["family"] == "graphmae" and record["pool"] == "max" and record["layer"] is None
    assert np.array_equal(np.stack(table["embedding"]), expected.numpy())
    assert main(["embed", "graphmae-mutag", "--dataset", "mutag", "--data", str(tu),
                 "-o", str(tmp_path / "own.parquet")]) == 0
    record = json.loads(pq.read_schema(tmp_path / "own.parquet").metadata[b"zoo"])
    assert record["pool"] == zoo.load("graphmae-mutag").config.pooling == "sum"  # was None: the readout unnamed
    capsys.readouterr()
    assert main(["embed", "graphmae-cora", "x.pt", "--dataset", "cora", "-o", str(tmp_path / "x.npy")]) == 2
    assert "pass INPUTS or --dataset, not both" in capsys.readouterr().err
    assert main(["embed", "hubert-tiny-fsdd", "--dataset", "cora", "-o", str(tmp_path / "x.npy")]) == 2
    assert "graph and table datasets; speech encoders read files: pass them as INPUTS" in capsys.readouterr().err


def test_a_set_of_graphs_nodes_keep_their_graphs_and_layers_come_first(tmp_path, capsys):
    """Several layers of nodes were (N, K, D) from graph encoders, (K, T, D) from every other; and
    `--pool none` on a set of graphs wrote one .npy array of every graph's nodes (3,371 rows for
    MUTAG) that did not say which graph each row was of."""
    tu = shared_path("data", "tu")
    encoder, graphs = zoo.load("graphmae-mutag"), load_dataset("mutag", tu)
    nodes = encoder.embed(graphs[:2], pool="none", layer=[2, 3], progress=False)
    assert [tuple(item.shape) for item in nodes] == [(2, graphs[0].num_nodes, 32), (2, graphs[1].num_nodes, 32)]
    assert main(["embed", "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--pool", "none",
                 "--layer", "2,3", "-o", str(tmp_path / "nodes.parquet")]) == 0
    table = pq.read_table(tmp_path / "nodes.parquet").to_pydict()
    assert table["input"][graphs[0].num_nodes] == "graph#1/node#0"
    first = np.array(table["embedding"][graphs[0].num_nodes]).reshape(table["shape"][graphs[0].num_nodes])
    assert np.array_equal(first, nodes[1][:, 0].numpy())  # a node's row holds its layers, (K, D)
    capsys.readouterr()
    assert main(["embed", "graphmae-mutag", "--dataset", "mutag", "--data", str(tu), "--pool", "none",
                 "-o", str(tmp_path / "nodes.npy")]) == 2
    assert "would not say which graph each row belongs to: write .parquet" in capsys.readouterr().err
    assert not (tmp_path / "nodes.npy").exists()


def test_an_empty_raw_folder_left_by_a_failed_download_is_filled_from_data(tmp_path, monkeypatch):
    """PyG makes raw/ before it downloads: `--dataset cora` without --data, offline, left an empty
    Cora/raw in the cache, and every later run with --data found that folder, copied nothing and
    failed offline again with "pass --data ROOT", which it had been given."""
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    (tmp_path / "cache" / "Cora" / "raw").mkdir(parents=True)
    (tmp_path / "cache" / "Cora" / "raw" / "ind.cora.x").write_bytes(b"cut")  # a partial file is copied again
    cora = load_dataset("cora", shared_path("data", "planetoid"))
    assert (cora.num_nodes, cora.num_edges, int(cora.train_mask.sum())) == (2708, 10556, 140)


def test_processed_files_cut_short_are_named_with_the_fix(tmp_path, monkeypatch):
    """A run killed while PyG wrote processed/data.pt left it cut short: every later load failed,
    telling to pass --data, which it had been given, and not naming the file."""
    tu = shared_path("data", "tu")
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    whole = load_dataset("mutag", tu)
    processed = tmp_path / "cache" / "MUTAG" / "processed"
    data = processed / "data.pt"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(InputError, match=f"its processed files in {processed} may be half-written .* delete that "
                                         "folder and rerun"):
        load_dataset("mutag", tu)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [".mutag.lock", "MUTAG"]
    shutil.rmtree(processed)
    assert len(load_dataset("mutag", tu)) == len(whole) == 188


def test_a_dataset_cache_that_cannot_be_made_names_its_variable(tmp_path, monkeypatch):
    """ZOO_DATASETS set to a file was told to check the raw files it had been given."""
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "file"))
    with pytest.raises(InputError, match=f"the dataset cache {tmp_path / 'file'} cannot be made or written .* is not "
                                         "a folder\\): point ZOO_DATASETS"):
        load_dataset("mutag", shared_path("data", "tu"))


class Planted:
    """A pickle that creates a file when it is loaded: what a planted dataset file would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_the_data_or_the_dataset_cache_is_refused_before_it_runs(tmp_path, monkeypatch):
    """PyG reads Planetoid's ind.* files with plain pickle.load, and loads a processed data.pt again
    with weights_only=False where the safe load fails: a planted file in a shared --data folder or
    dataset cache ran its code, and `zoo embed --dataset cora` went on to exit 0. Both are refused,
    naming the file, and nothing runs; the real files still load (2,708 nodes)."""
    import pickle

    import torch

    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    root, marker = tmp_path / "data", tmp_path / "ran"
    shutil.copytree(shared_path("data", "planetoid", "Cora"), root / "Cora")
    (root / "Cora" / "raw" / "ind.cora.x").chmod(0o644)
    (root / "Cora" / "raw" / "ind.cora.x").write_bytes(pickle.dumps(Planted(marker), protocol=2))
    with pytest.raises(InputError, match=r"ind\.cora\.x is not a Planetoid data file \(UnpicklingError: it names "
                                         r"io\.open"):
        load_dataset("cora", root)
    assert not marker.exists()
    assert load_dataset("cora", shared_path("data", "planetoid")).num_nodes == 2708
    processed = tmp_path / "cache" / "Cora" / "processed" / "data.pt"
    torch.save(Planted(marker), processed)
    with pytest.raises(InputError, match=rf"processed dataset file {processed} holds more than tensors.*delete "
                                         rf"{processed.parent} and rerun"):
        load_dataset("cora", shared_path("data", "planetoid"))
    assert not marker.exists()


def test_a_read_only_dataset_cache_holding_the_processed_files_is_read(tmp_path, monkeypatch):
    """The lock file was made before the processed files were looked at: a read-only cache (a shared
    mount) holding Cora processed was refused ("Read-only file system: '.cora.lock'")."""
    import errno

    import filelock

    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    data = load_dataset("cora", shared_path("data", "planetoid"))

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    assert load_dataset("cora", shared_path("data", "planetoid")).num_nodes == data.num_nodes == 2708


def another_run_preparing(lock: Path) -> threading.Event:
    """Hold `lock` for a second in a thread, as another run preparing the dataset would; returns
    once it is held, with the event set when it is let go."""
    held, released = threading.Event(), threading.Event()

    def another_run():
        with FileLock(str(lock)):
            held.set()
            time.sleep(1.0)
            released.set()

    threading.Thread(target=another_run).start()
    held.wait()
    return released


def test_a_run_waiting_for_another_preparing_the_dataset_says_so(tmp_path, monkeypatch, capsys):
    """The second of two runs sat silent while the first processed the dataset (seconds for NCI1,
    minutes for Reddit); it says what it waits for."""
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    released = another_run_preparing(tmp_path / "cache" / ".cora.lock")
    assert load_dataset("cora", shared_path("data", "planetoid")).num_nodes == 2708 and released.is_set()
    assert f"waiting for another process preparing dataset 'cora' in {tmp_path / 'cache'}" in capsys.readouterr().err


def test_checking_a_sets_node_features_waits_for_a_run_preparing_it(tmp_path, monkeypatch, capsys):
    """`zoo pretrain graphmae` asks whether a TU set has node features by loading it, which copied
    and processed it outside the lock that `load_dataset` holds: beside a run preparing the set, it
    could delete or read its processed files half-written."""
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    released = another_run_preparing(tmp_path / "cache" / ".mutag.lock")
    assert has_node_features("mutag", shared_path("data", "tu")) and released.is_set()
    assert "waiting for another process preparing dataset 'mutag'" in capsys.readouterr().err
