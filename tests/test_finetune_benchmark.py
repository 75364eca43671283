"""`zoo finetune` and benchmarks/finetune_heads.py end to end on a folder of tone recordings with
a micro HuBERT: they train, save a classifier that loads back, resume an interrupted run
exactly and refuse to resume one with other settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_tones

from zoo.errors import CheckpointError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def finetune(tmp_path, monkeypatch, micro_hubert):
    """The script's main with the data and checkpoint arguments filled in."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from finetune_heads import main

    micro_hubert.save_pretrained(tmp_path / "encoder")
    write_tones(tmp_path / "tones")
    common = ["--checkpoint", str(tmp_path / "encoder"), "--data", str(tmp_path / "tones"),
              "--label-regex", r"^(\w+)_", "--test-regex", r"_[0-3]\.wav$", "--batch-size", "4", "--no-progress"]

    def run(*args: str) -> dict:
        main([*common, *args])
        return json.loads(Path(args[args.index("--json") + 1]).read_text()) if "--json" in args else {}

    return run


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_fine_tuning_trains_saves_and_scores(finetune, tmp_path):
    import zoo

    report = finetune("--mode", "full", "--epochs", "3", "--lr", "1e-3", "--output", str(tmp_path / "full"),
                      "--json", str(tmp_path / "full.json"))
    assert (report["train_items"], report["test_items"], report["classes"], report["steps"]) == (16, 8, 2, 12)
    assert report["trained_parameters"] > 10_000  # the encoder too, not the head alone
    assert report["loss_last_epoch"] < report["loss_first_epoch"], report
    assert 0.0 <= report["test_accuracy"] <= 1.0
    classifier = zoo.load(tmp_path / "full" / "classifier")
    assert classifier.labels == ["high", "low"]

    frozen = finetune("--mode", "weighted", "--epochs", "1", "--train-limit", "8",
                      "--output", str(tmp_path / "weighted"), "--json", str(tmp_path / "weighted.json"))
    assert frozen["trained_parameters"] == 2 * 32 + 2 + 3  # head weights and bias, one weight per layer
    assert (frozen["train_items"], frozen["test_items"]) == (8, 8)  # 4 a class; the test split whole
    layer_one = finetune("--mode", "linear", "--layer", "1", "--epochs", "1", "--output", str(tmp_path / "layer1"),
                         "--json", str(tmp_path / "layer1.json"))
    assert layer_one["layer"] == 1 and zoo.load(tmp_path / "layer1" / "classifier").layer == 1


def test_an_interrupted_run_resumes_exactly_and_only_with_its_settings(finetune, tmp_path):
    finetune("--mode", "full", "--epochs", "2", "--output", str(tmp_path / "whole"))
    for _ in range(8):  # a time limit of 0 stops each call after one step, checkpointed
        finetune("--mode", "full", "--epochs", "2", "--output", str(tmp_path / "steps"), "--time-limit", "0")
    whole, steps = read_log(tmp_path / "whole"), read_log(tmp_path / "steps")
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(whole, steps)) == 0.0  # same batches, same steps
    with pytest.raises(CheckpointError, match="mode: 'full' then, 'linear' now"):
        finetune("--mode", "linear", "--epochs", "2", "--output", str(tmp_path / "steps"))


