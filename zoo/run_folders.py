"""The files of a pretraining or fine-tuning run's folder beside its checkpoint: the settings it was
made with (`args.json`, which a rerun must match to resume it), the input files it listed when it
began (`inputs.json`, which a resumed run goes on over), its step log (`log.jsonl`), and the undoing
of what a refused new run wrote (`undone_if_refused`). `zoo.training` runs the steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from zoo.config import read_json
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.io import atomic_write_text, blocking_path, held, remove_stale_temporaries

CHECKPOINT_FILE = "checkpoint.pt"
ARGS_FILE = "args.json"
INPUTS_FILE = "inputs.json"
LOG_FILE = "log.jsonl"
PLOT_FILE = "loss.png"
# What a resumed run may change: where and how it runs (machine, threads, loader processes, files,
# progress, time slices), not what it trains. Moving a run from a GPU to a CPU changes device and bf16.
RUN_LOCAL_SETTINGS = frozenset({"device", "bf16", "progress", "no_progress", "threads", "time_limit",
                                "checkpoint_every", "output", "data", "table", "zoo_version",
                                "activation_checkpointing", "workers"})
#: what the zoo records of a run rather than what its command chose (a digest of the training data,
#: to refuse a resume on other data); a run an older zoo began, which did not record it, still resumes
RECORDED_SETTINGS = frozenset({"training_data"})
#: what precedes the hash in a recorded digest
DIGEST_MARK = "sha256 "


def changed_settings(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: saved -> current` for each setting that differs (nested dicts by dotted keys),
    leaving out RUN_LOCAL_SETTINGS."""
    changed = []
    for key in sorted((saved.keys() | current.keys()) - RUN_LOCAL_SETTINGS):
        if key in RECORDED_SETTINGS and key not in saved:  # an older zoo's run
            continue
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_settings(old, new, f"{prefix}{key}.")
        elif (digest_of(old) != digest_of(new)) if key in RECORDED_SETTINGS else old != new:
            changed.append(f"{prefix}{key}: {old!r} then, {new!r} now")
    return changed


def data_record(count: int, unit: str, digest: Any) -> str:
    """A run's `training_data` record: its data described and hashed ("140 training nodes, sha256
    3e65ed89..."; `digest` a hashlib object), in the one form `digest_of` reads back."""
    return f"{count} {unit}, {DIGEST_MARK}{digest.hexdigest()[:16]}"


def digest_of(recorded: Any) -> Any:
    """The hash in a recorded data digest ("140 training nodes, sha256 3e65ed89..."): the words
    before it describe the data and may be worded anew (a node dataset's count said "1 training
    nodes" once), which must not refuse the run the same data resumes."""
    return recorded.rpartition(DIGEST_MARK)[2] if isinstance(recorded, str) and DIGEST_MARK in recorded else recorded


def check_same_run(saved: dict[str, Any], current: dict[str, Any], where: Path | str) -> None:
    """Refuse to resume the run saved in `where` with other settings: its steps would go on under
    another schedule, batches or objective, and its files would no longer say how it was made."""
    changed = changed_settings(saved, current)
    unrecorded = sorted(key for key in current.keys() - saved.keys() - RUN_LOCAL_SETTINGS - RECORDED_SETTINGS
                        if current[key] is not None)  # settings the run's older zoo did not have
    advice = (f"an older zoo began it, whose recipe had no {', '.join(unrecorded)}, so no option resumes it: use "
              "another output folder for a new run" if unrecorded else
              "rerun with its settings (args.json), or use another output folder for a new run")
    if changed:
        raise CheckpointError(f"cannot resume {where}: its run had other settings ({'; '.join(changed)}); a rerun "
                              f"only resumes the same run: {advice}")


def command_settings(args: argparse.Namespace) -> dict[str, Any]:
    """A command's arguments as run settings, without the subcommand's handler (`func`)."""
    return {key: value for key, value in vars(args).items() if not callable(value)}


def check_run_folder(out: Path) -> None:
    """Refuse an output path taken by a file, or one where nothing can be written (a read-only
    place, under a file), naming the fix, before the run loads a model or data: neither is
    created here, so a run refused later leaves no folder behind."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the output {str(out)!r} is a file; a run writes a folder (checkpoint.pt, log.jsonl, "
                          "...): pass a new folder path")
    blocked = blocking_path(out)
    if blocked is not None and not blocked.is_dir():
        raise ConfigError(f"cannot make the run folder {str(out)!r}: {str(blocked)!r} is a file")
    if blocked is not None:
        raise ConfigError(f"cannot write the run folder {str(out)!r}: {str(blocked)!r} is not writable here; "
                          "pass an output folder you can write to")


def make_run_folder(out: Path) -> None:
    """Create the run folder (and its parents), refusing a file of that name first."""
    check_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)


#: the file a `zoo pretrain` or `zoo finetune` run holds its folder with
RUN_LOCK_FILE = ".run.lock"


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold the run folder `out` for this run alone: two runs started on one folder (a requeued job
    beside the old one still stopping, a second terminal) both trained, each replacing the other's
    log and checkpoint, and one could fail on the log the other had emptied. Once it is held, the
    temporaries that a killed write left there are removed (`remove_stale_temporaries`): a
    checkpoint-sized `.checkpoint.pt.*.tmp` outlived every rerun; only the run holding `out`
    writes there."""
    make_run_folder(out)
    with held(out / RUN_LOCK_FILE, f"another run is training in {str(out)!r} now; wait for it to finish, or pass "
                                   "another output folder"):
        remove_stale_temporaries(out)
        yield


