"""The benchmark scripts run, at their smallest settings: they use the zoo's internals and are
not imported by anything else, so a refactor broke `bench_tjepa.py embed` and `pretrain` for days
unseen (it passed a recipe name where the recipe entry is taken since 3691508). Speed is
measured by running them in full (benchmarks/README.md), never here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ADULT = BENCHMARKS.parents[1] / "shared" / "data" / "adult" / "adult.data"
FSDD = BENCHMARKS.parents[1] / "shared" / "data" / "fsdd" / "recordings"

QUICK = [
    pytest.param(["bench_tjepa.py", "embed", "--rows", "2000", "--chunk-rows", "1000"], id="tjepa-embed"),
    pytest.param(["bench_tjepa.py", "pretrain", "--steps", "1", "--warmup", "0"], id="tjepa-pretrain"),
    pytest.param(["bench_gmml.py", "--sizes", "tiny", "--cases", "b1", "--repeats", "1"], id="gmml"),
    pytest.param(["bench_hubert_embed.py", "--variant", "tiny", "--cases", "1s", "--repeats", "1"], id="hubert"),
    pytest.param(["bench_graphmae.py", "inference", "--graph", "random", "--sizes", "2000", "--full-sizes", "2000"],
                 id="graphmae"),
    pytest.param(["bench_scale.py", "--cases", "table", "--rows", "200"], id="scale"),
    pytest.param(["bench_pretrain_memory.py", "--files", "4", "--minutes", "0.1", "--steps", "2", "--batch-size", "2"],
                 id="pretrain-memory"),
    pytest.param(["bench_long_windows.py", "--minutes", "0.6", "--files", "2", "--rate", "22050"], id="long-windows"),
    pytest.param(["bench_mert.py", "--cases", "5s", "--repeats", "1"], id="mert", marks=pytest.mark.slow),
    pytest.param(["bench_checkpointing.py", "--cases", "vit-small", "--repeats", "1"], id="checkpointing",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("command", QUICK)
def test_a_benchmark_runs_and_reports(command):
    if command[0] in ("bench_tjepa.py", "bench_scale.py") and not ADULT.is_file():
        pytest.skip(f"{command[0]} reads UCI Adult from {ADULT}, absent here (../shared is not beside the repo)")
    if command[0] in ("bench_pretrain_memory.py", "bench_long_windows.py") and not FSDD.is_dir():
        pytest.skip(f"{command[0]} makes its recordings from {FSDD}, absent here (../shared is not beside the repo)")
    done = subprocess.run([sys.executable, str(BENCHMARKS / command[0]), *command[1:]], capture_output=True,
                          text=True, cwd=BENCHMARKS.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["machine"]["cores"] >= 1
    assert result.get("results") or result.get("rows"), result


def test_a_run_is_shown_then_saved_where_its_json_folder_is_new(tmp_path, capsys, monkeypatch):
    """The README's commands save to runs/NAME.json: where runs/ did not exist the run's minutes
    ended in a FileNotFoundError before its table was printed."""
    import argparse

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import serve

    args = argparse.Namespace(worker=None, json=tmp_path / "runs" / "x.json", markdown=True)
    serve(args, worker=None, markdown=lambda summary: f"| rows | {summary['rows']} |", run=lambda: {"rows": 3})
    assert capsys.readouterr().out == "| rows | 3 |\n"
    assert json.loads(args.json.read_text()) == {"rows": 3}


PLANETOID = BENCHMARKS.parents[1] / "shared" / "data" / "planetoid"


@pytest.mark.parametrize("name, row", [("graphmae-cora", "**graphmae-cora** (pretraining seed 0)"),
                                       ("paretognn-cora", "**paretognn-cora** (pretraining seed 0)")])
def test_a_graph_cards_table_is_what_its_command_prints(name, row):
    """The cards' command took only `zoo pretrain` run folders, so no command gave their tables from
    the shipped checkpoint (and without --run it raised StopIteration)."""
    if not PLANETOID.is_dir():
        pytest.skip(f"probe_graphs_cora.py reads Cora from {PLANETOID}, absent here (../shared is not beside the repo)")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "probe_graphs_cora.py"), "--data", str(PLANETOID),
                           "--run", name], capture_output=True, text=True, cwd=BENCHMARKS.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = {cells[0]: cells[-2:] for cells in table_rows(done.stdout)}
    card_text = (BENCHMARKS.parent / "model_cards" / f"{name}.md").read_text()
    card = {cells[0]: cells[-2:] for cells in table_rows(card_text)}
    family = name.split("-")[0]
    assert printed[name] == [cell.strip("*") for cell in card[row]]
    assert printed[f"{family} random init"] == card["the same encoder, random init"]
    assert printed["raw features (row-normalised)"] == card["raw features (row-normalised)"]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each Markdown table row in `text` (not its header rule)."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