def test_a_run_resumes_from_moved_data_but_not_on_other_data(finetune, tmp_path):
    """Was resumed on any --data: a rerun on other files trained on both sets in one run, and on a
    finished run rewrote its card to name data the weights never saw."""
    import shutil

    from helpers import write_tones

    run = ["--mode", "full", "--epochs", "2", "--output", str(tmp_path / "run")]
    finetune(*run, "--time-limit", "0")
    shutil.move(tmp_path / "tones", tmp_path / "moved")
    finetune(*run, "--time-limit", "0", "--data", str(tmp_path / "moved"))
    finetune(*run, "--time-limit", "0", "--data", str(tmp_path / "moved"), "--lr", "1e-4")  # the default, named
    assert [record["step"] for record in read_log(tmp_path / "run")] == [1, 2, 3]
    write_tones(tmp_path / "other", count=20)
    with pytest.raises(CheckpointError, match=r"training_data: '16 training items, sha256 \w+' then, '12 training "
                                              r"items, sha256 \w+' now"):
        finetune(*run, "--data", str(tmp_path / "other"))
    (tmp_path / "moved" / "low_7.wav").write_bytes((tmp_path / "moved" / "low_6.wav").read_bytes())
    with pytest.raises(CheckpointError, match="training_data: '16 training items"):  # a file of another size
        finetune(*run, "--data", str(tmp_path / "moved"))


