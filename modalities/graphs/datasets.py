"""The graph datasets of the papers' recipes, loaded through PyG from a local folder.

`--data ROOT` holds each dataset as PyG expects it (`ROOT/Cora/raw/...`). PyG writes its
processed files next to the raw ones, so the raw files are first copied into a zoo cache
folder: a read-only data folder (such as a shared mount) is never written to. Without
the raw files PyG downloads them, where the network allows.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from zoo.errors import ConfigError, InputError
from zoo.io import blocking_path, waited_for

#: zoo dataset name -> (PyG class name, name argument)
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
#: zoo dataset name -> TUDataset name (graph classification sets of the GraphMAE paper)
TU = {name.lower(): name for name in ("MUTAG", "NCI1", "PROTEINS", "IMDB-BINARY", "IMDB-MULTI", "COLLAB",
                                      "REDDIT-BINARY")}
#: GraphMAE clips one-hot degree features at this degree
MAX_DEGREE = 400
#: how far a raw file's copy may differ in modification time from its source and still stand for
#: it: FAT keeps times to 2 s
MTIME_SLACK_NS = 2_000_000_000
#: the globals the Planetoid `ind.*` pickles name (scipy CSR features, numpy labels, an adjacency
#: dict of lists), as written by Python 2 and as a newer numpy or scipy would write them again
PLANETOID_GLOBALS = {
    ("scipy.sparse.csr", "csr_matrix"), ("scipy.sparse._csr", "csr_matrix"), ("scipy.sparse", "csr_matrix"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "defaultdict"), ("__builtin__", "list"),
    ("builtins", "list"),
}


def cache_root() -> Path:
    """Where datasets are copied and processed (`zoo.hub.datasets_root`), imported when asked: this
    module is read without torch, which zoo.hub loads."""
    from zoo.hub import datasets_root

    return datasets_root()


def working_root(data_root: Optional[str | Path], folder: str) -> Path:
    """A writable root holding a copy of `data_root/folder/raw` (PyG then processes it there).

    The copy is made file by file, each written whole under a temporary name and renamed, so
    that runs started together (one per seed) never read a half-written file, and a file the
    copy lacks is copied again: PyG makes `raw/` before it downloads, so a run without --data
    that failed offline left an empty `raw/` that stood for the copy until it was deleted.
    A copy stands for its source while their sizes and modification times agree (each copy
    takes its source's); where any file is copied again or the source has dropped it, PyG's
    processed files are deleted, as PyG reuses them without looking at the raw files: another
    --data root with files of the same sizes (or a file changed in place) gave the first
    root's graphs without a word."""
    target = cache_root()
    if data_root is None:
        return target
    source = Path(data_root) / folder / "raw"
    if not source.is_dir():
        raise InputError(f"{source} does not exist; --data must hold {folder}/raw/ as PyG lays it out")
    copy = target / folder / "raw"
    files = {path.relative_to(source) for path in source.rglob("*") if path.is_file()}
    stale = [path for path in copy.rglob("*") if path.is_file() and path.relative_to(copy) not in files
             and not path.name.startswith(".")]  # another run's copy under way (`copy_whole`)
    changed = [name for name in sorted(files) if not same_file(source / name, copy / name)]
    for path in stale:
        path.unlink(missing_ok=True)
    for name in changed:
        copy_whole(source / name, copy / name)
    if stale or changed:
        shutil.rmtree(target / folder / "processed", ignore_errors=True)
    return target


def same_file(source: Path, copied: Path) -> bool:
    """Whether `copied` is still a copy of `source`: the same size and modification time, to
    `MTIME_SLACK_NS` (a cache on a file system that keeps coarser times than the source's
    would otherwise copy and process the dataset again on every run)."""
    if not copied.is_file():
        return False
    original, copy = source.stat(), copied.stat()
    return original.st_size == copy.st_size and abs(original.st_mtime_ns - copy.st_mtime_ns) < MTIME_SLACK_NS


def copy_whole(source: Path, target: Path) -> None:
    """Copy `source` to `target`, with its modification time, through a temporary file in the same
    folder and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, partial)
        times = source.stat()
        os.utime(partial, ns=(times.st_atime_ns, times.st_mtime_ns))
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def load_planetoid(name: str, data_root: Optional[str | Path]) -> Any:
    """Cora, CiteSeer or PubMed (a key of `PLANETOID`) as one `Data`, with PyG's public
    train/val/test split as masks."""
    from torch_geometric.datasets import Planetoid

    folder = PLANETOID[name]
    root = working_root(data_root, folder)
    check_planetoid_pickles(root / folder / "raw")
    return Planetoid(str(root), folder)[0]


class PlanetoidUnpickler(pickle.Unpickler):
    """An unpickler that builds only the objects of `PLANETOID_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PLANETOID_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a Planetoid file never holds")
        return super().find_class(module, name)


def check_planetoid_pickles(raw: Path) -> None:
    """Read each `ind.*` pickle in `raw` with only the globals of the real files allowed, before PyG
    reads it with plain `pickle.load`, which calls whatever a pickle names: a file planted in a
    shared --data folder or dataset cache ran its code, and the run went on to exit 0."""
    for path in sorted(raw.glob("ind.*")):
        if path.name.endswith(".index"):  # the test node ids, as text
            continue
        try:
            with open(path, "rb") as handle, warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # scipy.sparse.csr, which PyG's read names too
                PlanetoidUnpickler(handle, encoding="latin1").load()
        except Exception as err:  # a pickle's errors are of many types
            raise InputError(f"{path} is not a Planetoid data file ({type(err).__name__}: {err}); PyG would unpickle "
                             "it, which runs the code a pickle names: put the dataset's own file there") from err


@contextmanager
def weights_only_processed_files() -> Iterator[None]:
    """PyG loads its processed files with torch.load(weights_only=True), but where that fails it
    warns and loads them again with weights_only=False, which runs the code a pickle names: a
    processed/data.pt planted in a shared dataset cache did. While the zoo reads a dataset, such a
    file is refused instead, naming it."""
    import torch
    from torch_geometric.io import fs

    from zoo.hub import refused_load

    pyg_load = fs.torch_load

    def weights_only_load(path: str, map_location: Any = None) -> Any:
        try:
            with open(path, "rb") as handle:
                return torch.load(handle, map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            pickled, reason = refused_load(err)
            raise InputError(f"the processed dataset file {path} holds more than tensors and PyG's data "
                             f"({f'it pickles {pickled}' if pickled else reason}); delete {Path(path).parent} and "
                             "rerun, which processes the raw files again") from err

    fs.torch_load = weights_only_load
    try:
        yield
    finally:
        fs.torch_load = pyg_load


def load_ogbn_arxiv(data_root: Optional[str | Path]) -> Any:
    """ogbn-arxiv as PyG gives it, with the OGB split as masks; its recipe's processor makes it
    undirected and standardises the features as GraphMAE does."""
    try:
        from ogb.nodeproppred import PygNodePropPredDataset
    except ImportError as err:
        raise InputError("ogbn-arxiv needs the `ogb` package: pip install ogb") from err
    import torch

    dataset = PygNodePropPredDataset("ogbn-arxiv", root=str(working_root(data_root, "ogbn_arxiv")))
    data = dataset[0]
    data.y = data.y.view(-1)
    for split, index in dataset.get_idx_split().items():
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[index] = True
        data[f"{'val' if split == 'valid' else split}_mask"] = mask
    return data


def load_reddit(data_root: Optional[str | Path]) -> Any:
    """Reddit as PyG gives it; its recipe's processor standardises the features as GraphMAE does
    (GraphMAE pretrains on the training nodes' subgraph; the zoo on the whole graph, transductively)."""
    from torch_geometric.datasets import Reddit

    return Reddit(str(working_root(data_root, "Reddit") / "Reddit"))[0]


def load_ppi(data_root: Optional[str | Path]) -> list[Any]:
    """PPI's 20 training graphs, the ones GraphMAE pretrains on (inductive setting)."""
    from torch_geometric.datasets import PPI

    return list(PPI(str(working_root(data_root, "PPI") / "PPI"), split="train"))


def tu_dataset(folder: str, data_root: Optional[str | Path]) -> Any:
    """PyG's TUDataset `folder` under the working root (its raw files copied from `data_root`
    first), without the degree features `load_tu` adds."""
    from torch_geometric.datasets import TUDataset

    return TUDataset(str(working_root(data_root, folder)), folder)


def load_tu(folder: str, data_root: Optional[str | Path]) -> list[Any]:
    """A TU graph-classification set as a list of graphs with `y`; sets without node
    features get one-hot degrees clipped at `MAX_DEGREE`, as GraphMAE does (the encoders'
    processors compute the same features themselves)."""
    from modalities.graphs.processing import neighbour_counts, one_hot_degrees

    graphs = list(tu_dataset(folder, data_root))
    if graphs[0].x is None:
        most = max(int(neighbour_counts(g.edge_index, g.num_nodes).max()) for g in graphs)
        width = min(most, MAX_DEGREE) + 1
        for graph in graphs:
            graph.x = one_hot_degrees(graph.edge_index, graph.num_nodes, width)
    return graphs


def tu_folder(name: str, data_root: Optional[str | Path]) -> Optional[str]:
    """The TUDataset name of `name`: a GraphMAE set, or any TU set whose raw files `data_root` holds."""
    if name.lower() in TU:
        return TU[name.lower()]
    if data_root is not None and (Path(data_root) / name / "raw" / f"{name}_A.txt").is_file():
        return name
    return None


def has_node_features(name: str, data_root: Optional[str | Path] = None) -> bool:
    """Whether a TU set comes with node labels or attributes (else GraphMAE uses degrees)."""
    folder = tu_folder(name, data_root)
    if folder is None:
        return True
    with processing_lock(name.lower()), weights_only_processed_files():  # as `load_dataset`: it copies and processes
        dataset = tu_dataset(folder, data_root)
    return dataset.num_node_labels + dataset.num_node_attributes > 0


LOADERS: dict[str, Callable[[Optional[str | Path]], Any]] = {
    **{name: (lambda root, name=name: load_planetoid(name, root)) for name in PLANETOID},
    "ogbn-arxiv": load_ogbn_arxiv,
    "reddit": load_reddit,
    "ppi": load_ppi,
}


def load_dataset(name: str, data_root: Optional[str | Path] = None) -> Any:
    """A node-task dataset as one `Data` (with y and train/val/test masks); PPI as its
    training graphs; a TU set (GraphMAE's, or any whose raw files `data_root` holds, named
    as TUDataset names it, e.g. ENZYMES) as its list of labelled graphs."""
    key, folder = name.lower(), tu_folder(name, data_root)
    if key not in LOADERS and folder is None:
        raise InputError(
            f"unknown graph dataset {name!r}; known: {sorted([*LOADERS, *TU])}, or any TU set whose raw files "
            f"ROOT/{name}/raw/{name}_A.txt ... hold (--data ROOT)"
        )
    try:
        with processing_lock(key), weights_only_processed_files():
            return LOADERS[key](data_root) if folder is None else load_tu(folder, data_root)
    except (OSError, RuntimeError) as err:  # PyG's download and processing errors (no network, bad files)
        raise InputError(f"could not load dataset {name!r} ({type(err).__name__}: {err}); "
                         f"{loading_fix(key, data_root)}") from err


@contextmanager
def processing_lock(key: str) -> Iterator[None]:
    """One process at a time copies and processes a dataset in the cache: PyG writes its processed
    files in place, so a second process started beside the first could read them half-written, and
    then failed on them for good (1 of 3 tries with NCI1). The others wait, saying so, then read
    them whole. A read-only cache is read without a lock (`waited_for`): PyG fails only if it must
    process there."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with waited_for(root / f".{key}.lock", f"waiting for another process preparing dataset {key!r} in {root}"):
        yield


def loading_fix(key: str, data_root: Optional[str | Path]) -> str:
    """What to do when PyG fails on a dataset: delete processed files a stopped run left half-written
    (PyG reads them and fails again on every run), check the raw files given, or give them offline."""
    root = cache_root()
    blocked = blocking_path(root)
    if blocked is not None:
        return (f"the dataset cache {root} cannot be made or written ({blocked} is "
                f"{'read-only' if blocked.is_dir() else 'not a folder'}): point ZOO_DATASETS (or ZOO_CACHE, whose "
                "datasets/ it is by default) to a folder you can write to")
    processed = [path for path in root.glob("**/processed")
                 if path.relative_to(root).parts[0].lower().replace("_", "-") == key]
    if processed:
        return (f"its processed files in {', '.join(map(str, processed))} may be half-written (a run stopped while "
                "PyG made them): delete that folder and rerun")
    if data_root is not None:
        return f"check its raw files under {data_root} (PyG's layout: ROOT/NAME/raw/)"
    return "without network, put its raw files where PyG expects them under a folder ROOT and pass --data ROOT"


def embed_dataset(encoder: Any, name: str, data_root: Optional[str | Path], layer: Any = None,
                  pool: Optional[str] = None, batch_size: Optional[int] = None,
                  device: Optional[str] = None, progress: bool = True) -> tuple[list[str], list[Any]]:
    """A named dataset's embeddings for `zoo embed --dataset`, as (names, rows): a node dataset's
    nodes ("node#I"), or with a readout pool one row for its graph; a set of graphs' readouts
    ("graph#I"), or with pool "none" the nodes of every graph ("graph#G/node#I"). `pool` None
    is the checkpoint's own."""
    data = load_dataset(name, data_root)
    graphs = data if isinstance(data, list) else [data]
    pool = encoder.config.pooling if pool is None else pool
    embedded = encoder.embed(graphs, layer=layer, pool=pool, batch_size=batch_size or encoder.embed_batch_size,
                             device=device, progress=progress)
    if pool != "none":
        prefix = "graph#" if isinstance(data, list) else f"{name}#"
        return [f"{prefix}{index}" for index in range(len(embedded))], [row.numpy() for row in embedded]
    nodes = [node_rows(graph) for graph in embedded]
    if not isinstance(data, list):
        return [f"node#{index}" for index in range(len(nodes[0]))], [row.numpy() for row in nodes[0]]
    return ([f"graph#{g}/node#{index}" for g, rows in enumerate(nodes) for index in range(len(rows))],
            [row.numpy() for rows in nodes for row in rows])


def node_rows(nodes: Any) -> Any:
    """A graph's (N, D) nodes, or its (K, N, D) layers as each node's (K, D) rows: (N, K, D)."""
    return nodes if nodes.dim() == 2 else nodes.transpose(0, 1)


#: how many folds a set of graphs is split into (GraphMAE's svm-10fold protocol)
FOLDS = 10


def finetune_data(name: str, data_root: Optional[str | Path], fold: int = 0) -> Any:
    """What `zoo finetune --dataset` trains on: a node dataset as its one graph (with y and
    train/test masks); a set of graphs as (graph, label, is_test) rows whose test graphs are
    fold `fold` of the svm-10fold probe's ten (stratified, shuffled with seed 0)."""
    from sklearn.model_selection import StratifiedKFold

    if not 0 <= fold < FOLDS:
        raise ConfigError(f"--fold {fold}; a set of graphs has folds 0 .. {FOLDS - 1}")
    data = load_dataset(name, data_root)
    if not isinstance(data, list):
        missing = [key for key in ("y", "train_mask", "test_mask") if getattr(data, key, None) is None]
        if missing:
            raise InputError(f"dataset {name!r} has no {missing}; fine-tuning needs node labels and a train/test split")
        if fold:
            raise ConfigError(f"--fold {fold} is for sets of graphs; {name} has its own split of nodes")
        return data
    if any(getattr(graph, "y", None) is None or graph.y.numel() != 1 for graph in data):
        raise InputError(f"dataset {name!r} has no single label per graph (PPI labels each node with 121 tags); "
                         "fine-tune graph classifiers on a TU set such as mutag")
    labels = [int(graph.y) for graph in data]
    _, test = list(StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0).split(labels, labels))[fold]
    test = set(test.tolist())
    return [(graph, str(label), index in test) for index, (graph, label) in enumerate(zip(data, labels))]
