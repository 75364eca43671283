"""T-JEPA at scale: embedding a table of `--rows` rows streamed from CSV, and pretraining speed.

`embed`: a CSV of `--rows` Adult-shaped rows (the 32 561 training rows of UCI Adult
repeated, so every value is real) is written once; then, each in a fresh subprocess,
- "streamed": `encoder.iter_embed(path, chunk_rows=C)` reads, processes and embeds C rows
  at a time and writes each chunk's (C, D) rows to a .npy shard, holding one chunk at once;
- "in memory" (only with `--in-memory`): `pd.read_csv` of the whole file, then
  `encoder.embed(frame)`, which holds the table and all its embeddings.
Rows/s counts the whole pipeline (parsing, processing, encoder, writing); peak memory is
the RSS the call adds. The encoder is the recipe's architecture (`tjepa-adult`) with
random weights (speed does not depend on the weights).

`pretrain`: rows/s of `TJEPAPretraining` steps with the adult recipe (batch 512, 4 target
subsets): masks, target encoder, context encoder, predictor, backward, AdamW, EMA update,
over `--steps` timed steps after `--warmup` untimed ones.

`compare`: the zoo against the official code (jose-melo/t-jepa at 98dda99, exported beside
the repository, e.g. to /tmp/tjepa_official, never imported by the zoo itself) on the same
weights: the official `Encoder` and transformer `Predictors` of the tjepa-adult
architecture are built and initialised as the official run.py does, and the zoo loads
their state dicts through modalities/tabular/tjepa/convert.py. Both get the same
processed Adult rows (the 32 561 training rows repeated to `--rows`; the official layout
is the numeric columns, then the category indices as floats, so its token order equals
the zoo's), in batches of `--batch-size` (512, the official batch size). Timed, each
implementation in its own subprocess, rounds alternating the order:
- "encoder forward": eval mode, no_grad, rows/s over `--rows` rows;
- "pretraining step": target encoder, context encoder, predictor, MSE, backward, AdamW,
  EMA, with the same precomputed masks for both and the official mask semantics (feature
  indices read as token positions: the zoo's `mask_scope="official"`); gradient clamping
  off in both. The official step is assembled from its modules the way its train.py
  loop calls them; its data loader's mask collation is not timed (nor the zoo's masks).
A check worker with both on its path reports the max abs diff of the encoder outputs on
every distinct row, and of one step's loss and gradients.

    python benchmarks/bench_tjepa.py embed --rows 1000000 --threads 1 --markdown
    python benchmarks/bench_tjepa.py pretrain --threads 1 --markdown
    python benchmarks/bench_tjepa.py compare --rows 100000 --threads 1 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MIB, PeakMemory, machine_info, markdown_table, report, run_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ADULT = REPO.parent / "shared" / "data" / "adult"
DEFAULT_OFFICIAL = Path(os.environ.get("TJEPA_OFFICIAL", "/tmp/tjepa_official"))
DEFAULT_OFFICIAL_DEPS = Path(os.environ.get("TJEPA_OFFICIAL_DEPS", "/tmp/tjdeps"))
IMPLEMENTATIONS = ("official", "zoo")


def adult_encoder(adult: Path):
    from modalities.tabular.datasets import load_adult
    from modalities.tabular.processing import TableProcessor
    from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
    from modalities.tabular.tjepa.pretrain import resolve_recipe
    from zoo.training import named_recipe

    splits = load_adult(adult)
    processor = TableProcessor.fit(splits.train, target=splits.target)
    architecture, recipe = resolve_recipe(named_recipe("tjepa", None, "adult"), {})
    return TJEPAEncoder(TJEPAConfig.for_table(processor, **architecture), processor), splits, recipe


def write_big_csv(adult: Path, rows: int, path: Path) -> None:
    from modalities.tabular.datasets import load_adult

    train = load_adult(adult).train
    repeats = -(-rows // len(train))
    with path.open("w") as handle:
        for repeat in range(repeats):
            part = train.iloc[: min(len(train), rows - repeat * len(train))]
            part.to_csv(handle, index=False, header=repeat == 0)


def embed_worker(payload: dict) -> dict:
    import pandas as pd
    import torch

    torch.set_num_threads(payload["threads"])
    encoder, _, _ = adult_encoder(Path(payload["adult"]))
    out = Path(payload["shards"])
    with PeakMemory() as memory:
        start = time.perf_counter()
        if payload["mode"] == "streamed":
            rows = 0
            for index, chunk in enumerate(encoder.iter_embed(payload["csv"], chunk_rows=payload["chunk_rows"],
                                                             batch_size=payload["batch_size"], progress=False)):
                np.save(out / f"shard-{index:05d}.npy", chunk.numpy())
                rows += len(chunk)
        else:
            rows = len(encoder.embed(pd.read_csv(payload["csv"], skipinitialspace=True, na_values=["?"]),
                                     batch_size=payload["batch_size"], progress=False))
        seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_mib": memory.added / MIB,
            "memory_method": memory.method}


def pretrain_worker(payload: dict) -> dict:
    import torch

    from modalities.tabular.tjepa.masking import MaskSampler
    from modalities.tabular.tjepa.objective import TJEPAPretraining
    from modalities.tabular.tjepa.pretrain import MASK_KEYS

    torch.set_num_threads(payload["threads"])
    torch.manual_seed(0)
    encoder, splits, recipe = adult_encoder(Path(payload["adult"]))
    masks = MaskSampler(encoder.config.num_features, **{key: recipe[key] for key in MASK_KEYS})
    objective = TJEPAPretraining(encoder, masks, recipe["predictor"], total_steps=1000)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=recipe["lr"])
    batch = encoder.processor.transform(splits.train.iloc[: recipe["batch_size"]])

    def step() -> None:
        loss = objective(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step()

    for _ in range(payload["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(payload["steps"]):
        step()
    seconds = time.perf_counter() - start
    return {"steps": payload["steps"], "seconds": seconds,
            "rows_per_s": payload["steps"] * recipe["batch_size"] / seconds}


# --- compare: the zoo against the official code on the same weights -------------------------------------------


def official_modules(spec: dict):
    """The official `Encoder` and transformer `Predictors` for the table in `spec`, built as
    run.py builds them; imported here so that only the official worker needs its checkout."""
    from argparse import Namespace

    import torch
    from src.encoder import Encoder
    from src.predictors import Predictors

    arch, pred = spec["architecture"], spec["predictor"]
    numeric, cards = spec["num_numeric"], [(spec["num_numeric"] + i, c) for i, c in enumerate(spec["cardinalities"])]
    args = Namespace(n_cls_tokens=arch["num_reg_tokens"], model_act_func=arch["activation"])
    encoder = Encoder(idx_num_features=list(range(numeric)), cardinalities=cards, hidden_dim=arch["hidden_dim"],
                      num_layers=arch["num_layers"], num_heads=arch["num_heads"], p_dropout=arch["dropout"],
                      layer_norm_eps=arch["layer_norm_eps"], gradient_clipping=0,
                      feature_type_embedding=arch["feature_type_embedding"], feature_index_embedding=False,
                      dim_feedforward=arch["dim_feedforward"], device=torch.device("cpu"), args=args)
    predictors = Predictors(pred_type="transformer", hidden_dim=arch["hidden_dim"], pred_embed_dim=pred["width"],
                            num_features=numeric + len(cards), num_layers=pred["depth"], num_heads=pred["heads"],
                            p_dropout=pred["dropout"], layer_norm_eps=arch["layer_norm_eps"],
                            activation=arch["activation"], device=torch.device("cpu"), cardinalities=cards,
                            pred_dim_feedforward=pred["feedforward"])
    return encoder, predictors


def official_initial_weights(spec: dict) -> dict:
    """Seeded official init (`init_weights(m, "trunc_normal")` on the encoder, as run.py with
    the launch script's INIT_TYPE; the predictor inits itself): the weights both sides load."""
    import torch
    from src.utils.train_utils import init_weights

    torch.manual_seed(0)
    encoder, predictors = official_modules(spec)
    for module in encoder.modules():
        init_weights(module, init_type="trunc_normal")
    return {"encoder": encoder.state_dict(), "predictor": predictors.state_dict_()}


def zoo_objective(spec: dict, weights: dict):
    """The zoo's encoder and pretraining objective holding the official weights, with the
    official mask semantics (`mask_scope="official"`), so both compute the same loss."""
    from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
    from modalities.tabular.tjepa.convert import encoder_state_from_official, predictor_state_from_official
    from modalities.tabular.tjepa.masking import MaskSampler
    from modalities.tabular.tjepa.objective import TJEPAPretraining

    config = TJEPAConfig(num_numeric=spec["num_numeric"], cardinalities=spec["cardinalities"],
                         **spec["architecture"])
    encoder = TJEPAEncoder(config)
    encoder.load_state_dict(encoder_state_from_official(weights["encoder"]))
    masks = MaskSampler(config.num_features, **spec["mask"])
    objective = TJEPAPretraining(encoder, masks, spec["predictor"], total_steps=spec["total_steps"],
                                 mask_scope="official")
    objective.predictor.load_state_dict(predictor_state_from_official(weights["predictor"]))
    return objective


def compare_inputs(data: dict, rows: int, implementation: str) -> dict:
    """The processed rows repeated to `rows`, in the layout each implementation takes:
    the official code one float tensor (numeric columns, then category indices)."""
    import torch

    repeats = -(-rows // len(data["numeric"]))
    numeric, categorical = data["numeric"].repeat(repeats, 1)[:rows], data["categorical"].repeat(repeats, 1)[:rows]
    if implementation == "official":
        return {"x": torch.cat([numeric, categorical.float()], dim=1)}
    return {"numeric": numeric, "categorical": categorical}


def batch_of(inputs: dict, start: int, size: int) -> dict:
    return {key: value[start:start + size] for key, value in inputs.items()}


def official_loss(encoder, target, predictors, x, masks: dict):
    """One JEPA loss with the official modules, called as its train.py loop calls them."""
    import torch
    from src.utils.train_utils import apply_masks_from_idx

    masks_enc, masks_pred = [masks["context"]], list(masks["targets"])
    with torch.no_grad():
        wanted = apply_masks_from_idx(target(x), masks_pred)
    predicted = predictors(encoder(x, masks_enc), masks_enc, masks_pred)
    return torch.nn.functional.mse_loss(predicted, wanted)


def zoo_loss(objective, batch: dict, masks: dict):
    """One JEPA loss with the zoo's objective, its mask sampler replaced by the given masks."""
    from modalities.tabular.tjepa.masking import FeatureMasks

    objective.masks = lambda batch_size: FeatureMasks(masks["context"], masks["targets"])
    return objective(batch).loss


def official_stepper(spec: dict, weights: dict):
    """(forward(batch), step(batch, masks, index)) over the official modules."""
    import copy

    import torch

    encoder, predictors = official_modules(spec)
    encoder.load_state_dict(weights["encoder"])
    predictors.load_state_dict_(weights["predictor"])
    target = copy.deepcopy(encoder).requires_grad_(False)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *predictors.parameters()], lr=spec["lr"],
                                  weight_decay=0.0)

    def step(batch: dict, masks: dict, index: int) -> None:
        loss = official_loss(encoder, target, predictors, batch["x"], masks)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        momentum = spec["ema"][0] + index * (spec["ema"][1] - spec["ema"][0]) / spec["total_steps"]
        with torch.no_grad():
            for online, slow in zip(encoder.parameters(), target.parameters()):
                slow.mul_(momentum).add_((1.0 - momentum) * online.detach())

    return (lambda batch: target.eval()(batch["x"])), step