def test_zoo_finetune_trains_the_saved_classifier_it_reports(tmp_path, micro_hubert, capsys):
    """The command line's run is the benchmark's: the same report, printed."""
    from huggingface_hub import ModelCard

    import zoo
    from zoo.cli import main

    micro_hubert.save_pretrained(tmp_path / "encoder")
    base_card = ModelCard.load(tmp_path / "encoder" / "README.md")
    base_card.data.license = "cc-by-sa-4.0"
    base_card.save(tmp_path / "encoder" / "README.md")
    write_tones(tmp_path / "tones")
    common = [str(tmp_path / "encoder"), "--data", str(tmp_path / "tones"), "--label-regex", r"^(\w+)_",
              "--test-regex", r"_[0-3]\.wav$", "--batch-size", "4", "--epochs", "2", "--no-progress"]
    assert main(["finetune", *common, "-o", str(tmp_path / "run"), "--freeze-feature-encoder",
                 "--activation-checkpointing"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["steps"], report["classes"], report["freeze_feature_encoder"]) == (8, 2, True)
    classifier = zoo.load(tmp_path / "run" / "classifier")
    assert classifier.labels == ["high", "low"] and report["checkpoint"] == str(tmp_path / "encoder")
    card = (tmp_path / "run" / "classifier" / "README.md").read_text()
    assert "## Fine-tuning\n\nFine-tuned from `encoder` with `zoo finetune --mode full`" in card
    assert "| data | `tones` |" in card and str(tmp_path) not in card  # local paths were published
    assert (f"Test accuracy: {100 * report['test_accuracy']:.1f} % on 8 held-out items; trained on 16 items of 2 "
            "classes.") in card
    assert "A classification head over 2 labels (high, low)" in card and "| freeze_feature_encoder | `true` |" in card
    assert "loss.png" in zoo.publish(tmp_path / "run", "me/tones", dry_run=True)
    (result,) = ModelCard(card).data.eval_results  # the Hub's evaluation results
    assert ModelCard(card).data.license == "cc-by-sa-4.0"  # the base's: its weights carry its terms
    assert (result.task_type, result.dataset_name, result.dataset_split) == ("audio-classification", "tones", "test")
    assert (result.metric_type, result.metric_value) == ("accuracy", report["test_accuracy"])
    fixed = sum(p.numel() for p in micro_hubert.model.feature_extractor.parameters())
    fixed += micro_hubert.model.masked_spec_embed.numel()  # pretraining's, never reached by the loss
    assert report["trained_parameters"] == sum(p.numel() for p in classifier.parameters()) - fixed
    assert main(["finetune", *common, "-o", str(tmp_path / "bad"), "--mode", "weighted", "--layer", "1"]) == 2
    assert "--layer 1 is for --mode linear or full" in capsys.readouterr().err
    assert main(["finetune", *common, "-o", str(tmp_path / "cls"), "--pool", "cls"]) == 2
    assert "pool='cls'" in capsys.readouterr().err  # HuBERT has no cls token
    assert main(["finetune", *common, "-o", str(tmp_path / "lin"), "--mode", "linear", "--freeze-feature-encoder"]) == 2
    assert "--freeze-feature-encoder is for --mode full" in capsys.readouterr().err  # was accepted, a no-op
    assert main(["finetune", *common, "-o", str(tmp_path / "none"), "--epochs", "0"]) == 2
    assert "--epochs 0; train for at least one epoch" in capsys.readouterr().err
    (tmp_path / "taken").write_text("notes")
    assert main(["finetune", *common, "-o", str(tmp_path / "taken")]) == 2
    assert "taken' is a file; a run writes a folder" in capsys.readouterr().err
    assert main(["finetune", *common, "-o", str(tmp_path / "big"), "--batch-size", "64"]) == 2
    assert "--batch-size 64 is more than the 16 training items" in capsys.readouterr().err
    default_batch = [item for item in common if item not in ("--batch-size", "4")]  # 32 was refused the same way
    assert main(["finetune", *default_batch, "-o", str(tmp_path / "small"), "--mode", "linear", "--epochs", "1"]) == 0
    assert (json.loads(capsys.readouterr().out)["batch_size"], json.loads((tmp_path / "small" / "args.json")
                                                                          .read_text())["batch_size"]) == (16, 16)
    if not torch.backends.mps.is_available():  # a device this machine lacks is refused before training
        assert main(["finetune", *common, "-o", str(tmp_path / "mps"), "--device", "mps"]) == 2
        assert "device='mps'" in capsys.readouterr().err
        assert not (tmp_path / "mps").exists()  # was mps/args.json


def test_notes_folder_lays_out_the_probes_split(tmp_path, monkeypatch):
    """benchmarks/notes_folder.py: the rendered notes as train/test label folders, split as the probes split them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from notes_folder import main
    from probe_beats import note_splits

    notes = tmp_path / "notes"
    notes.mkdir()
    families = ["piano", "organ"] * 10
    lines = ["file,program,family,pitch,pitch_class,velocity"]
    for index, family in enumerate(families):
        (notes / f"n{index}.flac").write_bytes(b"")
        lines.append(f"n{index}.flac,0,{family},{60 + index},{index % 12},100")
    (notes / "notes.csv").write_text("\n".join(lines) + "\n")
    assert main(["--notes", str(notes), "--label", "pitch_class", "-o", str(tmp_path / "out")]) == 0
    test_mask = note_splits(np.array(families), 0)["test"]
    linked = {path.name: path for path in (tmp_path / "out").rglob("*.flac")}
    assert len(linked) == 20
    for index in range(20):
        path = linked[f"n{index}.flac"]
        assert path.parent.name == str(index % 12) and (path.parent.parent.name == "test") == test_mask[index]
        assert path.resolve() == (notes / f"n{index}.flac").resolve()


def test_cora_node_classification_scores_what_the_saved_head_predicts(tmp_path, monkeypatch):
    """benchmarks/finetune_cora.py on Cora: each mode's first seed is saved, reloaded and scored
    again (the same test accuracy), a rerun skips the finished runs, and one with another
    epoch count is refused."""
    from helpers import shared_path

    data = shared_path("data", "planetoid")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import finetune_cora

    args = ["--data", str(data), "--epochs", "3", "--seeds", "0", "1", "--encoder-lrs", "1e-3", "--threads", "1",
            "--output", str(tmp_path / "out"), "--json", str(tmp_path / "cora.json"), "--no-progress"]
    finetune_cora.main(args)
    report = json.loads((tmp_path / "cora.json").read_text())
    runs = report["runs"].values()
    assert sorted({run["mode"] for run in runs}) == sorted(finetune_cora.MODES) and len(runs) == 6
    for run in runs:
        if run["seed"] == 0:
            assert run["reloaded"] == run["early_stopped"], run
        assert run["best_epoch"] < 3 and 0.0 <= run["early_stopped"] <= 100.0
        if finetune_cora.MODES[run["mode"]][0]:  # pretrained: far above the 14 % of chance after 3 epochs
            assert run["early_stopped"] > 50.0, run
    assert [row["mode"] for row in report["summary"]] == list(finetune_cora.MODES)

    def no_training(*unused):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(finetune_cora, "train_run", no_training)
    finetune_cora.main(args)
    with pytest.raises(CheckpointError, match="epochs"):
        finetune_cora.main([*args, "--epochs", "4"])


def test_random_init_takes_a_seed_as_zoo_embed_and_probe_do(tmp_path, micro_hubert, capsys):
    """`--random-init SEED` trains on the encoder `zoo.load(NAME, pretrained=False)` gives after
    `torch.manual_seed(SEED)`; the flag alone takes --seed (the script's documented form)."""
    import torch
    from huggingface_hub import ModelCard

    import zoo
    from zoo.cli import main

    micro_hubert.save_pretrained(tmp_path / "encoder")
    base_card = ModelCard.load(tmp_path / "encoder" / "README.md")
    base_card.data.license = "cc-by-sa-4.0"
    base_card.save(tmp_path / "encoder" / "README.md")
    write_tones(tmp_path / "tones")
    common = [str(tmp_path / "encoder"), "--data", str(tmp_path / "tones"), "--label-regex", r"^(\w+)_",
              "--test-regex", r"_[0-3]\.wav$", "--batch-size", "4", "--epochs", "1", "--mode", "linear",
              "--no-progress", "--seed", "2"]
    for option, seed in ((["--random-init", "3"], 3), (["--random-init"], 2)):
        run = tmp_path / f"seed{seed}"
        assert main(["finetune", *common, *option, "-o", str(run)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["init"], report["random_init_seed"]) == ("random", seed)
        torch.manual_seed(seed)
        fresh = zoo.load(tmp_path / "encoder", pretrained=False).state_dict()
        trained = zoo.load(run / "classifier").encoder.state_dict()
        assert all(torch.equal(trained[key], value) for key, value in fresh.items())
        card = (run / "classifier" / "README.md").read_text()
        assert f"random-init `encoder` (seed {seed})" in card
        assert ModelCard(card).data.license is None  # no weights of the base, so not its licence


def test_a_fine_tuned_card_names_its_base_model_and_licence(tmp_path, monkeypatch):
    """Were left out: a classifier fine-tuned from hubert-tiny-fsdd (cc-by-sa-4.0) was published
    without a licence."""
    from zoo.run_cards import Origin, base_model_of, with_base_model

    assert base_model_of("hubert-tiny-fsdd") == Origin("ssl-zoo/hubert-tiny-fsdd", "cc-by-sa-4.0")
    assert base_model_of("mert-v1-95m") == Origin("m-a-p/MERT-v1-95M", "cc-by-nc-4.0")
    assert base_model_of("beats-iter3") == Origin(None, "mit")  # an upstream file, on no Hub repo
    assert base_model_of("org/name") == Origin("org/name", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x" / "encoder").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "encoder" / "README.md").write_text("---\nlicense: mit\n---\n")
    assert base_model_of("runs/x") == Origin(None, "mit")  # a local run folder, not the Hub repo "runs/x"
    card = with_base_model("---\nlibrary_name: ssl-zoo\n---\n\n# model\n", "hubert-base-ls960")
    assert "base_model: facebook/hubert-base-ls960" in card and "license: apache-2.0" in card


def test_train_limit_draws_its_items_by_the_runs_seed():
    """`--train-limit 4 --seed S` keeps 2 training items a class, drawn by S (the test items all):
    runs over seeds 0 and 1, meant to vary the subset, trained on the same 4 items when the draw
    ignored the seed."""
    from zoo.finetune_data import limit_training

    rows = [(f"{label}{index}.wav", label, False) for label in "ab" for index in range(10)] + [("t.wav", "a", True)]
    first, again, other = (limit_training(rows, 4, seed) for seed in (0, 0, 1))
    for kept in (first, other):
        assert sorted(label for _, label, test in kept if not test) == ["a", "a", "b", "b"] and kept[-1][0] == "t.wav"
    assert first == again and set(first) != set(other)