def write_run_settings(out: Path, settings: dict[str, Any]) -> None:
    """Write a `zoo pretrain` run's settings to `out/args.json`; when the folder holds a checkpoint
    (a resumed run), first check that they are the ones it was made with."""
    make_run_folder(out)
    settings = json.loads(json.dumps(settings))
    path = out / ARGS_FILE
    if (out / CHECKPOINT_FILE).is_file() and path.is_file():
        check_same_run(read_json(path), settings, out)
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def run_input_files(out: Path, listings: Sequence[tuple[Path, Sequence[Path]]],
                    earlier: Optional[Callable[[], Optional[list[Path]]]] = None) -> list[Path]:
    """The input files of the run in `out`, given each data folder's listing now: `(folder, files)`.

    A fresh run (no checkpoint yet) takes the listings and records them in `out/inputs.json`,
    each folder's files in order and relative to it. A resumed run takes the recorded files,
    under the folders given now (the data may have moved), so that it goes on over the files
    it began with: files added since, or listed now because this machine decodes more endings
    (libsndfile with MP3, a newer Pillow), would change its batches or refuse its labels. A run
    an older zoo began has no record: it takes `earlier()` (the files its labels.pt names),
    else the listings.
    """
    listed = [file for _, files in listings for file in files]
    if not (out / CHECKPOINT_FILE).is_file():
        check_run_folder(out)
        record = {"folders": [{"folder": str(folder), "files": [file.relative_to(folder).as_posix() for file in files]}
                              for folder, files in listings]}
        atomic_write_text(out / INPUTS_FILE, json.dumps(record, indent=1) + "\n")
        return listed
    recorded = recorded_input_files(out, [folder for folder, _ in listings])
    if recorded is None and earlier is not None:
        recorded = earlier()
    if recorded is None:
        return listed
    check_recorded_files_exist(recorded, out)
    warn_of_unrecorded_files(recorded, listed, out)
    return recorded


@contextmanager
def undone_if_refused(out: Path) -> Iterator[None]:
    """Setting up a new run in `out`: if the block raises before the run's log holds a step (a
    refusal, or a first batch that fails), the files and folders it made in `out` (inputs.json,
    labels, args.json, the empty log; `out` itself and the parents it needed) are removed, so
    that nothing is left half written.

    A run records its input files (`run_input_files`) before its data, batch settings or model
    are all checked, since those checks need the files; a refusal after that left inputs.json
    in a folder where nothing had trained. A folder that already holds a run (its log) is left
    alone: a resumed run's refusal changes nothing in it.
    """
    created = outermost_missing(out)
    before = set(out.iterdir()) if created is None and out.is_dir() else set()
    holds_run = (out / LOG_FILE).exists() or (out / CHECKPOINT_FILE).exists()
    try:
        yield
    except Exception:
        log = out / LOG_FILE
        if not holds_run and not (log.is_file() and log.stat().st_size):
            remove_new_entries(out, created, before)
        raise


def outermost_missing(path: Path) -> Optional[Path]:
    """The outermost folder of `path` (or `path` itself) that does not exist yet; None if it exists."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return missing
        missing = candidate
    return missing


def remove_new_entries(out: Path, created: Optional[Path], before: set[Path]) -> None:
    """Remove `out` and the parents up to `created` when the refused run made them (a parent only
    while empty: another run may have begun beside it), else the entries of `out` not in `before`."""
    if created is not None:
        shutil.rmtree(out, ignore_errors=True)
        for parent in out.parents:
            if not parent.is_relative_to(created):
                break
            try:
                parent.rmdir()
            except OSError:
                break
        return
    if not out.is_dir():
        return
    for entry in set(out.iterdir()) - before:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def recorded_input_files(out: Path, folders: Sequence[Path]) -> Optional[list[Path]]:
    """The files `out/inputs.json` records, under `folders` (the --data folders given now); None
    without a record."""
    path = out / INPUTS_FILE
    if not path.is_file():
        return None
    record = read_json(path)["folders"]
    if len(record) != len(folders):
        began = ", ".join(repr(entry["folder"]) for entry in record)
        raise ConfigError(f"the run in {str(out)!r} began on {len(record)} data folders ({began}) and this rerun "
                          f"gives {len(folders)}; pass the same folders (--data), in the same order, to resume it")
    return [Path(folder) / name for folder, entry in zip(folders, record) for name in entry["files"]]


def check_recorded_files_exist(recorded: Sequence[Path], out: Path) -> None:
    """Refuse to resume without every file the run began with: its batches draw on each of them."""
    missing = [file for file in recorded if not file.is_file()]
    if missing:
        raise InputError(
            f"{str(missing[0])!r}, one of the {len(recorded)} files the run in {str(out)!r} began with, no longer "
            f"exists ({len(missing)} missing); put the files back (or pass --data where they are now) to resume "
            "the run, or start a new run in another output folder"
        )


def warn_of_unrecorded_files(recorded: Sequence[Path], listed: Sequence[Path], out: Path) -> None:
    """Say in one line that files the data folders hold now but the run did not begin with are
    left out, and how to train on them."""
    known = set(recorded)
    new = [file for file in listed if file not in known]
    if new:
        files = "file" if len(new) == 1 else "files"
        print(f"{len(new)} {files} in --data not among the {len(recorded)} that the run in {str(out)!r} began with "
              f"(e.g. {str(new[0])!r}): the resumed run keeps its original files; to train on the new ones too, "
              "start a new run in another output folder (-o)", file=sys.stderr, flush=True)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a `log.jsonl`; a half-written last line (a crash mid-write) is dropped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def loss_curve(out: Path) -> dict[str, Path]:
    """The run's loss curve as `save_pretrained`'s extra files (none where the run drew none)."""
    return {PLOT_FILE: out / PLOT_FILE} if (out / PLOT_FILE).is_file() else {}
