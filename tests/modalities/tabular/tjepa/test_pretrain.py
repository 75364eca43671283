"""T-JEPA pretraining: masks, the objective, EMA, the CLI run and its exact resume."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ctrl_c_at_step

from modalities.tabular.processing import TableProcessor
from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
from modalities.tabular.tjepa.masking import MaskSampler, draw_between
from modalities.tabular.tjepa.objective import TJEPAPretraining
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.hub import load_folder

PREDICTOR = dict(width=8, depth=1, heads=2, feedforward=16, dropout=0.0)
TINY_SETTINGS = ["--set", "hidden_dim=16", "--set", "num_layers=1", "--set", "dim_feedforward=16",
                 "--set", "batch_size=64", "--set", 'predictor={"width": 8, "depth": 1, "heads": 2, '
                 '"feedforward": 16, "dropout": 0.0}']


def synthetic_table(rows: int = 256, seed: int = 0) -> pd.DataFrame:
    """Columns that depend on one another, so that one subset predicts another."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=rows)
    return pd.DataFrame({
        "a": base, "b": 2 * base + 0.1 * rng.normal(size=rows), "c": rng.normal(size=rows),
        "d": np.where(base > 0, "up", "down"), "e": rng.choice(["x", "y", "z"], size=rows),
        "f": base ** 2,
    })


