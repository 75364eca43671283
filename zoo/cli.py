"""The `zoo` command line: list, info, embed, probe, finetune, demo, env, convert, publish, pretrain."""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import inspect
import json
import os
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from zoo import registry
from zoo.config import parse_overrides
from zoo.errors import CheckpointError, ConfigError, InputError, UnknownModelError, ZooWarning, exit_status
from zoo.finetune_options import add_finetune_arguments
from zoo.io import check_writable_folder, input_files
from zoo.options import Once, add_table_arguments, check_table_source, positive_int, seed_int


def format_params(count: Optional[int]) -> str:
    """A parameter count as the model table shows it: "1.23B", "94.4M" (from 100K, "0.1M"),
    "12.3K", or "?" where the hub_config gives none."""
    if count is None:
        return "?"
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


def model_table(modality: Optional[str] = None, pattern: Optional[str] = None, pretrained: bool = False) -> str:
    """The Markdown model table of the README, made from hub_configs/ (the models `zoo list` would
    name with the same filters)."""
    lines = ["| name | modality | encoder params | source | licence |", "|---|---|---|---|---|"]
    for name in registry.list_models(pattern, modality, pretrained=pretrained):
        entry = registry.get_entry(name)
        where = location(entry)
        lines.append(f"| `{name}` | {entry.modality} | {format_params(entry.params)} | {where} | {entry.license} |")
    return "\n".join(lines)


def location(entry: registry.ModelEntry) -> str:
    """Where a checkpoint's weights come from, for the README table: the package, a Hub repo, an
    upstream file, or nowhere yet (a recipe only)."""
    if entry.embedded:
        return "embedded in the package"
    if entry.repo_id:
        return f"Hub `{entry.repo_id}`"
    return "upstream file" if entry.upstream else "recipe only (`zoo pretrain`), no weights yet"


def cmd_list(args: argparse.Namespace) -> None:
    """`zoo list`: names with modality, size and description (or the sizes, or the README table);
    no match is said on stderr and still exits 0."""
    if args.architectures:
        if args.markdown or args.pretrained:  # were dropped without a word
            raise ConfigError("--architectures lists sizes, which have no weights or table: drop --markdown and "
                              "--pretrained")
        sizes = [name for name in registry.list_architectures(modality=args.modality)
                 if registry.name_matches(name, args.pattern)]
        if not sizes:
            print(f"no architecture matches pattern={args.pattern!r} modality={args.modality!r}; "
                  "`zoo list --architectures` shows them all", file=sys.stderr)
        for name in sizes:
            print(name)
        return
    if args.markdown:
        print(model_table(args.modality, args.pattern, args.pretrained))
        return
    names = registry.list_models(args.pattern, args.modality, pretrained=args.pretrained)
    if not names:
        print(f"no model matches pattern={args.pattern!r} modality={args.modality!r}; `zoo list` shows them all",
              file=sys.stderr)
    width = max(map(len, names), default=0)
    for name in names:
        entry = registry.get_entry(name)
        print(f"{name:{width}s}  {entry.modality:8s} {format_params(entry.params):>8s}  {entry.description}")


def cmd_info(args: argparse.Namespace) -> None:
    """`zoo info`: a zoo name's hub_config, printed without importing torch; a folder, a Hub repo
    or a --revision (of a Hub repo id, or of a zoo name's repo) goes to `zoo.hub.info`."""
    if args.revision is None and registry.named_entry(args.name) is not None:  # a hub_config: answered without torch
        print(json.dumps(registry.info(args.name), indent=2))
        return
    from zoo.hub import info

    print(json.dumps(info(args.name, revision=args.revision), indent=2))


def load_for_command(args: argparse.Namespace) -> Any:
    """The encoder `zoo embed` / `zoo probe` run, on --device in --dtype, with --threads CPU threads.

    A fine-tuned model (a head on an encoder, such as BEATs' AudioSet taggers) gives its
    encoder, whose features are what embedding and probing measure. --random-init SEED gives
    the same architecture with seeded random weights: the baseline a probe is read against."""
    import torch

    from zoo.heads import EncoderWithHead
    from zoo.hub import load

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.random_init is not None:
        torch.manual_seed(args.random_init)
    model = load(args.name, revision=args.revision, device=args.device, dtype=args.dtype,
                 pretrained=args.random_init is None)
    if isinstance(model, EncoderWithHead):
        print(f"zoo: {args.name} is a {model.task} model; using its encoder's features, without its head",
              file=sys.stderr)
        return model.encoder
    return model