def zoo_stepper(spec: dict, weights: dict):
    """(forward(batch), step(batch, masks, index)) over the zoo's objective."""
    import torch

    objective = zoo_objective(spec, weights)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=spec["lr"],
                                  weight_decay=0.0)

    def step(batch: dict, masks: dict, index: int) -> None:
        zoo_loss(objective, batch, masks).backward()
        optimizer.step()
        optimizer.zero_grad()
        objective.after_step()

    return (lambda batch: objective.target_encoder.eval()(**batch).last_hidden_state), step


def compare_worker(payload: dict) -> dict:
    """Time one implementation: encoder forward (eval, no_grad) or pretraining steps."""
    import torch

    torch.set_num_threads(payload["threads"])
    spec, folder = payload["spec"], Path(payload["folder"])
    data, weights = torch.load(folder / "data.pt"), torch.load(folder / "weights.pt")
    forward, step = (official_stepper if payload["implementation"] == "official" else zoo_stepper)(spec, weights)
    size = spec["batch_size"]
    if payload["what"] == "forward":
        inputs = compare_inputs(data, payload["rows"], payload["implementation"])
        with torch.no_grad():
            forward(batch_of(inputs, 0, size))
            with PeakMemory() as memory:
                start = time.perf_counter()
                for first in range(0, payload["rows"], size):
                    forward(batch_of(inputs, first, size))
                seconds = time.perf_counter() - start
        rows = payload["rows"]
    else:
        masks = torch.load(folder / "masks.pt")
        inputs = compare_inputs(data, len(masks) * size, payload["implementation"])
        warmup = payload["warmup"]
        for index in range(warmup):
            step(batch_of(inputs, index * size, size), masks[index], index)
        with PeakMemory() as memory:
            start = time.perf_counter()
            for index in range(warmup, len(masks)):
                step(batch_of(inputs, index * size, size), masks[index], index)
            seconds = time.perf_counter() - start
        rows = (len(masks) - warmup) * size
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_mib": memory.added / MIB}