def test_masks_are_disjoint_and_sized_by_the_shares():
    sampler = MaskSampler(14, 0.136, 0.368, 0.156, 0.622, num_preds=4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        masks = sampler(32, generator)
        n_context, n_target = masks.context.shape[1], masks.targets.shape[2]
        assert sampler.min_context <= n_context <= sampler.max_context
        assert sampler.min_target <= n_target <= sampler.max_target and n_context + n_target <= 14
        assert masks.targets.shape[:2] == (4, 32)
        for row in range(32):
            context = set(masks.context[row].tolist())
            assert len(context) == n_context
            for subset in masks.targets[:, row]:
                assert len(set(subset.tolist())) == n_target and not context & set(subset.tolist())


def test_each_prediction_draws_its_own_target_subset():
    """The num_preds=4 targets of a row are drawn apart, as upstream: one draw shared by all four
    would predict the same features four times. Over 32 rows of 14 features, some row's four
    subsets must differ (all equal by chance: far below 1e-6)."""
    masks = MaskSampler(14, 0.136, 0.368, 0.156, 0.622, num_preds=4)(32, torch.Generator().manual_seed(0))
    assert any(len({tuple(sorted(subset.tolist())) for subset in masks.targets[:, row]}) > 1 for row in range(32))


def test_mask_sizes_are_rounded_so_the_largest_share_is_drawn():
    """draw_between(0, 2) is 0 + round(2u): 0, 1 and 2 with odds 1/4, 1/2, 1/4 (truncating would never
    draw the largest context or target). 2000 draws: each share within 0.05 of its odds."""
    generator = torch.Generator().manual_seed(0)
    draws = [draw_between(0, 2, generator) for _ in range(2000)]
    shares = [draws.count(value) / len(draws) for value in (0, 1, 2)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.05)


def test_mask_shares_that_cannot_fit_are_refused_at_once_with_flags_that_fit():
    """A small table met one refusal after another (context, then target), and a table of one
    feature was told to raise a share it could never satisfy."""
    with pytest.raises(ConfigError, match="has 1 feature\\(s\\); pretrain on a table of at least 2"):
        MaskSampler(1, 0.2, 0.5, 0.2, 0.5)
    with pytest.raises(ConfigError, match="context of 0-1 and targets of 0-1 of the table's 2 features: the context "
                                          "needs at least one feature; each target needs at least one feature; for 2 "
                                          "features, e.g. --set min_context_share=0.5 --set min_target_share=0.5$"):
        MaskSampler(2, 0.136, 0.368, 0.156, 0.622)  # tjepa-adult's shares
    with pytest.raises(ConfigError, match="above the largest; .* e.g. --set min_context_share=0.667 --set "
                                          "max_context_share=0.667 --set min_target_share=0.333$"):
        MaskSampler(3, 0.9, 0.368, 0.156, 0.622)
    with pytest.raises(ConfigError, match="\\(3 \\+ 3\\) do not fit in 4; .* --set min_context_share=0.5 --set "
                                          "min_target_share=0.5$"):
        MaskSampler(4, 0.7, 0.9, 0.7, 0.9)
    for features in range(2, 40):  # the flags suggested draw masks
        try:
            MaskSampler(features, 0.01, 0.05, 0.9, 0.95)
        except ConfigError as err:
            shares = dict(flag.split("=") for flag in str(err).split("e.g. ")[1].replace("--set ", "").split())
            kept = {"min_context_share": 0.01, "max_context_share": 0.05, "min_target_share": 0.9,
                    "max_target_share": 0.95}
            sampler = MaskSampler(features, **{**kept, **{key: float(value) for key, value in shares.items()}})
            masks = sampler(4, torch.Generator().manual_seed(0))
            assert masks.context.shape[1] >= 1 and masks.targets.shape[2] >= 1


def make_objective(scope="features", steps=100):
    torch.manual_seed(0)
    table = synthetic_table()
    processor = TableProcessor.fit(table)
    encoder = TJEPAEncoder(TJEPAConfig.for_table(processor, hidden_dim=16, num_layers=1, dim_feedforward=16,
                                                 num_reg_tokens=1), processor)
    masks = MaskSampler(6, 0.2, 0.5, 0.2, 0.5, num_preds=2)
    return TJEPAPretraining(encoder, masks, PREDICTOR, total_steps=steps, mask_scope=scope), processor(table)


@pytest.mark.parametrize("scope", ["features", "official"])
def test_the_loss_falls_and_only_the_context_side_is_trained(scope):
    objective, batch = make_objective(scope)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(60):
        loss = objective(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert all(p.grad is None for p in objective.target_encoder.parameters())


def test_ema_moves_the_target_towards_the_context_encoder():
    objective, _ = make_objective(steps=4)
    with torch.no_grad():
        for p in objective.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in objective.target_encoder.parameters()]
    objective.after_step()
    online = list(objective.encoder.parameters())
    for old, new, context in zip(before, objective.target_encoder.parameters(), online):
        assert torch.allclose(new, 0.996 * old + 0.004 * context)
    assert objective.momentum(4) == pytest.approx(1.0)


def run_cli(table_path, out, epochs, *extra):
    return main(["pretrain", "tjepa", "--table", str(table_path), "-o", str(out), "--epochs", str(epochs),
                 "--no-progress", "--checkpoint-every", "2", *TINY_SETTINGS, *extra])


def test_cli_run_resumes_exactly(tmp_path, monkeypatch):
    table_path = tmp_path / "table.csv"
    synthetic_table(200).to_csv(table_path, index=False)
    assert run_cli(table_path, tmp_path / "straight", 2) == 0
    straight = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert len(straight) == 8 and straight[-1]["loss"] < straight[0]["loss"]
    with ctrl_c_at_step(monkeypatch, 5):
        assert run_cli(table_path, tmp_path / "split", 2) == 130  # Ctrl-C: the CLI's exit status for SIGINT
    assert run_cli(table_path, tmp_path / "split", 2) == 0  # resumes at step 4, mid-epoch
    split = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in split] == [r["loss"] for r in straight]
    assert run_cli(table_path, tmp_path / "sliced", 2, "--time-limit", "0") == 0  # one step, then a checkpoint
    assert len((tmp_path / "sliced" / "log.jsonl").read_text().splitlines()) == 1
    assert run_cli(table_path, tmp_path / "sliced", 2) == 0
    sliced = [json.loads(line) for line in (tmp_path / "sliced" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in sliced] == [r["loss"] for r in straight]
    encoder = load_folder(tmp_path / "split" / "encoder")
    assert encoder.config.standardize_output  # the saved encoder's tokens are scaled over the training rows
    tokens = encoder.embed(synthetic_table(200), pool="none", progress=False)
    assert tokens.mean(dim=0).abs().max() < 1e-3 and (tokens.std(dim=0) - 1).abs().max() < 1e-3


def test_cli_leaves_out_ignored_columns_and_reads_codes_as_categories(tmp_path, capsys):
    """`--ignore` keeps an id out of the features (and lets it pass at embed time), `--categorical`
    makes integer codes categories."""
    table = synthetic_table(64).assign(row_id=range(64), code=np.arange(64) % 3)
    table.to_csv(tmp_path / "table.csv", index=False)
    assert run_cli(tmp_path / "table.csv", tmp_path / "run", 1, "--ignore", "row_id", "--categorical", "code") == 0
    encoder = load_folder(tmp_path / "run" / "encoder")
    kinds = {column["name"]: column["kind"] for column in encoder.processor.columns}
    assert "row_id" not in kinds and kinds["code"] == "categorical" and encoder.processor.ignored == ["row_id"]
    assert encoder.embed(table, progress=False).shape == (64, encoder.embed_dim)
    assert main(["pretrain", "tjepa", "--dataset", "adult", "-o", str(tmp_path / "x"), "--ignore", "age"]) == 2
    assert main(["pretrain", "tjepa", "--table", str(tmp_path / "table.csv"), "-o", str(tmp_path / "none"),
                 "--target", "label", "--set", "epochs=0"]) == 2  # was "steps=0"
    assert "epochs=0; train for at least one epoch" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # refused as the command line is read
        run_cli(tmp_path / "table.csv", tmp_path / "none", 0)
    assert "argument --epochs: 0 is not a positive number" in capsys.readouterr().err


def test_mask_scopes_map_features_to_token_positions():
    objective, _ = make_objective("features")
    context, targets = torch.tensor([[0, 3]]), torch.tensor([[[5]], [[1]]])
    tokens, wanted = objective.token_positions(context, targets)
    # one regularization token: it leads every context, and feature j is token j + 1
    assert tokens.tolist() == [[0, 1, 4]] and wanted.tolist() == [[[6]], [[2]]]
    official, _ = make_objective("official")
    tokens, wanted = official.token_positions(context, targets)
    assert tokens.tolist() == [[0, 3]] and wanted.tolist() == [[[5]], [[1]]]


def test_a_rerun_on_other_rows_is_refused(tmp_path, capsys):
    """The table's rows were no run setting: a rerun on the same rows shuffled (or a column doubled)
    went on from the checkpoint without a word. A moved copy of the same file still resumes."""
    synthetic_table(200).to_csv(tmp_path / "table.csv", index=False)
    assert run_cli(tmp_path / "table.csv", tmp_path / "run", 2, "--time-limit", "0") == 0
    synthetic_table(200).sample(frac=1, random_state=0).to_csv(tmp_path / "shuffled.csv", index=False)
    capsys.readouterr()
    assert run_cli(tmp_path / "shuffled.csv", tmp_path / "run", 2) == 2
    assert "training_data: '200 rows, sha256 " in capsys.readouterr().err
    (tmp_path / "moved").mkdir()
    (tmp_path / "table.csv").rename(tmp_path / "moved" / "table.csv")
    assert run_cli(tmp_path / "moved" / "table.csv", tmp_path / "run", 2) == 0


@pytest.mark.parametrize("settings, message", [
    (["--set", "dropout=2"], "dropout=2; use a probability in \\[0, 1\\)"),  # torch's ValueError
    (["--set", "hidden_dim=0"], "'hidden_dim': 0.*each must be at least 1"),  # ZeroDivisionError
    (["--set", "num_layers=0"], "'num_layers': 0.*each must be at least 1"),  # trained an encoder of no layers
    (["--set", "ema_start=1.5"], "ema_start=1.5; the target encoder's EMA momentum is in \\[0, 1\\]"),  # diverged
    (["--set", "warmup_epochs=-1"], "warmup_epochs=-1; warm up for 0 or more epochs"),  # said --set warmup_steps
    (["--set", 'predictor={"width": 0}'], "predictor \\{'width': 0, .*each must be at least 1"),  # TypeError
    (["--set", 'predictor={"size": 4}'], "--set predictor names unknown settings \\['size'\\]"),
    (["--set", 'probe={"epochs": 1}'], "--set probe=...: 'probe' records what the recipe was made for"),  # ignored
])
def test_settings_that_cannot_train_are_refused_before_a_file_is_written(tmp_path, capsys, settings, message):
    synthetic_table(64).to_csv(tmp_path / "table.csv", index=False)
    assert run_cli(tmp_path / "table.csv", tmp_path / "run", 1, *settings) == 2
    assert re.search(message, capsys.readouterr().err) and not (tmp_path / "run").exists()


def test_a_table_of_one_row_or_one_row_repeated_or_a_target_with_a_named_set_is_refused(tmp_path, capsys):
    """One row trained a step, then failed on the output scale and left a run folder without an
    encoder; one row repeated trained, and its encoder scaled every other row by about 1e12;
    --target with --dataset was ignored (adult's own target was left out)."""
    synthetic_table(1).to_csv(tmp_path / "one.csv", index=False)
    assert run_cli(tmp_path / "one.csv", tmp_path / "run", 1) == 2
    assert "one.csv' has 1 row(s) and 1 different in the encoder's features; pretraining needs at least 2 rows that" \
        in capsys.readouterr().err
    repeated = pd.concat([synthetic_table(1)] * 40).assign(label=np.arange(40) % 2)  # the target may differ
    repeated.to_csv(tmp_path / "same.csv", index=False)
    assert run_cli(tmp_path / "same.csv", tmp_path / "run", 1, "--target", "label") == 2
    assert "same.csv' has 40 row(s) and 1 different in the encoder's features" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["pretrain", "tjepa", "--dataset", "adult", "--target", "age", "-o", str(tmp_path / "x")]) == 2
    assert "--target, --ignore and --categorical go with --table" in capsys.readouterr().err