def add_run_arguments(parser: argparse.ArgumentParser, random_init: bool = True) -> None:
    """Where and how `zoo embed` / `zoo probe` / `zoo predict` run (the last without a random init:
    a fresh head predicts nothing worth writing)."""
    parser.add_argument("--device", help="e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", help="weights' precision, e.g. bfloat16 on a GPU (default: float32)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    if random_init:
        parser.add_argument("--random-init", type=seed_int, metavar="SEED",
                            help="the same architecture and preprocessing with random weights seeded SEED instead "
                                 "of the checkpoint's (nothing downloaded): the random-init baseline")
    parser.add_argument("--revision", help="the Hub branch, tag or commit of a Hub checkpoint (default: main)")


def add_job_arguments(parser: argparse.ArgumentParser, token_rows: bool = False) -> None:
    """How `zoo embed` / `zoo predict` batch and read their inputs, in resumable shards
    (`token_rows`: the job has `--pool none`, whose shards are smaller)."""
    parser.add_argument("--batch-size", type=positive_int,
                        help="items per forward pass (default: the encoder's own, 8 files, 32 graphs, 1024 table rows)")
    parser.add_argument("--shard-size", type=positive_int,
                        help="inputs per shard; a rerun after an interruption skips finished shards (default: 1024"
                             + ("; 64 files with --pool none, whose token rows a shard holds until it is written)"
                                if token_rows else ")"))
    parser.add_argument("--sampling-rate", type=positive_int,
                        help="rate of audio arrays in parquet rows that carry none (files carry their own)")
    parser.add_argument("--ignore-extra-columns", action="store_true",
                        help="tables: skip columns the checkpoint's schema does not know, such as an id column "
                             "(default: refuse them)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on stderr)")


def cmd_embed(args: argparse.Namespace) -> None:
    """`zoo embed`: INPUTS or a --dataset into OUT, in resumable shards; the inputs are checked
    before the model loads, which may mean a download."""
    from zoo.embed_job import run_embed_job

    check_dataset_source(args)  # before the model loads, as the INPUTS' paths are checked
    check_input_paths(args.inputs)
    encoder = load_for_command(args)
    if args.ignore_extra_columns:
        ignore_extra_columns(encoder, args.name)
    if args.dataset:
        embed_named_dataset(encoder, args)
        return
    inputs, names, kwargs = job_inputs(encoder, args, "embed")
    encoder = fitted_random_init(encoder, args, inputs)
    shape = run_embed_job(encoder, inputs, Path(args.output), layer=parse_layer(args.layer), pool=args.pool or "mean",
                          batch_size=args.batch_size, shard_size=args.shard_size, names=names,
                          progress=not args.no_progress, **kwargs)
    counted = "table" if hasattr(encoder, "table_chunks") else "input"  # a table gives a row per table row
    print(f"wrote {args.output}: {len(inputs)} {counted}{'s' * (len(inputs) != 1)}, {shape}", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> None:
    """`zoo predict`: a head's labels or values for INPUTS or a --dataset, into a table; --top-k,
    OUT and the inputs are checked before the model loads."""
    import torch

    from zoo.heads import check_top_k
    from zoo.hub import load
    from zoo.predict_job import check_prediction_output, check_predictor, run_predict, run_predict_dataset

    check_top_k(args.top_k)
    check_prediction_output(Path(args.output))
    check_dataset_source(args)
    check_input_paths(args.inputs)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = load(args.name, revision=args.revision, device=args.device, dtype=args.dtype)
    check_predictor(model, args.name, args.dataset, args.top_k)
    if args.ignore_extra_columns:
        ignore_extra_columns(model.encoder, args.name)
    if args.dataset:
        written = run_predict_dataset(model, args.dataset, args.data, Path(args.output), top_k=args.top_k,
                                      batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    else:
        inputs, names, kwargs = job_inputs(model.encoder, args, "predict")
        written = run_predict(model, inputs, names, Path(args.output), top_k=args.top_k,
                              batch_size=args.batch_size, shard_size=args.shard_size, progress=not args.no_progress,
                              **kwargs)
    print(f"wrote {args.output}: {written}", file=sys.stderr)


def job_inputs(encoder: Any, args: argparse.Namespace, command: str) -> tuple[list[Any], list[str], dict[str, Any]]:
    """`zoo embed` / `zoo predict`'s INPUTS: the files the encoder reads (a folder's among them),
    a Hub parquet file's records, their names, and the preprocessing options given."""
    from zoo.embed_job import rows_of_parquet_files
    from zoo.probe_job import file_suffixes

    suffixes = file_suffixes(encoder, args.name, command)
    output = Path(args.output).resolve()
    if any(Path(item).resolve() == output for item in args.inputs):
        raise ConfigError(f"-o {args.output} is also one of the inputs, which the output would replace; write it "
                          "elsewhere")
    # a folder given as input may hold the output of an earlier run: that file is not an input
    files = [item for item in expand_inputs(args.inputs, suffixes) if Path(item).resolve() != output]
    inputs, names = rows_of_parquet_files(files, encoder.processor.dataset_feature)
    if args.sampling_rate and not hasattr(encoder.processor, "sampling_rate"):
        raise ConfigError(f"--sampling-rate {args.sampling_rate} is the rate of audio arrays; {args.name} reads "
                          f"{encoder.modality} inputs: drop it")
    if args.sampling_rate and isinstance(inputs, list):
        given = "the input is an audio file" if len(inputs) == 1 else f"the {len(inputs)} inputs are audio files"
        raise ConfigError(f"--sampling-rate {args.sampling_rate} gives the rate of audio arrays that carry none "
                          f"(rows of a parquet file); {given}, which carry their own rate, and each is resampled "
                          f"to the model's {encoder.processor.sampling_rate} Hz: leave it out")
    return inputs, names, {"sampling_rate": args.sampling_rate} if args.sampling_rate else {}


def check_input_paths(inputs: Sequence[str]) -> None:
    """Refuse an INPUT that names no file or folder (a typo) before the model loads, which may mean
    a download, and before the job makes its OUT.parts/ folder. URLs go on to the processor, which
    says how to read them."""
    for item in inputs:
        if "://" not in item and not Path(item).exists():
            raise InputError(f"input {item!r} does not exist; check the path (INPUTS are files or folders)")


def ignore_extra_columns(encoder: Any, name: str) -> None:
    """--ignore-extra-columns: a table encoder's processor skips columns its schema does not know."""
    if not hasattr(encoder.processor, "extra_columns"):
        raise ConfigError(f"--ignore-extra-columns is for table encoders; {name} takes {encoder.modality} inputs")
    encoder.processor.extra_columns = "ignore"


def embed_named_dataset(encoder: Any, args: argparse.Namespace) -> None:
    """`zoo embed NAME --dataset D`: a graph or table dataset the papers use, by name (its
    modality's `datasets.embed_dataset`), written in one pass."""
    from zoo.embed_job import check_output, dataset_rows, embedding_record, write_embeddings

    check_output(Path(args.output), pool_none=False)
    encoder = fitted_random_init(encoder, args)
    pool = args.pool or getattr(encoder.config, "pooling", "mean")  # a graph checkpoint's own: named in the record
    names, rows = dataset_rows(encoder, args.dataset, args.data, layer=parse_layer(args.layer), pool=pool,
                               batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    if Path(args.output).suffix == ".npy" and "/" in names[0]:  # "graph#G/node#I": whose node a row is
        raise InputError(f"--pool none on {args.dataset}, a set of graphs, gives the nodes of every graph; an .npy "
                         "array of them would not say which graph each row belongs to: write .parquet, whose rows "
                         "are named graph#G/node#I")
    record = embedding_record(encoder, parse_layer(args.layer), pool)
    print(f"wrote {args.output}: {write_embeddings(Path(args.output), names, rows, record)}", file=sys.stderr)


def fitted_random_init(encoder: Any, args: argparse.Namespace, inputs: Optional[list[Any]] = None) -> Any:
    """A `--random-init` encoder with the statistics pretraining fits (T-JEPA's output scale) fitted
    on the rows to embed, or on a named dataset's training rows, as `zoo finetune --random-init`
    fits them on its training rows: unfitted, its rows are nearly one vector."""
    if args.random_init is None or not hasattr(encoder, "fitted_to"):
        return encoder
    if inputs is None:
        splits = registry.modality_part(encoder.modality, "datasets", "load_dataset")(args.dataset, args.data)
        inputs = splits.train.drop(columns=[splits.target])
    print(f"zoo: fitting the random init's output scale on the {'input' if args.inputs else 'training'} rows, as "
          "pretraining fits it on its rows", file=sys.stderr)
    return encoder.fitted_to(inputs)


def check_dataset_source(args: argparse.Namespace) -> None:
    """`zoo embed` / `zoo predict` read INPUTS or one --dataset: exactly one of them, without the
    other's options, which it would ignore (a --shard-size promised shards a rerun resumes from)."""
    if not args.dataset:
        if not args.inputs:
            raise ConfigError("pass INPUTS (files or folders) or --dataset NAME (graph and table encoders)")
        if args.data:
            raise ConfigError(f"--data {args.data} is the folder --dataset NAME is read from; INPUTS are read "
                              "from their own paths: drop --data, or pass --dataset instead of INPUTS")
        return
    if args.inputs:
        raise ConfigError(f"pass INPUTS or --dataset, not both (got {len(args.inputs)} input(s) and "
                          f"--dataset {args.dataset})")
    given = [f"--{option.replace('_', '-')}" for option in ("shard_size", "sampling_rate") if getattr(args, option)]
    if given:
        raise ConfigError(f"{' and '.join(given)} go with INPUTS: --dataset {args.dataset} is read and written in "
                          f"one pass, in no shards, and holds no audio; drop {' and '.join(given)}")


#: `zoo probe` options that only --data files use, by their argparse names
FILE_PROBE_OPTIONS = ("label_regex", "test_regex", "layer", "pool", "k", "batch_size")


def cmd_probe(args: argparse.Namespace) -> None:
    """`zoo probe`: prints JSON results for --table, --dataset or --data files, one mode a call;
    options of another mode are refused rather than ignored."""
    from zoo.probe_job import file_suffixes, labelled_files, run_probe

    if args.table:
        refuse_file_options(args, "--table")
        print(json.dumps({**described_model(args), **probe_table(args)}, indent=2))
        return
    if args.target or args.test_table or args.task:
        raise ConfigError("--target, --test-table and --task go with --table FILE (a labelled table of your own)")
    if args.dataset:
        if args.cache:
            raise ConfigError("--cache keeps the embeddings of --data files; a --dataset protocol embeds its "
                              "graphs or rows itself: drop --cache")
        refuse_file_options(args, "--dataset")
        print(json.dumps({**described_model(args), **probe_dataset(args)}, indent=2))
        return
    if not args.data:
        raise ConfigError("pass --data DIR (a labelled folder of files) or --dataset NAME (a graph or table dataset)")
    if args.protocol:
        raise ConfigError(f"--protocol {args.protocol} is for --dataset and --table; --data files are scored by a "
                          "linear probe, k-NN and RankMe: drop --protocol")
    if args.seeds is not None:
        raise ConfigError("--seeds is for --dataset and --table; a --data probe draws no random numbers (its "
                          "L-BFGS logistic regression and k-NN are deterministic), so it has no seed: drop --seeds")
    if args.cache:
        check_writable_folder(args.cache, "--cache")
    encoder = load_for_command(args)
    suffixes = file_suffixes(encoder, args.name, "probe", labelled=True)
    rows = labelled_files(Path(args.data), args.label_regex, args.test_regex, suffixes,
                          encoder.processor.dataset_feature)
    pool = args.pool or "mean"
    results = run_probe(encoder, rows, layer=args.layer, batch_size=args.batch_size or 8, k=args.k or 20, pool=pool,
                        cache=Path(args.cache) if args.cache else None, progress=not args.no_progress)
    print(json.dumps({**described_model(args), "layer": args.layer, "pool": pool, **results}, indent=2))


def refuse_file_options(args: argparse.Namespace, mode: str) -> None:
    """--data's options given with --dataset or --table are refused by name: those protocols
    embed and score with their own settings, and would otherwise ignore them silently."""
    given = ["--" + name.replace("_", "-") for name in FILE_PROBE_OPTIONS if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: only for --data files; {mode} runs its paper's protocol, which "
                          "chooses its own layer, pooling, batches and classifier (set its seeds with --seeds): "
                          f"drop {'it' if len(given) == 1 else 'them'}")


def described_model(args: argparse.Namespace) -> dict:
    """The model a probe's results belong to: its name, the Hub revision asked for and the seed of
    its random init, where given."""
    given = {"revision": args.revision, "random_init": args.random_init}
    return {"model": args.name, **{key: value for key, value in given.items() if value is not None}}


def cmd_finetune(args: argparse.Namespace) -> None:
    """`zoo finetune`: runs or resumes the run (`zoo.finetune_job.run_finetune`) and prints its report as JSON."""
    from zoo.finetune_job import run_finetune
    from zoo.run_folders import check_run_folder, run_lock, undone_if_refused

    check_run_folder(Path(args.output))  # before the model and the data load
    with undone_if_refused(Path(args.output)), run_lock(Path(args.output)):
        report = run_finetune(args)
    print(json.dumps(report, indent=2))


def probe_dataset(args: argparse.Namespace) -> dict:
    """The protocol of a named dataset, run by the encoder's modality (graphs: GraphMAE's linear probe)."""
    encoder = load_for_command(args)
    probe = registry.modality_part(encoder.modality, "evaluation", "probe_dataset")
    if probe is None:
        raise ConfigError(f"{encoder.modality} encoders have no --dataset protocols; use --data DIR")
    return probe(encoder, args.dataset, args.data, seeds=tuple(args.seeds or [0]), device=args.device,
                 protocol=args.protocol)


def probe_table(args: argparse.Namespace) -> dict:
    """A table encoder's downstream protocol on a labelled table of your own (`--table`)."""
    check_table_source(args, {"--data": args.data, "--dataset": args.dataset, "--cache": args.cache})
    encoder = load_for_command(args)
    probe = registry.modality_part(encoder.modality, "evaluation", "probe_table")
    if probe is None:
        raise ConfigError(f"--table is for table encoders; {args.name} reads {encoder.modality} inputs")
    return probe(encoder, args.table, args.target, args.test_table, args.task, seeds=tuple(args.seeds or [0]),
                 device=args.device, protocol=args.protocol)


def cmd_env(args: argparse.Namespace) -> None:
    """`zoo env`: the installation report as a Markdown list, for a bug report."""
    from zoo.environment import environment, markdown

    print(markdown(environment()))


def cmd_demo(args: argparse.Namespace) -> None:
    """`zoo demo`: the bundled examples through every embedded checkpoint, offline."""
    from zoo.demo import run_demo

    run_demo()


def cmd_convert(args: argparse.Namespace) -> None:
    """`zoo convert`: an upstream file through its family's converter (--format, default the
    family's first) into a zoo folder, which is reloaded to check that its weights are the same."""
    from zoo.hub import check_save_target, load_folder
    from zoo.run_cards import check_licence, converted_card

    family = registry.get_family(args.family)
    if not family.converters:
        convertible = sorted(name for name in registry.family_modules() if registry.get_family(name).converters)
        raise ConfigError(f"family {args.family!r} has no upstream checkpoint format to convert; "
                          f"`zoo convert` takes {convertible}")
    fmt = args.format or next(iter(family.converters))
    if fmt not in family.converters:
        raise ConfigError(f"family {args.family!r} converts formats {sorted(family.converters)}, not {fmt!r}")
    licence = None if args.license is None else check_licence(args.license)
    check_save_target(Path(args.out_dir))
    source = Path(args.upstream_file)
    encoder = call_converter(family.converters[fmt], source, parse_overrides(args.overrides))
    encoder.save_pretrained(args.out_dir, model_card=converted_card(encoder, source, fmt, licence))
    verify_round_trip(encoder, load_folder(Path(args.out_dir)))
    print(f"converted {args.upstream_file} ({fmt}) -> {args.out_dir} "
          f"({sum(p.numel() for p in encoder.parameters()):,} parameters, reload verified)", file=sys.stderr)


def cmd_publish(args: argparse.Namespace) -> None:
    """`zoo publish`: a folder, run or zoo name checked and sent to the Hub, or with --dry-run only
    listed; --model-card sends that file as the card."""
    from zoo.publishing import publish

    card = None
    if args.model_card:
        if not Path(args.model_card).is_file():
            raise ConfigError(f"--model-card {args.model_card!r} is not a file; pass the Markdown card to send")
        card = Path(args.model_card).read_text(encoding="utf-8")
    result = publish(args.source, args.repo_id, model_card=card, revision=args.revision, private=args.private,
                     create_pr=args.create_pr, commit_message=args.commit_message, dry_run=args.dry_run)
    print(f"would publish {result}\n(dry run: nothing was sent)" if args.dry_run else f"published: {result}")


def call_converter(convert, path: Path, overrides: dict):
    """Run a converter, passing `--set` overrides only to converters that take keyword settings."""
    if overrides:
        parameters = inspect.signature(convert).parameters.values()
        if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
            raise ConfigError(f"this converter reads every setting from the file and takes no --set options "
                              f"(got {sorted(overrides)})")
    return convert(path, **overrides)


def verify_round_trip(original, reloaded) -> None:
    """The saved folder must rebuild exactly the converted weights."""
    saved = reloaded.state_dict()
    for key, value in original.state_dict().items():
        if not value.equal(saved[key]):
            raise CheckpointError(f"converted checkpoint does not reload identically: {key} differs")


def expand_inputs(inputs: Sequence[str], suffixes: Sequence[str] = ()) -> list[str]:
    """Paths as given; a folder stands for the files under it (hidden ones left out, and those
    not ending in one of `suffixes` when there are some), sorted."""
    expanded = []
    for item in inputs:
        if not item.strip():
            raise InputError(f"input {item!r} is an empty path; pass a file or folder name")
        path = Path(item)
        if path.is_dir():
            expanded.extend(map(str, input_files(path, suffixes)))
        else:
            expanded.append(item)
    if not expanded:
        kinds = f" ({', '.join(suffixes)})" if suffixes else ""
        raise InputError(f"no input files{kinds} found in {list(inputs)}")
    return expanded


def parse_layer(text: Optional[str]):
    """--layer: empty (last), an int, a comma-separated list, or 'all'."""
    if text is None or text == "all":
        return text
    try:
        parts = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--layer {text!r}: use an int, a comma-separated list of ints (e.g. 4,8,12) "
                          "or 'all'") from None
    return parts[0] if len(parts) == 1 else parts


def family_module(family: str, module: str):
    """A family's `module` (e.g. "pretrain"), imported on first use; an unknown family or a module
    it lacks, or a package it imports that is not installed, is a zoo error naming it, not an ImportError."""
    modules = registry.family_modules()
    if family not in modules:
        raise UnknownModelError(f"unknown family {family!r}; known families: {sorted(modules)}")
    return imported(f"{modules[family]}.{module}", family, module)


def pretrain_options(family: str):
    """The module that adds `zoo pretrain FAMILY`'s options (`registry.options_module`, which imports
    no torch): from inside the family's folder, `zoo pretrain hubert -h` spent 6.3 s of CPU and 889 MB.
    A family whose options module has no `add_arguments` has no recipe: that is said, not an AttributeError."""
    module = imported(registry.options_module(family), family, "pretrain options")
    if not hasattr(module, "add_arguments"):
        raise ConfigError(f"family {family!r} has no pretraining recipe: {module.__name__} defines no add_arguments")
    return module


def imported(name: str, family: str, module: str):
    """Module `name`, `family`'s `module`; one that is missing, or that lacks a package, is a zoo error naming it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:  # a package the module imports: was "has no pretrain module yet"
            raise ConfigError(f"{family} {module} needs the module {err.name!r}, which is not installed here; "
                              "install the package that provides it") from err
        raise ConfigError(f"family {family!r} has no {module} module yet") from err


def add_pretrain_parsers(commands, recipe: Optional[str]) -> None:
    """`zoo pretrain FAMILY ...`: the chosen family's options (`pretrain_options`, without torch);
    its pretrain.py is imported only when the command runs."""
    pretrain = commands.add_parser("pretrain", help="pretrain an encoder with its family's SSL objective")
    recipes = pretrain.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    for family in registry.family_modules():
        sub = recipes.add_parser(family, help=f"{family} pretraining (zoo pretrain {family} -h for its options)")
        if family == recipe:
            pretrain_options(family).add_arguments(sub)
            sub.set_defaults(func=partial(run_pretraining, family))


def run_pretraining(family: str, args: argparse.Namespace) -> None:
    """The `family`'s recipe (its pretrain.py's `run`), once its output path is known to be usable: some
    recipes compute their teachers' labels for minutes before they first write there. What a new run
    wrote before it began training is removed if it is refused (`undone_if_refused`)."""
    from zoo.run_folders import check_run_folder, run_lock, undone_if_refused

    run = family_module(family, "pretrain").run
    check_run_folder(Path(args.output))
    with undone_if_refused(Path(args.output)), run_lock(Path(args.output)):
        run(args)


def add_list_parser(commands: Any) -> None:
    """`zoo list`: the names `zoo.load` takes, as a table or the README's Markdown."""
    listing = commands.add_parser("list", help="list the known checkpoints")
    listing.add_argument("pattern", nargs="?",
                         help="fnmatch pattern, e.g. 'hubert-*'; without wildcards, names holding it, e.g. beats "
                              "(any case)")
    listing.add_argument("--modality", choices=registry.MODALITIES, help="only this modality's (default: all)")
    listing.add_argument("--markdown", action="store_true", help="print the README's model table")
    listing.add_argument("--pretrained", action="store_true",
                         help="only checkpoints with published weights, not pretraining recipes")
    listing.add_argument("--architectures", action="store_true",
                         help="list the named sizes without weights instead "
                              "(zoo.registry.architecture_config builds one)")
    listing.set_defaults(func=cmd_list)


def add_info_parser(commands: Any) -> None:
    """`zoo info`: a checkpoint's hub_config, or what a folder or Hub repo holds."""
    info = commands.add_parser("info", help="show a checkpoint's hub_config, or what a checkpoint folder holds")
    info.add_argument("name", help="zoo name, Hub repo id or local checkpoint folder")
    info.add_argument("--revision", help="the branch, tag or commit of a Hub repo id (default: main), or of the Hub "
                                         "repo a zoo name reads (what that snapshot holds, not the hub_config)")
    info.set_defaults(func=cmd_info)


def add_embed_parser(commands: Any) -> None:
    """`zoo embed`: inputs (or a named dataset) into a .npy or .parquet file, in resumable shards."""
    embed = commands.add_parser("embed", help="embed inputs into a .npy or .parquet file")
    embed.add_argument("name", help="zoo name, Hub repo id or local folder")
    embed.add_argument("inputs", nargs="*", default=[], help="input files or folders (or --dataset)")
    embed.add_argument("-o", "--output", required=True, help="out.npy or out.parquet")
    embed.add_argument("--layer", help="layer index, comma-separated list or 'all' (default: last)")
    embed.add_argument("--pool", choices=["mean", "cls", "none", "sum", "max"],
                       help="mean (default), cls or none; graphs: none (nodes), mean, sum or max (default: the "
                            "checkpoint's own)")
    embed.add_argument("--dataset", help="graph and table encoders: a named dataset to embed instead of INPUTS, "
                                         "e.g. cora (its nodes), mutag (one row per graph) or adult (its rows)")
    embed.add_argument("--data", action=Once, help="with --dataset: the folder holding it (as zoo probe --dataset)")
    add_job_arguments(embed, token_rows=True)
    add_run_arguments(embed)
    embed.set_defaults(func=cmd_embed)


def add_predict_parser(commands: Any) -> None:
    """`zoo predict`: a fine-tuned model's labels or values for inputs, into a table."""
    predict = commands.add_parser("predict", help="a fine-tuned model's labels (or values) for inputs, into a "
                                  ".csv, .parquet or .jsonl table")
    predict.add_argument("name", help="a `zoo finetune` run's classifier/ folder, a saved head, a tagger's zoo name")
    predict.add_argument("inputs", nargs="*", default=[], help="input files or folders (tables: a row each; Hub "
                         "parquet files: a record each; or --dataset)")
    predict.add_argument("-o", "--output", required=True, help="out.csv, out.parquet or out.jsonl")
    predict.add_argument("--dataset", help="graph and table models: a named dataset instead of INPUTS, e.g. cora "
                         "(a row per node), mutag (per graph) or adult (per row), named as zoo embed names them")
    predict.add_argument("--data", action=Once, help="with --dataset: the folder holding it (as zoo probe --dataset)")
    predict.add_argument("--top-k", type=int, default=1,
                         help="labels per input, most likely first (default: 1; Python's predict gives 5 unless told)")
    add_job_arguments(predict)
    add_run_arguments(predict, random_init=False)
    predict.set_defaults(func=cmd_predict)


def add_probe_parser(commands: Any) -> None:
    """`zoo probe`: linear probe, k-NN and RankMe on labelled files, or a named dataset's or a table's own protocol."""
    probe = commands.add_parser("probe", help="linear probe, k-NN and RankMe on labelled files or a named dataset")
    probe.add_argument("name", help="zoo name, Hub repo id or local folder")
    probe.add_argument("--data", action=Once,
                       help="folder of labelled input files; with --dataset, the dataset's root folder")
    probe.add_argument("--dataset", help="a named dataset with its paper's protocol, e.g. cora or mutag (graph "
                       "encoders), adult (tabular encoders)")
    add_table_arguments(probe)
    probe.add_argument("--seeds", type=seed_int, nargs="+",
                       help="with --dataset or --table: the protocol's seeds, one run each (default: 0); a --data "
                            "probe and a set of graphs' svm-10fold protocol have none, as they draw no random numbers")
    probe.add_argument("--protocol", help="with --dataset or --table: the paper's protocol, linear-probe (node "
                       "datasets), svm-10fold (sets of graphs), mlp, resnet, mlp-raw, resnet-raw or xgboost (tables); "
                       "default: the dataset's own (a table's: mlp)")
    probe.add_argument("--label-regex", help="with --data: regex whose first group is the label (default: parent "
                       "folder name)")
    probe.add_argument("--test-regex", help="with --data: file names matching it form the test split (default: a "
                       "test/ folder)")
    probe.add_argument("--layer", type=int, help="with --data: hidden state to probe (default: last)")
    probe.add_argument("--pool", choices=["mean", "cls"],
                       help="with --data: mean of the tokens or the cls token (default: mean)")
    probe.add_argument("--batch-size", type=positive_int, help="with --data: files per forward pass (default: 8)")
    probe.add_argument("--k", type=positive_int,
                       help="with --data: neighbours for k-NN (default: 20; at most the training items)")
    probe.add_argument("--cache", metavar="DIR",
                       help="with --data: keep the embeddings in DIR; an interrupted probe goes on from the shards "
                            "of 1024 items written, and a rerun with the same model, data, layer and pool reuses them")
    probe.add_argument("--no-progress", action="store_true",
                       help="no progress bar (default: shown on stderr; --dataset and --table show none)")
    add_run_arguments(probe)
    probe.set_defaults(func=cmd_probe)


def add_finetune_parser(commands: Any) -> None:
    """`zoo finetune`: a head trained on labelled data as a resumable run (options: zoo.finetune_options)."""
    finetune = commands.add_parser("finetune", help="train a classification (or regression) head on labelled files, "
                                     "a named dataset or a table, save and score it")
    finetune.add_argument("name", help="zoo name, Hub repo id or local folder")
    finetune.add_argument("-o", "--output", required=True,
                          help="run folder: checkpoint.pt, log.jsonl, loss.png, classifier/ (load it with zoo.load)")
    add_finetune_arguments(finetune)
    finetune.set_defaults(func=cmd_finetune)


def add_env_parser(commands: Any) -> None:
    """`zoo env`: what a bug report needs to say about this machine."""
    env = commands.add_parser("env", help="versions, accelerator and Hugging Face cache, for a bug report")
    env.set_defaults(func=cmd_env)


def add_demo_parser(commands: Any) -> None:
    """`zoo demo`: the bundled examples through every embedded checkpoint of their modalities."""
    demo = commands.add_parser("demo", help="embed the bundled examples with every embedded checkpoint of their "
                                            "modalities (graph ones take datasets: zoo embed NAME --dataset)")
    demo.set_defaults(func=cmd_demo)


def add_convert_parser(commands: Any) -> None:
    """`zoo convert`: an upstream checkpoint into a verified zoo folder; the families and their
    formats are listed from `registry.convert_formats`, which imports no family."""
    formats = {family: registry.convert_formats(family) for family in sorted(registry.family_modules())}
    convertible = [family for family, names in formats.items() if names]
    convert = commands.add_parser("convert", help="convert an upstream checkpoint into a zoo folder")
    convert.add_argument("family", help=f"{', '.join(convertible[:-1])} or {convertible[-1]}")
    convert.add_argument("upstream_file", help="the upstream checkpoint file (a MERT repo: its folder)")
    convert.add_argument("out_dir", help="the zoo checkpoint folder to write")
    listed = "; ".join(f"{family}: {', '.join(formats[family])}" for family in convertible)
    convert.add_argument("--format", help=f"upstream format, by default the family's first: {listed}")
    convert.add_argument("--license", help="the upstream checkpoint's licence, as the Hub's identifier (e.g. mit, "
                         "cc-by-nc-4.0), for the card's metadata: a local file states none")
    convert.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="a config setting the weights do not tell, e.g. --set num_heads=6 (repeatable)")
    convert.set_defaults(func=cmd_convert)


def add_publish_parser(commands: Any) -> None:
    """`zoo publish`: a checkpoint checked and pushed to the Hub with its card."""
    publish = commands.add_parser(
        "publish", help="check a checkpoint and push it to the Hugging Face Hub with its card")
    publish.add_argument("source", help="a checkpoint folder, a `zoo pretrain`/`zoo finetune` run folder or a zoo name")
    publish.add_argument("repo_id", nargs="?",
                         help="the Hub repo, 'org/name' (default for a zoo-trained name: its hub_config's)")
    publish.add_argument("--revision", help="the branch to push to (created if missing; default main)")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.add_argument("--create-pr", action="store_true", help="open a pull request instead of pushing")
    publish.add_argument("--commit-message", default="Upload with ssl-zoo",
                         help="the Hub commit's message (default: 'Upload with ssl-zoo')")
    publish.add_argument("--model-card", metavar="FILE", help="the README.md to send instead of the folder's card")
    publish.add_argument("--dry-run", action="store_true",
                         help="check and list what would be sent, without reaching the Hub (works offline)")
    publish.set_defaults(func=cmd_publish)


class ExactOptionsParser(argparse.ArgumentParser):
    """A parser that takes options only as spelt in full: argparse's prefixes (`--lr` for
    `--lr-decay`) would make a saved command mean something else, or fail as ambiguous,
    once a later version adds an option sharing the prefix. Sub-parsers are of this class too."""

    #: the command line being parsed (`parse` sets it), for the hints of `error`
    given: Sequence[str] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        """argparse's error, with the option a misspelt one meant where a required one is missing:
        `--out x.npy` was told only that -o/--output is required, not that --out is no option."""
        if "arguments are required" in message:
            options = long_options(self)
            names = [given.split("=", 1)[0] for given in self.given if given.startswith("--")]
            message += "".join(f"; {name} is no option: did you mean {near}?" for name in names if name not in options
                               for near in [nearest_option(name, options)] if near)
        super().error(message)


def build_parser(recipe: Optional[str] = None) -> argparse.ArgumentParser:
    """The `zoo` parser, a sub-parser per command; `recipe` names the one pretraining family whose
    options it adds, so that only that family is imported."""
    from zoo import __version__

    parser = ExactOptionsParser(prog="zoo", description="ssl-zoo: self-supervised encoders behind one API")
    parser.add_argument("--version", action="version", version=f"ssl-zoo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_list_parser(commands)
    add_info_parser(commands)
    add_embed_parser(commands)
    add_predict_parser(commands)
    add_probe_parser(commands)
    add_finetune_parser(commands)
    add_env_parser(commands)
    add_demo_parser(commands)
    add_convert_parser(commands)
    add_publish_parser(commands)
    add_pretrain_parsers(commands, recipe)
    return parser


#: errno values of a write that found no room (a full disk or /dev/full, a size or quota limit)
FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
#: what an interrupted command leaves for a rerun
RESUMABLE = {
    "embed": "; the shards written so far are kept: rerun the same command to continue",
    "predict": "; the shards of features written so far are kept: rerun the same command to continue",
    "probe": "; with --cache, the embeddings written so far are kept: rerun the same command to continue",
    "pretrain": "; a rerun of the same command continues from the last checkpoint, if one was written",
    "finetune": "; a rerun of the same command continues from the last checkpoint, if one was written",
}


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse's parse_args, except that inputs may also follow an option (`zoo embed NAME --threads 1 a.wav`):
    argparse takes the empty input list at the first option, and its parse_intermixed_args refuses subcommands."""
    argv = [home_expanded(token) for token in argv]
    ExactOptionsParser.given = argv
    args, extras = parser.parse_known_args(argv)
    takes_inputs = isinstance(getattr(args, "inputs", None), list)
    ended = extras.index("--") if takes_inputs and "--" in extras else len(extras)  # `--`: inputs only after it
    extras, after = extras[:ended], extras[ended + 1:]
    if extras and takes_inputs and not any(a.startswith("-") for a in extras):
        args.inputs = [*args.inputs, *extras]  # a new list: argparse's default one is shared between parses
    elif extras:
        refuse_extras(command_parser(parser, args), extras)
    if after:
        args.inputs = [*args.inputs, *after]
    return args


def home_expanded(token: str) -> str:
    """`--output=~/e.npy` with `~` expanded, as the shell expands `--output ~/e.npy` but leaves the
    joined form alone: `~` was a folder of that name made in the working folder."""
    option, joined, value = token.partition("=")
    if not (option.startswith("--") and joined and (value == "~" or value.startswith("~/"))):
        return token
    return f"{option}={os.path.expanduser(value)}"


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command given (`zoo pretrain hubert`'s for `zoo pretrain hubert ...`): its
    usage and options are the ones a refused argument should be read against, not zoo's."""
    for dest in ("command", "recipe"):
        subparsers = next((action for action in parser._actions if isinstance(action, argparse._SubParsersAction)),
                          None)
        if subparsers is None or getattr(args, dest, None) not in subparsers.choices:
            break
        parser = subparsers.choices[getattr(args, dest)]
    return parser


def refuse_extras(parser: argparse.ArgumentParser, extras: list[str]) -> NoReturn:
    """Exit 2 naming the arguments the command does not take, the command's option nearest to a
    misspelt one (`--layr`: --layer) and where its options are listed: argparse names none of them."""
    options = long_options(parser)
    hints = "".join(f" did you mean {near}?" for extra in extras if extra.startswith("-")
                    for near in [nearest_option(extra.split("=", 1)[0], options)] if near)
    parser.error(f"unrecognized arguments: {' '.join(extras)};{hints} `{parser.prog} -h` lists its options")


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    """A command's `--name` options, the ones a misspelt option is matched against."""
    return [option for option in parser._option_string_actions if option.startswith("--")]


def nearest_option(given: str, options: Sequence[str]) -> Optional[str]:
    """The option a refused `given` most likely meant: the one it begins, as `--out` begins
    `--output` (options are taken only in full), else the closest spelling."""
    longer = [option for option in options if option.startswith(given)]
    if len(longer) == 1:
        return longer[0]
    close = difflib.get_close_matches(given, options, n=1)
    return close[0] if close else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `zoo` command; returns the exit status: 2 for a zoo error (printed without a traceback),
    130 when interrupted, 128 + N when a signal N stopped a run (143: SIGTERM), 141 when stdout's reader
    stops early."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with registry.quiet_imports():  # a command may import a family's libraries outside the registry (pretrain)
        python_format = warnings.formatwarning  # which catch_warnings does not restore
        warnings.formatwarning = partial(format_warning, python_format)
        try:
            return run(argv)
        finally:
            warnings.formatwarning = python_format


def format_warning(python_format: Any, message: Warning, category: type[Warning], filename: str, lineno: int,
                   line: Optional[str] = None) -> str:
    """The zoo's own warnings as the command's messages (`zoo: warning: ...`), as its errors are:
    the source line Python would show is the `zoo` script's. Other libraries' warnings keep
    Python's format, which names the library."""
    if issubclass(category, ZooWarning):
        return f"zoo: warning: {message}\n"
    return python_format(message, category, filename, lineno, line)


def run(argv: list[str]) -> int:
    """`main` once its warnings are set up."""
    recipe = argv[1] if len(argv) > 1 and argv[0] == "pretrain" else None

    def command() -> None:
        args = parse(build_parser(recipe), argv)
        args.func(args)

    try:
        return exit_status("zoo", command, RESUMABLE.get(argv[0] if argv else "", ""))
    except BrokenPipeError:
        # the reader stopped early (`zoo list | head`): as other command-line tools, stop quietly;
        # stdout goes to /dev/null so that Python's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        if err.errno not in FULL:  # files the zoo writes fail as a WriteError: this is its standard output
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"zoo: error: could not write the output ({err.strerror}); free space where it goes, or send it "
              "elsewhere", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