def check_worker(payload: dict) -> dict:
    """With both on the path: write the shared official weights, then the max abs diff of the
    encoders' tokens on every distinct row and of one training step's loss and gradients."""
    import torch

    from modalities.tabular.tjepa.convert import encoder_state_from_official

    torch.set_num_threads(payload["threads"])
    spec, folder = payload["spec"], Path(payload["folder"])
    weights = official_initial_weights(spec)
    torch.save(weights, folder / "weights.pt")
    data, masks = torch.load(folder / "data.pt"), torch.load(folder / "masks.pt")[0]
    encoder, predictors = official_modules(spec)
    encoder.load_state_dict(weights["encoder"])
    predictors.load_state_dict_(weights["predictor"])
    objective = zoo_objective(spec, weights)
    rows, size = len(data["numeric"]), spec["batch_size"]
    official, zoo = compare_inputs(data, rows, "official"), compare_inputs(data, rows, "zoo")
    token_diff = 0.0
    with torch.no_grad():
        for first in range(0, rows, size):
            theirs = encoder.eval()(batch_of(official, first, size)["x"])
            ours = objective.encoder.eval()(**batch_of(zoo, first, size)).last_hidden_state
            token_diff = max(token_diff, float((theirs - ours).abs().max()))
    loss_official = official_loss(encoder.train(), encoder, predictors.train(), batch_of(official, 0, size)["x"],
                                  masks)
    loss_official.backward()
    loss_zoo = zoo_loss(objective.train(), batch_of(zoo, 0, size), masks)
    loss_zoo.backward()
    grads = encoder_state_from_official({name: p.grad for name, p in encoder.named_parameters()
                                         if p.grad is not None})
    zoo_grads = dict(objective.encoder.named_parameters())
    grad_diff = max(float((grad - zoo_grads[name].grad).abs().max()) for name, grad in grads.items())
    loss_official, loss_zoo = float(loss_official.detach()), float(loss_zoo.detach())
    return {"rows": rows, "token_max_abs_diff": token_diff, "loss_abs_diff": abs(loss_official - loss_zoo),
            "loss": loss_zoo, "encoder_grad_max_abs_diff": grad_diff}


