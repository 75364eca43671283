"""GraphMAE: pretraining speed on Cora (zoo against the official DGL code) and node-embedding
inference on large synthetic graphs (mini-batch against full graph).

`pretrain`: one epoch is GraphMAE's full-batch step with the paper's Cora config (GAT
2 × 512, 4 heads, PReLU, in_drop 0.2, attn_drop 0.1; mask 0.5, replace 0.05, alpha 3;
Adam lr 1e-3 with L2 2e-4, cosine over 1500 epochs): masking, encoder, re-mask, decoder,
SCE loss, backward, Adam step. The zoo's `GraphMAEPretraining` runs in one fresh
subprocess; with `--official CHECKOUT --official-python PYTHON` the official `PreModel`
(THUDM/GraphMAE, built by its own `build_model` from its `configs.yml` for cora) runs in
another, under that Python (an environment with DGL). Both train on the same graph: Cora
as the zoo prepares it (undirected, one self-loop per node, row-normalised features),
which holds the same 13,264 edges and features as DGL's `CoraGraphDataset` after
GraphMAE's preprocessing. Each side runs `--warmup` untimed epochs, then `--epochs`
timed ones; `--rounds` rounds alternate which side goes first, and the speed ratio is
the median over rounds, so that drift in background load mostly cancels.

`inference`: `encoder.embed(data, node_batch_size=B)` (exact layer-wise inference: each
layer for all nodes, B target nodes at a time with their one-hop in-neighbours, from the
previous layer's (N, D) output) of an untrained `GraphMAEEncoder` with the Cora
architecture but `in_dim` 64, on synthetic graphs of `--sizes` nodes and average degree
`--degree`, and the full-graph `encoder.embed(data)` on `--full-sizes`. `--graph local`
links each node to nodes at most `--window` ids away (a graph in a locality-preserving
order, whose batches of consecutive nodes share most of their neighbours); `--graph
random` links uniformly random nodes (the worst case: a batch's one-hop neighbourhood is
~degree times the batch). Each case runs in a fresh subprocess; peak memory is RSS added
by the call.

    python benchmarks/bench_graphmae.py pretrain --threads 1 --markdown \\
        --official /tmp/graphmae_official --official-python /tmp/dglenv/bin/python
    python benchmarks/bench_graphmae.py inference --threads 1 --markdown
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, machine_info, markdown_table, mib, run_worker, serve

SEED = 0
#: the paper's Cora recipe (THUDM/GraphMAE configs.yml); the zoo's GraphMAEConfig defaults are its architecture
OBJECTIVE = {"mask_rate": 0.5, "replace_rate": 0.05, "alpha_l": 3.0}
LR, WEIGHT_DECAY, RECIPE_EPOCHS = 1e-3, 2e-4, 1500
SIDES = ("zoo", "official")


def cosine(epoch: int, total: int = RECIPE_EPOCHS) -> float:
    """The recipe's lr multiplier (cosine to 0, no warm-up); both sides step it so that both pay for it."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / total))


# ----------------------------------------------------------------------------- pretraining workers


def time_epochs(epoch: Callable[[], float], spec: dict[str, Any]) -> dict[str, Any]:
    """Run `warmup` untimed epochs, then time `epochs` epochs one by one under a peak-memory probe."""
    for _ in range(spec["warmup"]):
        epoch()
    seconds, losses = [], []
    with PeakMemory() as memory:
        for _ in range(spec["epochs"]):
            start = time.perf_counter()
            losses.append(epoch())
            seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "losses": losses, "peak_added": memory.added, "baseline_rss": memory.baseline}


def zoo_pretrain(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch_geometric

    from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder
    from modalities.graphs.graphmae.objective import GraphMAEPretraining

    graph = torch.load(spec["graph"])
    torch.manual_seed(spec["seed"])
    encoder = GraphMAEEncoder(GraphMAEConfig(in_dim=graph["x"].shape[1]))
    objective = GraphMAEPretraining(encoder, **OBJECTIVE)
    optimizer = torch.optim.Adam(objective.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)

    def epoch() -> float:
        objective.train()
        loss = objective(graph).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item()

    versions = {"torch": torch.__version__, "torch_geometric": torch_geometric.__version__}
    return {**time_epochs(epoch, spec), "versions": versions, "config": {**encoder.config.to_dict(), **OBJECTIVE}}


def official_pretrain(spec: dict[str, Any]) -> dict[str, Any]:
    """The official PreModel and optimizer, built as main_transductive.py does for `--dataset cora --use_cfg`."""
    import dgl
    import torch
    from graphmae.models import build_model
    from graphmae.utils import build_args, create_optimizer, load_best_configs, set_random_seed

    sys.argv = [sys.argv[0], "--dataset", "cora", "--use_cfg"]
    args = load_best_configs(build_args(), str(Path(spec["official"]) / "configs.yml"))
    graph = torch.load(spec["graph"])
    g = dgl.graph(tuple(graph["edge_index"]), num_nodes=graph["x"].shape[0])
    g.create_formats_()
    args.num_features = graph["x"].shape[1]
    set_random_seed(spec["seed"])
    model = build_model(args)
    optimizer = create_optimizer(args.optimizer, model, args.lr, args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: cosine(e, args.max_epoch))

    def epoch() -> float:
        model.train()
        loss, _ = model(g, graph["x"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item()

    keys = ("encoder", "num_hidden", "num_heads", "num_out_heads", "num_layers", "activation", "in_drop",
            "attn_drop", "mask_rate", "replace_rate", "alpha_l", "lr", "weight_decay", "max_epoch")
    return {**time_epochs(epoch, spec), "versions": {"torch": torch.__version__, "dgl": dgl.__version__},
            "config": {key: getattr(args, key) for key in keys}}


# ----------------------------------------------------------------------------- inference worker


def synthetic_graph(nodes: int, degree: int, in_dim: int, kind: str, window: int) -> Any:
    """`nodes * degree / 2` edges (average degree `degree` once made undirected) and N(0, 1) features."""
    import torch
    from torch_geometric.data import Data

    generator = torch.Generator().manual_seed(SEED)
    source = torch.randint(0, nodes, (nodes * degree // 2,), generator=generator)
    if kind == "random":
        target = torch.randint(0, nodes, source.shape, generator=generator)
    else:
        target = (source + torch.randint(1, window + 1, source.shape, generator=generator)) % nodes
    x = torch.randn(nodes, in_dim, generator=generator)
    return Data(x=x, edge_index=torch.stack([source, target]))


def first_batch(encoder: Any, prepared: Any, batch_size: int) -> tuple[int, int]:
    """Nodes and edges of the first batch's subgraph in a layer (targets + their one-hop in-neighbours)."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.sampler import NodeSamplerInput

    from modalities.graphs.neighbors import FullNeighborSampler

    edge_index, _ = encoder.layerwise_edges(prepared.edge_index, prepared.num_nodes)
    sampler = FullNeighborSampler(Data(edge_index=edge_index, num_nodes=prepared.num_nodes), num_layers=1)
    sample = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(min(batch_size, prepared.num_nodes))))
    return sample.node.numel(), sample.row.numel()


def inference_case(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from modalities.graphs.graphmae.model import GraphMAEConfig, GraphMAEEncoder

    torch.set_num_threads(spec["threads"])
    data = synthetic_graph(spec["nodes"], spec["degree"], spec["in_dim"], spec["graph"], spec["window"])
    torch.manual_seed(SEED)
    encoder = GraphMAEEncoder(GraphMAEConfig(in_dim=spec["in_dim"])).eval()
    batch_size = spec["node_batch_size"]
    encoder.embed(synthetic_graph(1000, spec["degree"], spec["in_dim"], "random", 1), node_batch_size=batch_size,
                  progress=False)  # warm-up: lazy imports, thread pool, oneDNN kernels
    with PeakMemory() as memory:
        start = time.perf_counter()
        rows = encoder.embed(data, node_batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
    output_bytes = rows.numel() * rows.element_size()
    del rows
    with PeakMemory() as prepare:
        prepared = encoder.processor.prepare(data)
    result = {
        "seconds": seconds, "peak_added": memory.added, "baseline_rss": memory.baseline, "memory_method": memory.method,
        "output_bytes": output_bytes, "prepare_peak_added": prepare.added, "edges": prepared.edge_index.shape[1],
        "input_bytes": sum(t.numel() * t.element_size() for t in (data.x, data.edge_index)),
    }
    if batch_size is not None:
        result["first_batch_nodes"], result["first_batch_edges"] = first_batch(encoder, prepared, batch_size)
    return {**spec, **result}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["task"] == "inference":
        return inference_case(spec)
    import torch

    torch.set_num_threads(spec["threads"])
    return {**spec, **(zoo_pretrain(spec) if spec["task"] == "zoo" else official_pretrain(spec))}


# ----------------------------------------------------------------------------- drivers


def save_cora(data_root: str, path: Path) -> int:
    """Cora as the zoo prepares it for GraphMAE, saved for both sides; returns its edge count."""
    import torch

    from modalities.graphs.datasets import load_dataset
    from modalities.graphs.processing import GraphProcessor

    prepared = GraphProcessor(in_dim=1433, feature_norm="row").prepare(load_dataset("cora", data_root))
    torch.save({"x": prepared.x, "edge_index": prepared.edge_index}, path)
    return prepared.edge_index.shape[1]


def run_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    sides = SIDES if args.official else SIDES[:1]
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="bench_graphmae_") as scratch:
        graph = Path(scratch) / "cora.pt"
        edges = save_cora(args.data, graph)
        threads = {"OMP_NUM_THREADS": str(args.threads)}
        for index in range(args.rounds):
            for side in sides if index % 2 == 0 else sides[::-1]:
                spec = {"task": side, "graph": str(graph), "epochs": args.epochs, "warmup": args.warmup,
                        "threads": args.threads, "seed": SEED + index, "official": args.official}
                if side == "zoo":
                    result = run_worker(__file__, spec, env=threads)
                else:
                    result = run_worker(__file__, spec, python=args.official_python, cwd=args.official,
                                        env={**threads, "PYTHONPATH": args.official, "DGLBACKEND": "pytorch"})
                results[side].append(result)
                print(f"round {index + 1} {side}: {statistics.median(result['seconds']):.3f} s/epoch",
                      file=sys.stderr, flush=True)
    return {"part": "pretrain", "edges": edges, "results": results}


def run_inference(args: argparse.Namespace) -> dict[str, Any]:
    script = Path(__file__).resolve()
    results = []
    for nodes in args.sizes:
        for batch_size in [args.node_batch_size] + ([None] if nodes in args.full_sizes else []):
            spec = {"task": "inference", "nodes": nodes, "degree": args.degree, "in_dim": args.in_dim,
                    "graph": args.graph, "window": args.window, "node_batch_size": batch_size,
                    "threads": args.threads}
            result = run_worker(script, spec)
            results.append(result)
            print(f"{nodes} nodes, node_batch_size={batch_size}: {result['seconds']:.1f} s, "
                  f"+{mib(result['peak_added'])} MiB", file=sys.stderr, flush=True)
    return {"part": "inference", "results": results}


# ----------------------------------------------------------------------------- tables


def fmt_seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def pretrain_markdown(summary: dict[str, Any]) -> list[str]:
    results, args = summary["results"], summary["args"]
    rows = []
    for side, runs in results.items():
        seconds = [s for run in runs for s in run["seconds"]]
        versions = ", ".join(f"{name} {version}" for name, version in runs[0]["versions"].items())
        losses = "; ".join(f"{run['losses'][0]:.3f} → {run['losses'][-1]:.3f}" for run in runs)
        rows.append([side, versions, len(seconds), fmt_seconds(seconds), f"{1 / statistics.median(seconds):.2f}",
                     mib(max(run["peak_added"] for run in runs)), losses])
    lines = [
        (f"Cora, {summary['edges']:,} edges; {args['rounds']} round(s) × ({args['warmup']} warm-up + "
         f"{args['epochs']} timed epochs) per side; s/epoch = median (min–max) over all timed epochs; "
         "peak = most RSS added during a round's timed epochs (MiB); loss = first → last timed epoch, per round."),
        "",
        markdown_table(["implementation", "versions", "epochs timed", "s/epoch", "epochs/s", "peak", "loss"], rows),
        "",
    ]
    if "official" in results:
        ratios = [statistics.median(o["seconds"]) / statistics.median(z["seconds"])
                  for z, o in zip(results["zoo"], results["official"])]
        per_round = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        lines += [f"Speed zoo/official (epochs/s): {statistics.median(ratios):.2f} (per round: {per_round}).", ""]
    return lines


def inference_markdown(summary: dict[str, Any]) -> list[str]:
    rows = []
    for r in summary["results"]:
        batched = r["node_batch_size"] is not None
        rows.append([
            f"{r['nodes']:,}", f"{r['edges']:,}", f"batches of {r['node_batch_size']:,}" if batched else "full graph",
            f"{r['first_batch_nodes']:,} / {r['first_batch_edges']:,}" if batched else "—",
            f"{r['seconds']:.1f}", f"{r['nodes'] / r['seconds']:,.0f}", mib(r["baseline_rss"]), mib(r["peak_added"]),
            mib(r["output_bytes"]), mib(r["prepare_peak_added"]), mib(r["peak_added"] - r["output_bytes"]),
        ])
    args = summary["args"]
    window = f", window {args['window']}" if args["graph"] == "local" else ""
    return [
        (f"{args['graph']} graph (average degree {args['degree']}{window}), {args['in_dim']} features; edges after "
         "preparation (undirected + self-loops); MiB of RSS: before = process with graph and model, peak = added "
         "by the call, output = the (N, 512) float32 result, prepare = added by `processor.prepare` alone."),
        "",
        markdown_table(["nodes", "edges", "mode", "1st batch layer subgraph nodes / edges", "wall s", "nodes/s",
                        "RSS before", "peak", "output", "prepare", "peak − output"], rows),
        "",
    ]


def markdown(summary: dict[str, Any]) -> str:
    machine = summary["machine"]
    lines = [
        (f"{machine['date']}; {machine['cpu']}, {machine['cores']} cores shared with other jobs (1-min load average "
         f"{machine['load_average_1min']:.1f} at start, {machine['load_average_1min_end']:.1f} at end); "
         f"torch {machine['torch']}, {machine['torch_threads']} thread(s); {machine['total_seconds']} s in all."),
        "",
    ]
    return "\n".join(lines + (pretrain_markdown if summary["part"] == "pretrain" else inference_markdown)(summary))


# ----------------------------------------------------------------------------- command line


def sizes(text: str) -> list[int]:
    return [int(float(item)) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parts = parser.add_subparsers(dest="part")
    for name in ("pretrain", "inference"):
        sub = parts.add_parser(name)
        sub.add_argument("--threads", type=int, default=1, help="torch (and OpenMP) threads (default: 1)")
        sub.add_argument("--markdown", action="store_true", help="print Markdown tables instead of JSON")
        sub.add_argument("--json", type=Path, help="also write the raw results here")
    pretrain = parts.choices["pretrain"]
    pretrain.add_argument("--data", default="/work/shared/data/planetoid", help="folder holding Cora/raw")
    pretrain.add_argument("--epochs", type=int, default=20, help="timed epochs per side and round (default: 20)")
    pretrain.add_argument("--warmup", type=int, default=3, help="untimed epochs first (default: 3)")
    pretrain.add_argument("--rounds", type=int, default=2, help="rounds of both sides (default: 2)")
    pretrain.add_argument("--official", help="checkout of THUDM/GraphMAE (holds graphmae/ and configs.yml)")
    pretrain.add_argument("--official-python", default=sys.executable, help="Python of an environment with DGL")
    inference = parts.choices["inference"]
    inference.add_argument("--graph", choices=("local", "random"), default="local")
    inference.add_argument("--sizes", type=sizes, default=sizes("50000,100000,250000,500000,1000000"),
                           help="nodes, comma-separated (default: 50k to 1M)")
    inference.add_argument("--full-sizes", type=sizes, default=sizes("50000,100000"),
                           help="of those, the sizes also embedded as one full graph (default: %(default)s)")
    inference.add_argument("--node-batch-size", type=int, default=4096)
    inference.add_argument("--degree", type=int, default=10)
    inference.add_argument("--window", type=int, default=100, help="local graph: largest id distance of an edge")
    inference.add_argument("--in-dim", type=int, default=64)
    args = parser.parse_args(argv)
    if args.worker is None and args.part is None:
        parser.error("choose a part: pretrain or inference")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def run() -> dict[str, Any]:
        machine = machine_info(args.threads)
        started = time.perf_counter()
        summary = run_pretrain(args) if args.part == "pretrain" else run_inference(args)
        machine["load_average_1min_end"] = machine_info(args.threads)["load_average_1min"]
        machine["total_seconds"] = round(time.perf_counter() - started)
        return {**summary, "machine": machine, "args": {**vars(args), "json": str(args.json)}}

    serve(args, worker, markdown, run)


if __name__ == "__main__":
    main()