def run_embed(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "rows.csv"
        write_big_csv(args.adult, args.rows, csv)
        print(f"wrote {args.rows} rows ({csv.stat().st_size / MIB:.0f} MiB)", file=sys.stderr)
        modes = ["streamed", "in memory"] if args.in_memory else ["streamed"]
        rows = []
        for mode in modes:
            shards = Path(tmp) / f"shards-{mode.replace(' ', '-')}"
            shards.mkdir()
            result = run_worker(__file__, {"mode": mode, "csv": str(csv), "shards": str(shards),
                                           "adult": str(args.adult), "threads": args.threads,
                                           "chunk_rows": args.chunk_rows, "batch_size": args.batch_size})
            rows.append([mode, result["rows"], f"{result['rows_per_s']:,.0f}", f"{result['peak_mib']:.0f}"])
    print_result(args, ["mode", "rows", "rows/s", "peak MiB added"], rows)


def run_pretrain(args: argparse.Namespace) -> None:
    result = run_worker(__file__, {"adult": str(args.adult), "threads": args.threads, "steps": args.steps,
                                   "warmup": args.warmup, "mode": "pretrain"})
    print_result(args, ["steps", "seconds", "rows/s"],
                 [[result["steps"], f"{result['seconds']:.1f}", f"{result['rows_per_s']:,.0f}"]])


def compare_spec(args: argparse.Namespace, folder: Path) -> dict:
    """Write the processed Adult rows and the step masks to `folder`; return what every
    worker needs to build the same models (the recipe's architecture and settings)."""
    import dataclasses

    import torch

    from modalities.tabular.tjepa.masking import MaskSampler
    from modalities.tabular.tjepa.pretrain import MASK_KEYS

    encoder, splits, recipe = adult_encoder(args.adult)
    config = dataclasses.asdict(encoder.config)
    architecture = {key: config[key] for key in ("hidden_dim", "num_layers", "num_heads", "dim_feedforward",
                                                   "dropout", "num_reg_tokens", "feature_type_embedding",
                                                   "activation", "layer_norm_eps")}
    inputs = encoder.processor.transform(splits.train)
    torch.save({"numeric": inputs["numeric"].float(), "categorical": inputs["categorical"]}, folder / "data.pt")
    sampler = MaskSampler(encoder.config.num_features, **{key: recipe[key] for key in MASK_KEYS})
    generator = torch.Generator().manual_seed(0)
    masks = [sampler(args.batch_size, generator) for _ in range(args.warmup + args.steps)]
    torch.save([{"context": m.context, "targets": m.targets} for m in masks], folder / "masks.pt")
    return {"architecture": architecture, "num_numeric": encoder.config.num_numeric,
            "cardinalities": list(encoder.config.cardinalities), "predictor": recipe["predictor"],
            "mask": {key: recipe[key] for key in MASK_KEYS}, "total_steps": args.warmup + args.steps,
            "lr": recipe["lr"], "ema": [recipe["ema_start"], recipe["ema_end"]], "batch_size": args.batch_size}


def official_env(args: argparse.Namespace) -> dict:
    """run_worker keywords that put the official checkout (first: its package is `src`),
    its extra dependency (tabulate) and this repository on the worker's path."""
    if not (args.official / "src" / "encoder.py").is_file():
        sys.exit(f"no official T-JEPA checkout at {args.official} (src/encoder.py missing): export jose-melo/t-jepa "
                 "98dda99 there (git archive 98dda99 | tar -x -C DIR) or pass --official DIR / set TJEPA_OFFICIAL")
    path = os.pathsep.join(str(p) for p in (args.official.resolve(), args.official_deps, REPO))
    return {"env": {"PYTHONPATH": path}, "cwd": str(args.official)}


def run_compare(args: argparse.Namespace) -> None:
    official = official_env(args)
    zoo = {"env": {"PYTHONPATH": str(REPO)}}
    with tempfile.TemporaryDirectory() as tmp:
        spec = compare_spec(args, Path(tmp))
        base = {"spec": spec, "folder": tmp, "threads": args.threads}
        check = run_worker(__file__, {**base, "mode": "check"}, **official)
        print(f"check: {check}", file=sys.stderr)
        results = {(what, name): [] for what in ("forward", "step") for name in IMPLEMENTATIONS}
        for round_index in range(args.rounds):
            order = IMPLEMENTATIONS if round_index % 2 == 0 else IMPLEMENTATIONS[::-1]
            for what in ("forward", "step"):
                for name in order:
                    payload = {**base, "mode": "compare", "what": what, "implementation": name, "rows": args.rows,
                               "warmup": args.warmup}
                    results[what, name].append(run_worker(__file__, payload, **(official if name == "official"
                                                                                else zoo)))
                    print(f"round {round_index} {what} {name}: {results[what, name][-1]}", file=sys.stderr)
    print_result(args, ["measure", "implementation", "rows/s", "official time / zoo time", "peak RSS added (MiB)",
                        "max abs diff zoo vs official"], compare_rows(results, check))


def compare_rows(results: dict, check: dict) -> list[list]:
    """Median over rounds of rows/s and peak RSS per measure and implementation."""
    diffs = {"forward": f"{check['token_max_abs_diff']:.1e} (tokens, {check['rows']:,} rows)",
             "step": f"loss {check['loss_abs_diff']:.1e}, encoder grads {check['encoder_grad_max_abs_diff']:.1e}"}
    labels = {"forward": "encoder forward (eval, no_grad)", "step": "pretraining step"}
    rows = []
    for what in ("forward", "step"):
        speed = {name: statistics.median(r["rows_per_s"] for r in results[what, name]) for name in IMPLEMENTATIONS}
        for name in IMPLEMENTATIONS:
            peak = statistics.median(r["peak_mib"] for r in results[what, name])
            rows.append([labels[what], name, f"{speed[name]:,.0f}",
                         f"{speed[name] / speed['official']:.2f}" if name == "zoo" else "1",
                         f"{peak:.0f}", diffs[what] if name == "zoo" else ""])
    return rows


def print_result(args: argparse.Namespace, headers: list[str], rows: list[list]) -> None:
    if args.markdown:
        print(markdown_table(headers, rows))
        print(f"\nmachine: {json.dumps(machine_info(args.threads))}")
    else:
        print(json.dumps({"headers": headers, "rows": rows, "machine": machine_info(args.threads)}, indent=2))


WORKERS = {"pretrain": pretrain_worker, "compare": compare_worker, "check": check_worker}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        payload = json.loads(sys.argv[2])
        report(WORKERS.get(payload.get("mode"), embed_worker)(payload))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["embed", "pretrain", "compare"])
    parser.add_argument("--adult", type=Path, default=DEFAULT_ADULT, help="folder with adult.data")
    parser.add_argument("--rows", type=int, default=None, help="rows to embed (embed: 1,000,000; compare: 100,000)")
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--batch-size", type=int, default=None, help="embed: 4096; compare: 512 (official)")
    parser.add_argument("--in-memory", action="store_true", help="also embed the whole table at once")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="compare: rounds, alternating the order")
    parser.add_argument("--official", type=Path, default=DEFAULT_OFFICIAL,
                        help="compare: export of jose-melo/t-jepa 98dda99 (default: $TJEPA_OFFICIAL or %(default)s)")
    parser.add_argument("--official-deps", type=Path, default=DEFAULT_OFFICIAL_DEPS,
                        help="compare: folder holding tabulate for the official code (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    compare = args.what == "compare"
    args.rows = args.rows or (100_000 if compare else 1_000_000)
    args.batch_size = args.batch_size or (512 if compare else 4096)
    {"embed": run_embed, "pretrain": run_pretrain, "compare": run_compare}[args.what](args)

if __name__ == "__main__":
    main()
