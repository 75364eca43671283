"""The `zoo` command line: list, info, embed (npy, parquet, resumable shards), convert."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
import torch
from helpers import EXAMPLES, shared_path

import zoo
from zoo import registry
from zoo.cli import main, model_table
from zoo.errors import ConfigError

RATE = 16000


@pytest.fixture
def wav_folder(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for index, length in enumerate((4000, 9000, 6000)):
        soundfile.write(folder / f"clip{index}.wav", generator.standard_normal(length).astype(np.float32) * 0.1,
                        RATE, subtype="FLOAT")
    return folder


@pytest.fixture
def checkpoint(tmp_path, micro_hubert):
    micro_hubert.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_list_and_info(capsys):
    assert main(["list", "--modality", "speech"]) == 0
    assert "hubert-base-ls960" in capsys.readouterr().out
    assert main(["list", "graphmae-*", "--pretrained"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["graphmae-cora", "graphmae-mutag"]
    assert main(["info", "hubert-base-ls960"]) == 0
    assert json.loads(capsys.readouterr().out)["repo_id"] == "facebook/hubert-base-ls960"
    assert main(["info", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["list", "--architectures", "--modality", "vision"]) == 0  # the modality was ignored
    vision = capsys.readouterr().out.split()
    assert vision and all(name.startswith("gmml-vit-") for name in vision)
    assert main(["list", "--architectures"]) == 0
    assert set(vision) < set(capsys.readouterr().out.split())
    assert main(["list", "graphmae-*", "--pretrained", "--markdown"]) == 0  # the filters were ignored: all 46
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["graphmae-cora", "graphmae-mutag"]
    assert main(["list", "--architectures", "--markdown"]) == 2
    assert "drop --markdown and --pretrained" in capsys.readouterr().err


def test_info_describes_a_checkpoint_folder(checkpoint, tmp_path, capsys):
    """Was "unknown model": `zoo info` read hub_configs only."""
    assert main(["info", str(checkpoint)]) == 0
    shown = json.loads(capsys.readouterr().out)
    encoder = zoo.load(checkpoint)
    assert shown["family"] == "hubert" and shown["class"] == "HubertEncoder" and shown["head"] is None
    as_json = json.loads(json.dumps({"a": encoder.config.to_dict(), "p": encoder.processor.to_dict()}))
    assert shown["architecture"] == as_json["a"] and shown["preprocessing"] == as_json["p"]
    assert shown["params"] == sum(parameter.numel() for parameter in encoder.parameters())
    assert (shown["embed_dim"], shown["num_layers"]) == (encoder.embed_dim, encoder.num_layers)  # named alike
    zoo.for_classification(encoder, labels=["yes", "no"]).save_pretrained(tmp_path / "clf")
    assert main(["info", str(tmp_path / "clf")]) == 0
    assert json.loads(capsys.readouterr().out)["head"]["labels"] == ["yes", "no"]
    assert zoo.info(tmp_path / "clf")["head"]["labels"] == ["yes", "no"]  # the Python API says the same
    assert zoo.info(tmp_path / "clf")["license"] is None  # the default card states none
    encoder.save_pretrained(tmp_path / "mit", model_card="---\nlicense: mit\n---\n# mine\n")
    assert zoo.info(tmp_path / "mit")["license"] == "mit"  # a folder's info had no licence, a zoo name's has
    assert main(["list", "--architectures", "gmml-*"]) == 0
    names = capsys.readouterr().out.split()
    assert names == ["gmml-vit-base-patch16", "gmml-vit-small-patch16", "gmml-vit-tiny-patch16"]
    assert main(["list", "beats-iter3*"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 9 and len({row.index(" audio ") for row in rows}) == 1  # long names keep the columns
    assert main(["list", "no-such-*"]) == 0
    assert "no model matches pattern='no-such-*'" in capsys.readouterr().err
    assert main(["list", "--architectures", "gmml"]) == 0  # was nothing at all
    assert capsys.readouterr().out.split() == names
    assert main(["list", "--architectures", "no-such"]) == 0
    assert "no architecture matches pattern='no-such'" in capsys.readouterr().err


def test_listing_help_and_refused_options_import_no_torch():
    """`zoo list`, `zoo info NAME`, each command's -h and a misspelt option answer without torch's 1.5 s import
    (and a Ctrl-C during that import, inside `main`, is reported as an interruption)."""
    code = ("import contextlib, io, sys\nfrom zoo.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    main(['list'])\n"
            "    main(['info', 'hubert-base-ls960'])\n"
            "    for argv in (['-h'], ['embed', '-h'], ['probe', '-h'], ['finetune', '-h'], ['predict', '-h'],\n"
            "                 ['finetune', 'x', '-o', 'y', '--epohcs', '2']):\n"
            "        try:\n            main(argv)\n        except SystemExit:\n            pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_readme_model_table_is_generated_from_hub_configs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert model_table() in readme, "README's model table is stale: paste `zoo list --markdown`"


def test_embed_to_npy_and_parquet(checkpoint, wav_folder, tmp_path, capsys):
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "e.npy")]) == 0
    rows = np.load(tmp_path / "e.npy")
    expected = zoo.load(checkpoint).embed(sorted(str(p) for p in wav_folder.iterdir()), progress=False)
    assert rows.shape == (3, 32) and np.abs(rows - expected.numpy()).max() <= 1e-6
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "t.parquet"),
                 "--pool", "none", "--layer", "0,-1"]) == 0
    table = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert [Path(row["input"]).name for row in table] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    assert table[1]["shape"] == [2, 449, 32] and len(table[1]["embedding"]) == 2 * 449 * 32
    lengths = sorted(row["shape"][1] for row in table)  # was "3 rows of 2 to 2 tokens": layers counted as tokens
    assert f"3 rows of 2 layers of {lengths[0]} to 449 tokens of width 32" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.parts"))
    record = json.loads(pq.read_schema(tmp_path / "t.parquet").metadata[b"zoo"])  # it said nothing of its making
    assert {key: record[key] for key in ("family", "layer", "pool")} == {"family": "hubert", "layer": [0, -1],
                                                                         "pool": "none"}
    assert record["zoo_version"] == zoo.__version__


def test_inputs_may_follow_options_but_unknown_options_are_refused(checkpoint, wav_folder, tmp_path, capsys):
    clips = sorted(str(p) for p in wav_folder.iterdir())
    assert main(["embed", str(checkpoint), "--threads", "1", clips[0], "-o", str(tmp_path / "a.npy"), *clips[1:]]) == 0
    expected = zoo.load(checkpoint).embed(clips, progress=False)
    assert np.abs(np.load(tmp_path / "a.npy") - expected.numpy()).max() <= 1e-6
    with pytest.raises(SystemExit):
        main(["embed", str(checkpoint), clips[0], "--nope", "-o", str(tmp_path / "b.npy")])
    with pytest.raises(SystemExit):
        main(["probe", str(checkpoint), "stray", "--data", str(wav_folder)])
    assert capsys.readouterr().err.count("unrecognized arguments") == 2 and not (tmp_path / "b.npy").exists()
    dashed = wav_folder / "-clip.wav"  # after `--` an input may begin with a dash; `--` after options was refused
    dashed.write_bytes(Path(clips[0]).read_bytes())
    assert main(["embed", str(checkpoint), "-o", str(tmp_path / "d.npy"), "--", clips[0], "-clip.wav"]) == 2
    assert "input '-clip.wav' does not exist" in capsys.readouterr().err  # an input, not an option
    assert main(["embed", str(checkpoint), clips[0], "-o", str(tmp_path / "d.npy"), "--", str(dashed)]) == 0
    assert np.abs(np.load(tmp_path / "d.npy") - expected.numpy()[[0, 0]]).max() <= 1e-6


def test_a_folder_gives_only_the_files_the_encoder_reads(checkpoint, wav_folder, tmp_path, capsys):
    """Notes, label files and hidden files beside the recordings are left out, as `embed` does with
    an image folder; a folder with none of the encoder's files is named with the endings looked for."""
    (wav_folder / "labels.csv").write_text("clip0,dog\n")
    (wav_folder / "._clip0.wav").write_bytes(b"AppleDouble")
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (3, 32)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not audio")
    assert main(["embed", str(checkpoint), str(tmp_path / "notes"), "-o", str(tmp_path / "n.npy")]) == 2
    assert "no input files (.wav, .flac, .ogg, .oga, .opus, .mp3, .aif" in capsys.readouterr().err
    clip, rate = soundfile.read(wav_folder / "clip0.wav")
    soundfile.write(tmp_path / "notes" / "b.mp3", clip, rate)  # decodes by path, but was left out of a folder
    soundfile.write(tmp_path / "notes" / "c.aiff", clip, rate)
    assert main(["embed", str(checkpoint), str(tmp_path / "notes"), "-o", str(tmp_path / "n.npy")]) == 0
    assert np.load(tmp_path / "n.npy").shape == (2, 32)
    capsys.readouterr()
    assert main(["embed", str(checkpoint), "", "-o", str(tmp_path / "c.npy")]) == 2  # was the working folder
    assert "input '' is an empty path" in capsys.readouterr().err and not (tmp_path / "c.npy").exists()


def test_interrupted_embed_resumes_from_its_shards(checkpoint, wav_folder, tmp_path, monkeypatch, capsys):
    output = tmp_path / "e.npy"
    calls = []
    original = zoo.Encoder.embed

    def crash_on_second_shard(self, inputs, **kwargs):
        calls.append(len(inputs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, inputs, **kwargs)

    monkeypatch.setattr(zoo.Encoder, "embed", crash_on_second_shard)
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(output), "--shard-size", "2"]) == 130  # Ctrl-C
    assert "interrupted; the shards written so far are kept" in capsys.readouterr().err
    assert not output.exists() and len(list((tmp_path / "e.npy.parts").glob("shard-*.npz"))) == 1
    calls.clear()
    for other in (["--shard-size", "3"], ["--shard-size", "2", "--layer", "0"]):
        assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(output), *other]) == 2
        assert "holds shards of an interrupted job with other" in capsys.readouterr().err
    other_weights = zoo.load(checkpoint)
    torch.nn.init.constant_(other_weights.model.encoder.layer_norm.bias, 0.5)
    other_weights.save_pretrained(tmp_path / "other")
    assert main(["embed", str(tmp_path / "other"), str(wav_folder), "-o", str(output), "--shard-size", "2"]) == 2
    assert "with other weights; rerun it with the same arguments" in capsys.readouterr().err
    two_files = [str(path) for path in sorted(wav_folder.iterdir())[:2]]
    assert main(["embed", str(checkpoint), *two_files, "-o", str(output), "--shard-size", "2"]) == 2
    assert "with other inputs; rerun it with the same arguments" in capsys.readouterr().err
    assert calls == []
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(output), "--shard-size", "2"]) == 0
    assert calls == [1] and np.load(output).shape == (3, 32)
    monkeypatch.undo()  # the rows of the shards kept and of the rest (shards of 2), in the inputs' order
    files = [str(path) for path in sorted(wav_folder.iterdir())]
    assert np.abs(np.load(output) - zoo.load(checkpoint).embed(files, progress=False).numpy()).max() < 1e-6



def test_a_job_that_failed_before_its_first_shard_does_not_block_the_next(checkpoint, wav_folder, tmp_path,
                                                                           capsys):
    """A bad first input stopped the job before any shard; the corrected command was then
    refused as "another job's shards" although there were none."""
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    output = tmp_path / "e.npy"
    assert main(["embed", str(checkpoint), str(broken), str(wav_folder), "-o", str(output)]) == 2
    assert "cannot decode audio file" in capsys.readouterr().err
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(output)]) == 0
    assert np.load(output).shape == (3, 32)


def test_a_second_job_on_the_same_output_is_refused_while_the_first_runs(checkpoint, wav_folder, tmp_path, capsys):
    """Two `zoo embed` jobs writing one output took each other's shards for their own: a --layer 1 job
    wrote 20 of its 24 rows from the last layer, and said it was done."""
    from filelock import FileLock

    output = tmp_path / "e.npy"
    parts = tmp_path / "e.npy.parts"
    parts.mkdir()
    with FileLock(str(parts / "job.lock")):  # the first job, embedding
        assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(output), "--layer", "1"]) == 2
    assert f"another job is writing '{output}' now (it holds '{parts}'); wait for it" in capsys.readouterr().err
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(output)]) == 0  # once it has finished
    assert np.load(output).shape == (3, 32) and not parts.exists()


def test_embed_and_probe_of_a_fine_tuned_model_use_its_encoder(checkpoint, wav_folder, tmp_path, capsys):
    """Was an AttributeError traceback (a head has no `embed`), also for BEATs' converted taggers."""
    classifier = zoo.for_classification(zoo.load(checkpoint), labels=["a", "b"], freeze=False)
    torch.nn.init.normal_(classifier.encoder.model.encoder.layers[0].feed_forward.output_dense.weight)
    classifier.save_pretrained(tmp_path / "clf")
    assert main(["embed", str(tmp_path / "clf"), str(wav_folder), "-o", str(tmp_path / "e.npy")]) == 0
    assert "is a classification model; using its encoder's features, without its head" in capsys.readouterr().err
    expected = classifier.encoder.embed(sorted(wav_folder.iterdir()), progress=False).numpy()
    assert np.abs(np.load(tmp_path / "e.npy") - expected).max() < 1e-5  # the fine-tuned encoder, not the original
    for label in ("a", "b"):
        (tmp_path / "set" / label).mkdir(parents=True)
        (tmp_path / "set" / "test" / label).mkdir(parents=True)
        for index, source in enumerate(sorted(wav_folder.iterdir())):
            shutil.copy(source, tmp_path / "set" / label / f"{index}.wav")
            shutil.copy(source, tmp_path / "set" / "test" / label / f"{index}.wav")
    assert main(["probe", str(tmp_path / "clf"), "--data", str(tmp_path / "set")]) == 0
    assert json.loads(capsys.readouterr().out)["train_items"] == 6


def test_embed_reads_the_audio_rows_of_a_hub_parquet_file(checkpoint, wav_folder, tmp_path, capsys):
    """A Hub audio dataset is parquet with an Audio column of {bytes, path}: its rows embed as
    the files they hold, named FILE#ROW (the file was read as one recording and failed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(wav_folder.iterdir())
    rows = [{"bytes": path.read_bytes(), "path": path.name} for path in files]
    with_metadata = tmp_path / "train-00000-of-00001.parquet"  # as datasets writes it: the metadata names the column
    covers = [{"bytes": b"\x89PNG", "path": "cover.png"}] * 3
    features = {"cover": {"_type": "Image"}, "audio": {"_type": "Audio"}}
    table = pa.table({"cover": covers, "audio": rows})
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), with_metadata)
    plain = tmp_path / "plain.parquet"  # no Hugging Face metadata: the first struct with bytes
    pq.write_table(pa.table({"id": [0, 1, 2], "clip": rows}), plain)
    assert main(["embed", str(checkpoint), *map(str, files), "-o", str(tmp_path / "files.parquet")]) == 0
    expected = pq.read_table(tmp_path / "files.parquet").column("embedding").to_pylist()
    for source in (with_metadata, plain):
        output = tmp_path / f"from-{source.stem}.parquet"
        assert main(["embed", str(checkpoint), str(source), "-o", str(output)]) == 0
        table = pq.read_table(output)
        assert table.column("input").to_pylist() == [f"{source}#{index}" for index in range(3)]
        assert np.abs(np.array(table.column("embedding").to_pylist()) - np.array(expected)).max() <= 1e-6
    pq.write_table(pa.table({"id": [0]}), tmp_path / "ids.parquet")
    assert main(["embed", str(checkpoint), str(tmp_path / "ids.parquet"), "-o", str(tmp_path / "x.npy")]) == 2
    assert "has no Audio column (a struct with 'bytes'); its columns are ['id']" in capsys.readouterr().err
    covers_only = tmp_path / "covers.parquet"  # its image column was read as audio
    pq.write_table(pa.table({"cover": covers}).replace_schema_metadata(
        {b"huggingface": json.dumps({"info": {"features": {"cover": {"_type": "Image"}}}}).encode()}), covers_only)
    assert main(["embed", str(checkpoint), str(covers_only), "-o", str(tmp_path / "x.npy")]) == 2
    assert "has no Audio column: its `datasets` features are {'cover': 'Image'}" in capsys.readouterr().err


def test_embed_and_probe_run_in_another_dtype_on_given_threads(checkpoint, wav_folder, tmp_path, capsys):
    """--dtype / --threads (the load's dtype= and torch's threads) for embed and probe; the rows
    come back as float32 near the float32 ones."""
    import torch

    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "f32.npy")]) == 0
    threads = torch.get_num_threads()
    try:
        assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "bf16.npy"),
                     "--dtype", "bfloat16", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    half, full = np.load(tmp_path / "bf16.npy"), np.load(tmp_path / "f32.npy")
    assert half.dtype == np.float32 and 0 < np.abs(half - full).max() < 0.05 * np.abs(full).max()
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "x.npy"), "--dtype", "int8"]) == 2
    assert "dtype='int8'; use a floating torch dtype" in capsys.readouterr().err
    for command in (["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "x.npy")],
                    ["finetune", str(checkpoint), "--data", str(wav_folder), "-o", str(tmp_path / "run")],
                    ["pretrain", "graphmae", "--dataset", "cora", "-o", str(tmp_path / "run")]):
        with pytest.raises(SystemExit):  # refused by argparse, as a bad choice is
            main([*command, "--threads", "0"])
        assert "argument --threads: 0 is not a positive number" in capsys.readouterr().err
    tone_set(tmp_path / "tones", "folders")
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "tones"), "--dtype", "bfloat16"]) == 0
    assert json.loads(capsys.readouterr().out)["linear_probe_accuracy"] == 1.0


def test_file_commands_say_graph_and_table_encoders_take_no_labelled_files(tmp_path, capsys):
    """Was, for probe and finetune, every file in the folder tried as a graph, or as one row."""
    (tmp_path / "a.txt").write_text("not a graph")
    for command in (["embed", "graphmae-mutag", str(tmp_path), "-o", str(tmp_path / "g.npy")],
                    ["probe", "graphmae-mutag", "--data", str(tmp_path)],
                    ["finetune", "graphmae-mutag", "--data", str(tmp_path), "-o", str(tmp_path / "run")]):
        assert main(command) == 2
        said = capsys.readouterr().err
        assert f"graphmae-mutag is a graph encoder: its inputs are objects, not files, so `zoo {command[0]}`" in said
    assert not (tmp_path / "run").exists()
    for command in (["probe", "tjepa-adult", "--data", str(tmp_path)],  # was an IndexError traceback
                    ["finetune", "tjepa-adult", "--data", str(tmp_path), "-o", str(tmp_path / "run")]):
        assert main(command) == 2
        assert "tjepa-adult is a table encoder: each of its files is a table of many rows" in capsys.readouterr().err


def test_embed_errors_exit_2_without_output(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), RATE)
    for option, message in [(["--layer", "x"], "--layer 'x': use an int, a comma-separated list"),
                            (["--layer", "99"], "layer 99 is out of range"),  # these two left e.npy.parts/ behind
                            (["--pool", "cls"], "pool='cls': HubertEncoder has no cls token")]:
        assert main(["embed", str(checkpoint), str(empty), "-o", str(tmp_path / "e.npy"), *option]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # refused when parsed, as for --dataset (was accepted there)
        main(["embed", str(checkpoint), str(empty), "-o", str(tmp_path / "e.npy"), "--batch-size", "-1"])
    assert "argument --batch-size: -1 is not a positive number" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # was refused as shard_size=0 after the model loaded
        main(["embed", str(checkpoint), str(empty), "-o", str(tmp_path / "e.npy"), "--shard-size", "0"])
    assert "argument --shard-size: 0 is not a positive number" in capsys.readouterr().err
    assert not list(tmp_path.glob("e.npy*"))
    assert main(["embed", str(checkpoint), str(empty), "-o", str(tmp_path / "e.npy")]) == 2
    assert f"input 0: audio input {str(empty)!r} is empty" in capsys.readouterr().err
    assert main(["embed", str(checkpoint), str(empty), "-o", str(tmp_path / "e.csv")]) == 2
    assert not (tmp_path / "e.npy").exists()


def test_a_bad_input_is_numbered_within_the_whole_job(checkpoint, wav_folder, tmp_path, capsys):
    """Was numbered within its shard: `input 1` for the fourth input with --shard-size 2."""
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), RATE)
    clips = [*sorted(str(p) for p in wav_folder.iterdir()), str(empty)]
    assert main(["embed", str(checkpoint), *clips, "-o", str(tmp_path / "e.npy"), "--shard-size", "2"]) == 2
    assert f"zoo: error: input 3: audio input {str(empty)!r} is empty" in capsys.readouterr().err  # path was unsaid
    with pytest.raises(zoo.errors.InputError, match=r"^input 1: audio input '.*empty.wav' is empty") as raised:
        zoo.load(checkpoint).embed([clips[0], str(empty)], progress=False)
    assert raised.value.input_index == 1 and raised.value.reason.startswith("audio input '")


def test_convert_writes_a_verified_zoo_checkpoint(tmp_path, capsys):
    from fairseq_hubert import fairseq_model_cfg, fairseq_state_dict
    from huggingface_hub import ModelCard

    upstream = tmp_path / "hubert.pt"
    torch.save({"cfg": {"model": fairseq_model_cfg("layer_pre_ln"), "task": {"normalize": True}},
                "model": fairseq_state_dict("layer_pre_ln")}, upstream)
    assert main(["convert", "hubert", str(upstream), str(tmp_path / "out")]) == 0
    assert "reload verified" in capsys.readouterr().err
    encoder = zoo.load(tmp_path / "out")
    assert encoder.processor.do_normalize and encoder.config.do_stable_layer_norm
    card = (tmp_path / "out" / "README.md").read_text()  # was the bare default card: no source, no licence
    assert "Converted from `hubert.pt` (upstream format `fairseq`) with `zoo convert`" in card
    assert "this card states none (`zoo convert --license ID` writes it)" in card and "license:" not in card
    assert main(["convert", "hubert", str(upstream), str(tmp_path / "mit"), "--license", "mit"]) == 0
    card = ModelCard.load(tmp_path / "mit" / "README.md")
    assert card.data.license == "mit" and "The upstream checkpoint's licence, mit, applies" in card.text
    assert card.data.library_name == "ssl-zoo" and str(tmp_path) not in card.content
    assert main(["convert", "hubert", str(upstream), str(tmp_path / "bad"), "--license", "MIT licence"]) == 2
    assert "--license 'MIT licence'; give the upstream checkpoint's licence as the Hub's identifier" in \
        capsys.readouterr().err and not (tmp_path / "bad").exists()
    upstream.write_bytes(b"garbage")
    assert main(["convert", "hubert", str(upstream), str(tmp_path / "out2")]) == 2
    assert "hubert.pt" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def tone_set(folder: Path, layout: str) -> None:
    """Low and high noisy tones; split by folders ("folders") or by file names ("names")."""
    generator = np.random.default_rng(0)
    for index in range(24):
        label = "low" if index % 2 else "high"
        split = "test" if index >= 16 else "train"
        time = np.arange(4000) / RATE
        wave = np.sin(2 * np.pi * (200 if label == "low" else 3000) * time) + 0.2 * generator.standard_normal(4000)
        name = f"{index}.wav" if layout == "folders" else f"{label}_{split}_{index}.wav"
        path = folder / split / label / name if layout == "folders" else folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave.astype(np.float32), RATE, subtype="FLOAT")


@pytest.mark.parametrize("layout", ["folders", "names"])
def test_probe_reports_accuracy_and_rankme(checkpoint, tmp_path, capsys, layout):
    tone_set(tmp_path / "data", layout)
    regexes = ["--label-regex", r"^(\w+?)_", "--test-regex", "_test_"] if layout == "names" else []
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), *regexes]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_items"] == 16 and report["test_items"] == 8 and report["classes"] == 2
    assert report["linear_probe_accuracy"] == 1.0 and report["knn_accuracy"] >= 0.75
    assert 1.0 <= report["rankme"] <= 32
    (tmp_path / "data" / "labels.csv").write_text("file,label\n")  # beside the recordings: not an input
    (tmp_path / "data" / "test" / "README.txt").parent.mkdir(exist_ok=True)
    (tmp_path / "data" / "test" / "README.txt").write_text("held out")
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), *regexes]) == 0
    assert json.loads(capsys.readouterr().out)["train_items"] == 16
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--pool", "cls", *regexes]) == 2
    assert "has no cls token" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="--k 100 is more than the 16 training items; k-NN uses k=16, where"):
        assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--k", "100", *regexes]) == 0
    assert json.loads(capsys.readouterr().out)["knn_k"] == 16  # was cut to 16 without a word


def test_a_file_name_that_is_not_utf8_is_embedded_probed_and_trained_on(checkpoint, tmp_path, capsys):
    """A Latin-1 'café' (as old zips and Samba shares give) is read by os.listdir with a surrogate,
    which the digests' str.encode() refused: `zoo embed`, `zoo probe --cache` and `zoo finetune`
    ended in a UnicodeEncodeError before any work. The parquet output shows the byte as \\xe9."""
    tone_set(tmp_path / "data", "folders")
    first = next((tmp_path / "data" / "train" / "low").iterdir())
    latin = os.fsdecode(bytes(first.parent) + b"/caf\xe9.wav")
    os.rename(first, latin)
    assert main(["embed", str(checkpoint), str(tmp_path / "data"), "-o", str(tmp_path / "x.parquet")]) == 0
    names = pq.read_table(tmp_path / "x.parquet")["input"].to_pylist()
    assert len(names) == 24 and any(name.endswith("low/caf\\xe9.wav") for name in names)
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--cache", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["train_items"] == 16
    assert main(["finetune", str(checkpoint), "--data", str(tmp_path / "data"), "-o", str(tmp_path / "ft"),
                 "--mode", "linear", "--epochs", "1"]) == 0


def test_probe_takes_no_progress_as_the_other_long_commands_do(checkpoint, tmp_path, capsys):
    """`zoo probe` was the one long command without --no-progress (embed, predict, finetune and
    pretrain have it): its bar filled a log file."""
    tone_set(tmp_path / "data", "folders")
    for cache in ([], ["--cache", str(tmp_path / "cache")]):
        assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--no-progress", *cache]) == 0
        captured = capsys.readouterr()
        assert "item/s" not in captured.err and json.loads(captured.out)["train_items"] == 16
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data")]) == 0
    assert "item/s" in capsys.readouterr().err


def test_probe_without_a_split_is_refused(checkpoint, tmp_path, capsys):
    tone_set(tmp_path / "data", "names")
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--label-regex", r"^(\w+?)_"]) == 2
    assert "no train/test split" in capsys.readouterr().err
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--label-regex", r"^(\w+?)_",
                 "--test-regex", ".*"]) == 2  # was told to give --test-regex
    assert "all 24 files are in the test split, none is left for training: narrow --test-regex" in \
        capsys.readouterr().err
    regexes = ["--label-regex", r"^(\w+?)_", "--test-regex", "_test_"]
    (tmp_path / "data" / "high_train_0.wav").rename(tmp_path / "data" / "mid_test_0.wav")
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), *regexes]) == 2
    assert "test labels ['mid'] have no training files (training labels: ['high', 'low'])" in capsys.readouterr().err
    for path in [*(tmp_path / "data").glob("low_*.wav"), tmp_path / "data" / "mid_test_0.wav"]:
        path.unlink()
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), *regexes]) == 2
    assert "the training split has one label, ['high']" in capsys.readouterr().err


def test_split_folders_are_read_as_parquet_splits_are(checkpoint, tmp_path, capsys):
    """Were: a val/ folder beside train/ and test/ was trained on silently (24 training items,
    not 16); Train/ and TEST/ were not split folders ("no train/test split"); files lying in
    train/ and test/ themselves were labelled 'train' and 'test'."""
    data = tmp_path / "data"
    tone_set(data, "folders")
    shutil.copytree(data / "train", data / "val")
    assert main(["probe", str(checkpoint), "--data", str(data)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["train_items"] == 16 and json.loads(out)["test_items"] == 8
    assert "left out 16 files in neither a train/ nor a test/ folder (in ['val/high', 'val/low'])" in err
    (data / "train").rename(data / "Train")
    (data / "test").rename(data / "TEST")
    assert main(["probe", str(checkpoint), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["train_items"] == 16
    for path in (data / "TEST" / "low").iterdir():
        path.rename(data / "TEST" / path.name)
    assert main(["probe", str(checkpoint), "--data", str(data)]) == 2
    assert "file 'TEST/17.wav' lies in its split folder itself, so no folder names its label (it would be " \
        "'TEST'): put the files in TEST/LABEL/ folders, or give --label-regex" in capsys.readouterr().err


def test_a_test_pattern_that_matches_no_file_is_named(checkpoint, tmp_path, capsys):
    """Was "give --test-regex or a test/ folder", to a command that gave --test-regex."""
    tone_set(tmp_path / "data", "names")
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--label-regex", r"^(\w+?)_",
                 "--test-regex", "_held_"]) == 2
    assert "--test-regex '_held_' matches none of the 24 file names, so the test split is empty" in \
        capsys.readouterr().err


def test_a_protocol_with_data_files_and_a_negative_sampling_rate_are_refused(checkpoint, tmp_path, capsys):
    tone_set(tmp_path / "data", "names")
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--protocol", "svm-10fold"]) == 2
    assert "--protocol svm-10fold is for --dataset and --table; --data files are scored by a linear probe" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["embed", str(checkpoint), str(tmp_path / "data"), "-o", str(tmp_path / "e.npy"), "--sampling-rate", "-5"])
    assert "argument --sampling-rate: -5 is not a positive number" in capsys.readouterr().err


def test_a_joined_option_value_has_its_home_expanded(checkpoint, wav_folder, tmp_path, monkeypatch, capsys):
    """The shell expands `-o ~/e.npy` but not `--output=~/e.npy`, which wrote into a folder named `~`."""
    from zoo.cli import home_expanded

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["embed", str(checkpoint), str(wav_folder), "--output=~/e.npy", "--no-progress"]) == 0
    assert np.load(tmp_path / "home" / "e.npy").shape[0] == 3 and not (tmp_path / "~").exists()
    assert [home_expanded(token) for token in ["--label-regex=~x", "~/a.wav", "--data=a~/b", "--data=~"]] == [
        "--label-regex=~x", "~/a.wav", "--data=a~/b", f"--data={tmp_path / 'home'}"]


def test_a_sampling_rate_for_audio_files_is_refused(checkpoint, wav_folder, tmp_path, capsys):
    """`--sampling-rate 8000` with audio files was accepted and had no effect: files carry their rate."""
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "e.npy"), "--sampling-rate",
                 "8000"]) == 2
    assert ("--sampling-rate 8000 gives the rate of audio arrays that carry none (rows of a parquet file); the 3 "
            "inputs are audio files, which carry their own rate, and each is resampled to the model's 16000 Hz: "
            "leave it out") in capsys.readouterr().err
    assert not (tmp_path / "e.npy").exists()
    rows = EXAMPLES / "tabular" / "adult_test_rows.csv"  # was taken, and the rows equal to a run without it
    assert main(["embed", "tjepa-adult", str(rows), "-o", str(tmp_path / "e.npy"), "--sampling-rate", "5"]) == 2
    assert ("--sampling-rate 5 is the rate of audio arrays; tjepa-adult reads tabular inputs: drop it"
            in capsys.readouterr().err)
    assert not (tmp_path / "e.npy").exists()


def test_bad_label_and_test_patterns_are_named(checkpoint, tmp_path, capsys):
    tone_set(tmp_path / "data", "names")
    data = ["--data", str(tmp_path / "data")]
    for regexes, message in ([["--label-regex", "(x"], "--label-regex '(x' is not a regular expression"],
                             [["--test-regex", "[a"], "--test-regex '[a' is not a regular expression"],
                             [["--label-regex", r"^\w+_"], r"--label-regex '^\w+_' has no group: put"]):
        assert main(["probe", str(checkpoint), *data, *regexes]) == 2
        assert message in capsys.readouterr().err


def test_a_label_group_that_takes_no_part_in_a_match_is_refused_while_listing(checkpoint, tmp_path, capsys,
                                                                              monkeypatch):
    """Was: `--label-regex '_(test)?'` gave the label None to the training files, and the probe
    ended in a TypeError after every file was embedded."""
    tone_set(tmp_path / "data", "names")
    monkeypatch.setattr(zoo.Encoder, "embed", lambda *args, **kwargs: pytest.fail("embedded before the refusal"))
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--label-regex", "_(test)?",
                 "--test-regex", "_test_"]) == 2
    assert "--label-regex '_(test)?' matches, but its first group takes no part in the match of file " \
        "'high_train_0.wav'" in capsys.readouterr().err


@pytest.mark.parametrize("k", ["0", "-3"])
def test_a_k_below_one_is_refused_before_any_embedding(checkpoint, tmp_path, capsys, monkeypatch, k):
    """Was refused by knn_accuracy, after every file was embedded and the linear probe fitted."""
    from zoo.probe_job import run_probe

    tone_set(tmp_path / "data", "names")
    monkeypatch.setattr(zoo.Encoder, "embed", lambda *args, **kwargs: pytest.fail("embedded before the refusal"))
    with pytest.raises(SystemExit):
        main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--test-regex", "_test_", "--k", k])
    assert f"argument --k: {k} is not a positive number" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=f"k={k}: k-NN needs at least one neighbour"):
        run_probe(zoo.load(checkpoint), [(tmp_path / "data" / "high_train_0.wav", "high", False)], k=int(k))


def test_a_non_finite_embedding_is_named_by_its_file_and_zero_embeddings_are_scored(tmp_path):
    """Were "train_x holds NaN or infinite values", naming no file; and all-zero embeddings
    aborted the probe because RankMe refused them (the rank of a zero matrix is 0)."""
    from zoo.probe_job import run_probe

    class Constant:
        def __init__(self, fill: float):
            self.fill = fill

        def embed(self, items, **kwargs):
            rows = torch.zeros(len(items), 4)
            rows[5, 1] = self.fill
            return rows

    rows = [(tmp_path / f"{index}_a.wav", str(index % 2), index >= 20) for index in range(24)]
    with pytest.raises(zoo.InputError, match=r"for 1 of 24 items, the first item 5, file '.*5_a.wav'"):
        run_probe(Constant(float("nan")), rows)
    report = run_probe(Constant(0.0), rows)
    assert report["rankme"] == 0.0 and report["linear_probe_accuracy"] == 0.5 and report["knn_accuracy"] == 0.5


@pytest.mark.parametrize("command, message", [
    (["graphmae-cora", "--dataset", "cora", "--layer", "1", "--pool", "cls", "--k", "5"],
     "--layer, --pool, --k: only for --data files; --dataset runs its paper's protocol"),
    (["tjepa-adult", "--table", "t.csv", "--target", "y", "--layer", "2", "--k", "3", "--label-regex", "(x)"],
     "--label-regex, --layer, --k: only for --data files; --table runs its paper's protocol"),
    (["x", "--data", "d", "--seeds", "5", "6"], "--seeds is for --dataset and --table; a --data probe draws no random"),
])
def test_probe_options_its_mode_does_not_use_are_refused(command, message, capsys, monkeypatch):
    """Were ignored silently: --dataset and --table ran their protocol on the last layer with
    seed 0; a --data probe ignored --seeds, and its --seed changed nothing (L-BFGS draws nothing)."""
    from zoo import cli

    monkeypatch.setattr(cli, "load_for_command", lambda args: pytest.fail("loaded before the refusal"))
    assert main(["probe", *command]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command, meant", [
    (["probe", "graphmae-cora", "--dataset", "cora", "--seed", "3"], "--seeds"),
    (["embed", "graphmae-cora", "x", "-o", "e.npy", "--lay", "3"], "--layer"),
    (["pretrain", "gmml", "--data", "x", "-o", "run", "--step", "3"], "--steps"),
    (["finetune", "graphmae-cora", "--dataset", "cora", "-o", "run", "--eval-batch", "8"], "--eval-batch-size"),
])
def test_an_option_is_taken_only_in_full(command, meant, capsys):
    """argparse took any unique prefix (`--seed 3` as probe's --seeds), so a saved command would
    change meaning, or fail as ambiguous, once a new option shared its prefix; a prefix is now
    refused with the option it begins."""
    with pytest.raises(SystemExit, match="2"):
        main(command)
    assert f"did you mean {meant}?" in capsys.readouterr().err


def test_embed_with_the_embedded_checkpoint_offline(tmp_path):
    """`zoo embed hubert-tiny-fsdd some.wav -o e.npy` in a fresh process, offline, empty cache."""
    import os
    import subprocess
    import sys

    example = sorted((Path(zoo.__file__).parent / "examples" / "speech").glob("*.wav"))[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-home")}
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "embed", "hubert-tiny-fsdd", str(example),
                             "-o", str(tmp_path / "e.npy")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = np.load(tmp_path / "e.npy")
    assert rows.shape == (1, 192) and np.isfinite(rows).all()
    assert np.abs(rows - zoo.load("hubert-tiny-fsdd").embed([str(example)], progress=False).numpy()).max() <= 1e-6


def test_demo_embeds_the_bundled_examples_and_names_what_it_skips(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "== hubert-tiny-fsdd (speech, hubert): 6 inputs -> embeddings (6, 192)" in out
    assert "== gmml-vit-tiny-cifar10 (vision, gmml): 4 inputs -> embeddings (4, 192), all layers (1, 13, 192)" in out
    assert "skipped, no bundled inputs" in out and "graphmae-mutag (graph)" in out


def test_convert_names_the_families_it_takes(capsys):
    from zoo import registry

    convertible = sorted(name for name in registry.family_modules() if registry.get_family(name).converters)
    assert main(["convert", "tjepa", "x.pt", "out"]) == 2
    assert f"`zoo convert` takes {convertible}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "-h"])
    assert f"{', '.join(convertible[:-1])} or {convertible[-1]}" in " ".join(capsys.readouterr().out.split())


def test_convert_help_lists_each_familys_formats_its_default_first(capsys):
    """`--format` said "(default: the family's first)" and named none of the 9 formats; the list, once
    written out in cli.py, is each family's own (`registry.convert_formats`)."""
    with pytest.raises(SystemExit):
        main(["convert", "-h"])
    assert ("by default the family's first: beats: official; gmml: auto (read off the file), gmml, dino, timm; "
            "graphmae: graphmae; hubert: fairseq; mert: transformers, fairseq") in " ".join(
                capsys.readouterr().out.split())


def test_a_family_without_an_options_module_leaves_the_cli_working(monkeypatch, capsys):
    """A new family folder without `<family>_pretrain_options.py` broke every command, `zoo --version`
    and `zoo list` too, with a ModuleNotFoundError traceback: the CLI lists every family's convert
    formats. A family without pretraining need not write one; `zoo pretrain` of it says it has none."""
    modules = registry.family_modules()
    monkeypatch.setattr(registry, "family_modules", lambda: {**modules, "mytoy": "modalities.audio.mytoy"})
    assert registry.options_of("mytoy") is None and registry.variant_names("mytoy") == ()
    assert main(["list"]) == 0 and "hubert-tiny-fsdd" in capsys.readouterr().out
    assert main(["pretrain", "mytoy", "-o", "run"]) == 2
    assert "family 'mytoy' has no pretrain options module yet" in capsys.readouterr().err
    options = types.SimpleNamespace(__name__="modalities.audio.mytoy_pretrain_options")  # no add_arguments
    monkeypatch.setattr("zoo.cli.imported", lambda name, family, module: options)
    assert main(["pretrain", "mytoy", "-o", "run"]) == 2
    assert "family 'mytoy' has no pretraining recipe" in capsys.readouterr().err


def test_a_run_stopped_by_a_schedulers_signal_exits_as_the_shell_reports_that_signal(tmp_path, monkeypatch, capsys):
    """A run that SIGTERM stopped after checkpointing its step (`zoo.training.stopping_on_signals`)
    ends the command with 143 and says how to go on, as Ctrl-C's 130 does."""
    import signal

    import zoo.finetune_job
    from zoo.errors import Stopped

    def stopped(args):
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(zoo.finetune_job, "run_finetune", stopped)
    assert main(["finetune", "hubert-tiny-fsdd", "--data", str(tmp_path), "-o", str(tmp_path / "run")]) == 143
    assert capsys.readouterr().err == ("zoo: stopped by SIGTERM; a rerun of the same command continues from the last "
                                       "checkpoint, if one was written\n")


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`zoo list | head -1`: no BrokenPipeError traceback, and the shell's status for a closed pipe.
    The pipe is closed before the listing is written, so that the write always finds it closed."""
    listing = subprocess.Popen([sys.executable, "-m", "zoo.cli", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    listing.stdout.close()
    assert listing.wait(timeout=120) == 141 and listing.stderr.read() == b""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_an_output_with_no_room_is_a_zoo_error():
    """`zoo list > /dev/full` (stdout on a full disk) ended in an OSError traceback with status 1."""
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "zoo.cli", "list"], stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr == ("zoo: error: could not write the output (No space left on device); free space where it "
                          "goes, or send it elsewhere\n")


@pytest.mark.parametrize("recipe, data", [
    ("hubert", ["--data", "x"]), ("mert", ["--data", "x"]), ("beats", ["--data", "x"]), ("gmml", ["--data", "x"]),
    ("graphmae", ["--dataset", "cora"]), ("paretognn", ["--dataset", "cora"]), ("tjepa", ["--dataset", "adult"]),
])
def test_a_pretrain_output_that_is_a_file_is_refused_before_any_work(recipe, data, tmp_path, capsys):
    (tmp_path / "taken").write_text("notes")
    assert main(["pretrain", recipe, *data, "-o", str(tmp_path / "taken")]) == 2
    assert "taken' is a file; a run writes a folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "notes"


@pytest.mark.parametrize("command", [["pretrain", "graphmae", "--dataset", "mutag"],
                                     ["finetune", "graphmae-mutag", "--dataset", "mutag"]])
def test_a_run_folder_that_cannot_be_written_is_refused_before_any_work(command, tmp_path, monkeypatch, capsys):
    """On a read-only file system `zoo finetune` and `zoo pretrain` failed with a raw OSError once
    the model and the data had loaded; under a file, only at the first write."""
    (tmp_path / "notes").write_text("notes")
    assert main([*command, "--data", "nowhere", "-o", str(tmp_path / "notes" / "run")]) == 2
    assert f"cannot make the run folder '{tmp_path / 'notes' / 'run'}': '{tmp_path / 'notes'}' is a file" in \
        capsys.readouterr().err
    monkeypatch.setattr("os.access", lambda path, mode: False)  # as on a read-only mount, even for root
    assert main([*command, "--data", "nowhere", "-o", str(tmp_path / "run")]) == 2
    assert f"'{tmp_path}' is not writable here; pass an output folder" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == [tmp_path / "notes"]


def test_probe_with_a_cache_resumes_an_interrupted_run_and_reuses_finished_embeddings(
        checkpoint, tmp_path, monkeypatch, capsys, micro_hubert):
    """`zoo probe --cache DIR` embeds as `zoo embed` does, shard by shard: interrupted, a rerun embeds
    only the shards left; finished, a rerun with other probe settings or another split embeds
    nothing (was: the cache was keyed by label and split too); the scores
    are those of a probe without a cache. Another model's rerun embeds again."""
    from modalities.speech.hubert.model import HubertEncoder
    from zoo import embed_job

    tone_set(tmp_path / "data", "names")
    probe = ["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--label-regex", r"^(\w+?)_",
             "--test-regex", "_test_", "--k", "3"]
    assert main(probe) == 0
    plain = json.loads(capsys.readouterr().out)
    monkeypatch.setattr(embed_job, "SHARD_SIZE", 5)  # 24 files: 5 shards
    calls = []
    embed = HubertEncoder.embed

    def interrupted_at_the_third_shard(self, inputs, **kwargs):
        calls.append(len(inputs))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return embed(self, inputs, **kwargs)

    monkeypatch.setattr(HubertEncoder, "embed", interrupted_at_the_third_shard)
    cache = ["--cache", str(tmp_path / "cache")]
    assert main([*probe, *cache]) == 130
    assert "with --cache, the embeddings written so far are kept" in capsys.readouterr().err
    monkeypatch.setattr(HubertEncoder, "embed", lambda self, inputs, **kwargs: calls.append(len(inputs))
                        or embed(self, inputs, **kwargs))
    calls.clear()
    assert main([*probe, *cache]) == 0
    out, err = capsys.readouterr()
    assert calls == [5, 5, 4] and json.loads(out) == plain  # shards 3-5 only
    assert "24/24" in err and "/5 " not in err  # one bar over the job, not one per shard
    calls.clear()
    assert main([*probe, *cache, "--k", "5"]) == 0
    out, err = capsys.readouterr()
    assert calls == [] and "reused the embeddings" in err and json.loads(out)["knn_k"] == 5
    assert main([*probe[:-4], "--test-regex", r"_1\d\.", *cache]) == 0  # another split: the same inputs
    assert calls == [] and "reused the embeddings" in capsys.readouterr().err
    torch.manual_seed(9)
    HubertEncoder(micro_hubert.config).save_pretrained(tmp_path / "other")
    assert main([*probe[:1], str(tmp_path / "other"), *probe[2:], *cache]) == 0
    assert len(calls) == 5 and "wrote the embeddings" in capsys.readouterr().err
    assert main(["probe", "graphmae-cora", "--dataset", "cora", *cache]) == 2
    assert "--cache keeps the embeddings of --data files" in capsys.readouterr().err


def test_the_cache_embeds_again_for_weights_that_add_up_to_the_same(micro_hubert, wav_folder, tmp_path):
    """The cache and the shards of an interrupted job named the weights by their sum: weights
    moved in place (rows of a matrix swapped) kept it, and rows 0.21 off were reused."""
    from zoo.embed_job import cached_embeddings

    files = [str(path) for path in sorted(wav_folder.iterdir())]
    first, reused = cached_embeddings(micro_hubert, files, tmp_path / "cache", files)
    assert not reused and np.array_equal(cached_embeddings(micro_hubert, files, tmp_path / "cache", files)[0], first)
    weight = micro_hubert.model.encoder.layers[0].attention.q_proj.weight
    with torch.no_grad():
        weight.copy_(weight.flip(0))  # the same sum, other rows
    again, reused = cached_embeddings(micro_hubert, files, tmp_path / "cache", files)
    assert not reused and np.array_equal(again, micro_hubert.embed(files, progress=False).numpy())
    assert np.abs(again - first).max() > 1e-5  # measured 3.1e-5 for this micro model


def test_shards_an_older_zoo_wrote_are_made_again_not_refused(checkpoint, wav_folder, tmp_path, capsys):
    """A job an older zoo began recorded its weights by their sum ("weights_sum"): its rerun, same
    arguments and weights, was refused "with other weights; rerun it with the same arguments". Its
    shards are made again, saying so; a probe cache of another kind says it embeds again too."""
    parts = tmp_path / "e.npy.parts"
    parts.mkdir()
    (parts / "job.json").write_text(json.dumps({"weights_sum": 1.5, "layer": None, "pool": "mean"}))
    np.savez(parts / "shard-00000.npz", rows=np.zeros((3, 32), np.float32))
    assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "e.npy")]) == 0
    assert "holds shards of a job an older zoo began, which named the weights otherwise" in capsys.readouterr().err
    assert np.abs(np.load(tmp_path / "e.npy")).max() > 0 and not parts.exists()
    tone_set(tmp_path / "data", "folders")
    cache = tmp_path / "cache"
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--cache", str(cache)]) == 0
    (cache / "embeddings.json").write_text(json.dumps({"weights_sum": 1.5}))
    assert main(["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--cache", str(cache)]) == 0
    assert f"the embeddings in {cache} were made with another model" in capsys.readouterr().err


def test_a_probe_finding_its_cache_held_waits_then_reuses_it(micro_hubert, wav_folder, tmp_path, capsys):
    """Probes sharing one --cache (a sweep of --k) were refused at once but one, with advice to
    write "to another output path". The second waits, saying so, and reuses what the first wrote."""
    import threading

    from filelock import FileLock

    from zoo.embed_job import CACHE_LOCK_FILE, cached_embeddings

    files = [str(path) for path in sorted(wav_folder.iterdir())]
    written, _ = cached_embeddings(micro_hubert, files, tmp_path / "cache", files, progress=False)
    held, released = threading.Event(), threading.Event()

    def another_probe():  # holds the cache for a second, as a probe filling it does
        lock = FileLock(str(tmp_path / "cache" / CACHE_LOCK_FILE))
        with lock:
            held.set()
            time.sleep(1.0)
            released.set()

    threading.Thread(target=another_probe).start()
    held.wait()
    rows, reused = cached_embeddings(micro_hubert, files, tmp_path / "cache", files, progress=False)
    assert released.is_set() and reused and np.array_equal(rows, written)
    assert f"zoo probe: waiting for another probe filling --cache '{tmp_path / 'cache'}'" in capsys.readouterr().err


def test_probe_cache_embeds_again_a_file_rewritten_under_the_same_name(checkpoint, tmp_path, capsys):
    """Was: the cache was keyed by path, label and split only, so after the test files' contents
    were swapped between the labels a rerun reused the old rows and reported 1.0 where the
    files now give 0.0."""
    tone_set(tmp_path / "data", "names")
    probe = ["probe", str(checkpoint), "--data", str(tmp_path / "data"), "--label-regex", r"^(\w+?)_",
             "--test-regex", "_test_", "--k", "3", "--cache", str(tmp_path / "cache")]
    assert main(probe) == 0
    assert json.loads(capsys.readouterr().out)["linear_probe_accuracy"] == 1.0
    for index in range(16, 24, 2):  # high_test_16 <-> low_test_17, ...
        high, low = tmp_path / "data" / f"high_test_{index}.wav", tmp_path / "data" / f"low_test_{index + 1}.wav"
        high_bytes, low_bytes = high.read_bytes(), low.read_bytes()
        high.write_bytes(low_bytes)
        low.write_bytes(high_bytes)
    assert main(probe) == 0
    out, err = capsys.readouterr()
    assert "wrote the embeddings" in err and json.loads(out)["linear_probe_accuracy"] == 0.0
    assert main(probe[:-2]) == 0 and json.loads(capsys.readouterr().out) == json.loads(out)  # as without a cache


def test_inputs_that_are_not_files_keep_their_digest():
    """File stamps must not invalidate caches keyed by content (a parquet dataset's rows): their
    names' digest is the one written before stamps existed."""
    import hashlib

    from zoo.embed_job import inputs_digest

    names = ["3f2a", "9b1c"]
    assert inputs_digest(names) == f"2 inputs, sha256 {hashlib.sha256(chr(10).join(names).encode()).hexdigest()}"


def counting_embed_calls(monkeypatch, crash_at: int = 0) -> list[int]:
    """Record the sizes of the chunks `Encoder.embed` is called on; the call numbered `crash_at`
    (from 1; 0: none) raises KeyboardInterrupt, as Ctrl-C mid-job."""
    original, calls = zoo.Encoder.embed, []

    def embed(self, inputs, **kwargs):
        calls.append(len(inputs))
        if len(calls) == crash_at:
            raise KeyboardInterrupt
        return original(self, inputs, **kwargs)

    monkeypatch.setattr(zoo.Encoder, "embed", embed)
    return calls


def test_a_resumed_embed_makes_again_the_shards_whose_files_changed(checkpoint, wav_folder, tmp_path, monkeypatch,
                                                                     capsys):
    """Was: the shards' record named the inputs by path only, so a file rewritten between the
    interruption and the rerun kept its old row from a finished shard. Now that shard alone is
    made again, and the result is a fresh job's."""
    output = tmp_path / "e.npy"
    calls = counting_embed_calls(monkeypatch, crash_at=2)
    command = ["embed", str(checkpoint), str(wav_folder), "-o", str(output), "--shard-size", "2"]
    assert main(command) == 130
    soundfile.write(wav_folder / "clip0.wav", np.zeros(4000, np.float32), RATE, subtype="FLOAT")  # in shard 0
    monkeypatch.undo()
    calls = counting_embed_calls(monkeypatch)
    assert main(command) == 0 and calls == [2, 1]
    assert main([*command[:3], "-o", str(tmp_path / "fresh.npy"), "--shard-size", "2"]) == 0
    assert np.array_equal(np.load(output), np.load(tmp_path / "fresh.npy"))


def test_a_file_mended_after_a_failed_embed_keeps_the_finished_shards(checkpoint, wav_folder, tmp_path, monkeypatch,
                                                                       capsys):
    """File stamps in the job's record refused this rerun ("other inputs"), and with it every
    finished shard: the file named by the error is the one a user mends. A shard's own stamp
    keeps the others."""
    shutil.copy(wav_folder / "clip2.wav", tmp_path / "good.wav")
    (wav_folder / "clip2.wav").write_bytes(b"RIFF cut short")
    output = tmp_path / "e.npy"
    command = ["embed", str(checkpoint), str(wav_folder), "-o", str(output), "--shard-size", "2"]
    assert main(command) == 2 and "input 2: cannot decode" in capsys.readouterr().err
    shutil.copy(tmp_path / "good.wav", wav_folder / "clip2.wav")
    calls = counting_embed_calls(monkeypatch)
    assert main(command) == 0 and calls == [1]


def test_a_damaged_or_unrecorded_shard_is_named(checkpoint, wav_folder, tmp_path, monkeypatch, capsys):
    """A damaged shard raised numpy's BadZipFile / EOFError at the join, after the rest was made;
    shards without their job.json were taken whatever job made them (a --layer 1 job's rows went
    into a last-layer output, 2.3 off)."""
    output, parts = tmp_path / "e.npy", tmp_path / "e.npy.parts"
    counting_embed_calls(monkeypatch, crash_at=2)
    command = ["embed", str(checkpoint), str(wav_folder), "-o", str(output), "--shard-size", "2"]
    assert main(command) == 130
    monkeypatch.undo()
    (parts / "shard-00000.npz").write_bytes(b"PK cut short")
    assert main(command) == 2
    assert f"the shard {parts / 'shard-00000.npz'} of an interrupted job is damaged" in capsys.readouterr().err
    (parts / "job.json").unlink()
    assert main(command) == 2
    assert f"{parts} holds shards but not the job.json that says which job made them" in capsys.readouterr().err


def test_env_reports_versions_accelerator_and_cache(offline_cache, capsys, monkeypatch, tmp_path):
    from importlib import metadata

    from huggingface_hub import constants

    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "datasets"))  # was reported as the zoo cache's
    assert main(["env"]) == 0
    lines = dict(line[2:].split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["datasets (ZOO_DATASETS)"] == str(tmp_path / "datasets")
    assert lines["ssl-zoo"] == zoo.__version__ and lines["torch"] == metadata.version("torch")
    assert lines["HF_HUB_OFFLINE"] == "True" and lines["Hugging Face cache"] == constants.HF_HUB_CACHE
    assert lines["accelerator"] == "none (CPU only)" or lines["accelerator"].startswith("CUDA ")


@pytest.mark.parametrize("recipe, data, count", [("graphmae", ["--dataset", "cora"], "epochs"),
                                                 ("paretognn", ["--dataset", "cora"], "steps"),
                                                 ("tjepa", ["--dataset", "adult"], "batch_size")])
def test_a_recipe_setting_of_the_wrong_kind_is_named(recipe, data, count, tmp_path, capsys):
    """A fraction for a whole number (batch_size=2.5 on MUTAG) was a TypeError in the batching."""
    assert main(["pretrain", recipe, *data, "-o", str(tmp_path / "run"), "--set", "lr=x"]) == 2
    assert "--set lr='x': the recipe's lr is " in capsys.readouterr().err
    assert main(["pretrain", recipe, *data, "-o", str(tmp_path / "run"), "--set", f"{count}=2.5"]) == 2
    assert f"--set {count}=2.5: the recipe's {count} is " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe, option", [("hubert", "--clusters"), ("hubert", "--kmeans-frames"),
                                            ("mert", "--codebooks"), ("mert", "--clusters"),
                                            ("beats", "--codebook-size"), ("beats", "--codebook-dim")])
def test_a_count_of_zero_is_refused_when_parsed(recipe, option, tmp_path, capsys):
    """Before minutes of feature extraction, not in k-means or the quantizer afterwards."""
    with pytest.raises(SystemExit):
        main(["pretrain", recipe, "--data", "x", "-o", str(tmp_path / "run"), option, "0"])
    assert f"argument {option}: 0 is not a positive number" in capsys.readouterr().err


def test_outputs_are_checked_before_the_work_and_never_replace_an_input(tmp_path, capsys):
    """Were: `-o` naming an input replaced the table with its embeddings; a folder's earlier
    output was read back as an input on a rerun; an output under a file, in /proc or named
    like a folder raised NotADirectoryError / FileNotFoundError / IsADirectoryError tracebacks,
    the last after the work was done."""
    table = tmp_path / "rows" / "adult.csv"
    table.parent.mkdir()
    table.write_bytes((Path(zoo.__file__).parent / "examples" / "tabular" / "adult_test_rows.csv").read_bytes())
    before = table.read_bytes()
    assert main(["embed", "tjepa-adult", str(table), "-o", str(table)]) == 2
    assert "is also one of the inputs" in capsys.readouterr().err and table.read_bytes() == before
    for _ in range(2):  # the second run finds its own emb.parquet in the folder and leaves it out
        assert main(["embed", "tjepa-adult", str(table.parent), "-o", str(table.parent / "emb.parquet")]) == 0
        assert "1 table, array (6, 64)" in capsys.readouterr().err
    (tmp_path / "d.npy").mkdir()
    for output, message in ((table / "a.npy", r"adult.csv' is a file, not a folder"),
                            ("/proc/zoo-test/a.npy", "cannot write output in '/proc/zoo-test'"),
                            (tmp_path / "d.npy", r"d.npy' is a folder; name a file in it")):
        for command in (["embed", "tjepa-adult", str(table)], ["embed", "graphmae-mutag", "--dataset", "mutag",
                                                                "--data", str(shared_path("data", "tu"))]):
            assert main([*command, "-o", str(output)]) == 2
            assert re.search(message, capsys.readouterr().err), (command, output)
    assert main(["probe", "hubert-tiny-fsdd", "--data", str(table.parent), "--cache", str(table / "c")]) == 2
    err = capsys.readouterr().err
    assert "cannot write --cache in" in err and "is a file, not a folder" in err
    assert sorted(p.name for p in table.parent.iterdir()) == ["adult.csv", "emb.parquet"]  # no .parts left


def test_a_misspelt_option_is_refused_by_its_command_with_the_nearest_option(checkpoint, tmp_path, capsys):
    """Was `zoo: error: unrecognized arguments: --layr 3` under zoo's own usage: neither the command
    nor the option meant were named."""
    with pytest.raises(SystemExit, match="2"):
        main(["embed", str(checkpoint), "a.wav", "-o", str(tmp_path / "a.npy"), "--layr", "3"])
    err = capsys.readouterr().err
    assert "usage: zoo embed" in err
    assert "zoo embed: error: unrecognized arguments: --layr 3; did you mean --layer? `zoo embed -h` lists" in err
    with pytest.raises(SystemExit, match="2"):
        main(["pretrain", "hubert", "--data", "x", "-o", str(tmp_path / "run"), "--stesp", "3"])
    assert "zoo pretrain hubert: error: unrecognized arguments: --stesp 3; did you mean --steps?" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit, match="2"):  # a misspelt required option: only "-o/--output is required"
        main(["embed", str(checkpoint), "a.wav", "--out", str(tmp_path / "a.npy")])
    assert "required: -o/--output; --out is no option: did you mean --output?" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["embed", "predict"])
def test_inputs_are_not_named_as_required_when_the_command_is_incomplete(command, capsys):
    """INPUTS may be left out for --dataset; argparse listed them as required (`name, inputs, -o/--output`)."""
    with pytest.raises(SystemExit, match="2"):
        main([command])
    assert "the following arguments are required: name, -o/--output" in capsys.readouterr().err


def test_a_missing_input_is_refused_before_the_model_loads(checkpoint, tmp_path, capsys, monkeypatch):
    """Was found by the processor after the model loaded (a download, for a Hub model), leaving out.npy.parts/."""
    missing = str(tmp_path / "missing.wav")
    for command, output in [("embed", "out.npy"), ("predict", "out.csv")]:
        monkeypatch.setattr("zoo.hub.load", lambda *args, **kwargs: pytest.fail("the model was loaded"))
        assert main([command, str(checkpoint), missing, "-o", str(tmp_path / output)]) == 2
        assert f"zoo: error: input {missing!r} does not exist; check the path" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ckpt"]


def test_every_option_with_a_default_says_it(capsys):
    """`zoo COMMAND -h` tells each option's default (was unsaid for finetune's --mode full, --eval-batch-size 64,
    --weight-decay 0.01, --seed 0, embed's --shard-size 1024 and publish's --commit-message)."""
    parser = zoo.cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    unsaid = [f"zoo {name} {action.option_strings[-1]}" for name, command in commands.choices.items()
              for action in command._actions
              if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
              and "default" not in (action.help or "")]
    assert unsaid == []


@pytest.mark.parametrize("option, value, said", [
    ("--lr", "-1", "argument --lr: -1.0 is not a positive number"),
    ("--lr", "0", "argument --lr: 0.0 is not a positive number"),  # not replaced by the default
    ("--weight-decay", "-1", "argument --weight-decay: -1.0 is not 0 or a positive number"),
    ("--time-limit", "-5", "argument --time-limit: -5.0 is not 0 or a positive number"),
])
def test_negative_training_settings_are_refused_when_parsed(option, value, said, checkpoint, tmp_path, monkeypatch,
                                                             capsys):
    """Was: refused as TrainConfig's `lr=-1.0` (its field's name), and by zoo finetune only after
    the model and data had loaded; zoo pretrain's --steps -1 as `steps=-1`."""
    monkeypatch.setattr("zoo.hub.load", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit):
        main(["finetune", str(checkpoint), "--data", str(tmp_path), "-o", str(tmp_path / "run"), option, value])
    assert said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "hubert", "--data", str(tmp_path), "-o", str(tmp_path / "run"), option, value])
    assert said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "hubert", "--data", str(tmp_path), "-o", str(tmp_path / "run"), "--steps", "-1"])
    assert "argument --steps: -1 is not a positive number" in capsys.readouterr().err


def test_a_family_module_missing_a_package_names_the_package(tmp_path, monkeypatch):
    """A package a family's pretrain module imports, missing here, was reported as the family
    having "no pretrain module yet"."""
    from zoo import registry
    from zoo.cli import family_module

    package = tmp_path / "fake_family"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "pretrain.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "family_modules", lambda: {"fake": "fake_family"})
    with pytest.raises(ConfigError, match="fake pretrain needs the module 'a_package_that_is_not_installed', which is "
                                          "not installed here"):
        family_module("fake", "pretrain")
    with pytest.raises(ConfigError, match="family 'fake' has no convert module yet"):
        family_module("fake", "convert")


@pytest.mark.parametrize("command", [["pretrain", "hubert"], ["pretrain", "mert"], ["pretrain", "gmml"],
                                     ["pretrain", "graphmae", "--dataset", "mutag"],
                                     ["pretrain", "tjepa", "--dataset", "adult"],
                                     ["probe", "graphmae-mutag", "--dataset", "mutag"],
                                     ["embed", "graphmae-mutag", "--dataset", "mutag"]])
def test_a_data_folder_given_twice_is_refused_where_one_is_read(command, tmp_path, capsys):
    """argparse kept the last --data: `zoo pretrain hubert --data A --data B` trained on B alone and
    said nothing, where `zoo pretrain beats` reads both."""
    with pytest.raises(SystemExit) as exit:
        main([*command, "--data", "A", "--data", "B", "-o", str(tmp_path / "out")])
    assert exit.value.code == 2
    assert "--data is given twice ('A', then 'B'); this command reads one: give it once" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def every_option(parser: argparse.ArgumentParser, prog: str = "zoo"):
    """(command, option action) of a parser and its subcommands' parsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_option(sub, f"{prog} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield prog, action


def test_every_option_has_help_that_gives_its_default():
    """README says `zoo COMMAND -h` gives each option with its default: --seed of every recipe and
    --device of the graph and table recipes had no help at all."""
    from zoo import registry
    from zoo.cli import build_parser

    silent = []
    for recipe in [None, *sorted(registry.family_modules())]:
        for command, action in every_option(build_parser(recipe)):
            default = action.default
            if recipe and not command.startswith(f"zoo pretrain {recipe}") or action.help == argparse.SUPPRESS:
                continue
            if not action.help or default not in (None, False, [], argparse.SUPPRESS) and "default" not in action.help:
                silent.append(f"{command} {action.option_strings[-1]}")
    assert not silent, silent


def test_the_zoos_warnings_print_as_the_commands_messages(tmp_path):
    """A warning of the zoo printed `.../bin/zoo:6: UserWarning: ...` and then the script's line
    `sys.exit(main())`, where its errors print `zoo: error: ...`."""
    from PIL import Image

    dark = tmp_path / "dark.png"
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint16)).save(dark)
    run = subprocess.run([sys.executable, "-m", "zoo.cli", "embed", "gmml-vit-tiny-cifar10", str(dark),
                          "-o", str(tmp_path / "e.npy"), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith(f"zoo: warning: image file '{dark}' is a mode 'I;16' image whose values are at "
                                 "most 200"), run.stderr
    assert "UserWarning" not in run.stderr and "main()" not in run.stderr


def test_the_command_puts_back_pythons_warning_format():
    import warnings

    python_format = warnings.formatwarning
    main(["list", "nothing-is-called-this"])
    assert warnings.formatwarning is python_format
    assert issubclass(zoo.ZooWarning, UserWarning)


def test_the_version_and_python_dash_m_zoo():
    """There was no `zoo --version`, nor `python -m zoo` where the script is not on PATH."""
    run = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == f"ssl-zoo {zoo.__version__}\n", run


def test_embed_says_which_files_of_a_folder_it_left_out(checkpoint, wav_folder, tmp_path, capsys):
    """Files of other endings were dropped without a word: the job said "3 inputs" of a folder that
    held 5. It still embeds the recordings alone, and says what it left out, by ending."""
    (wav_folder / "labels.csv").write_text("file,label\n")
    (wav_folder / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match=re.escape(f"left out 2 file(s) in '{wav_folder}' that the encoder does not "
                                                   "read (1 .csv, 1 .txt)")):
        assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (3, 32)


def test_embed_names_the_broken_links_of_a_folder(checkpoint, wav_folder, tmp_path):
    """A link to a moved recording was left out without a word (the job wrote one row fewer),
    where the same path passed by name is an error."""
    (wav_folder / "moved.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.warns(UserWarning, match=re.escape(f"left out 1 entry in '{wav_folder}' that is no readable file (a "
                                                   "link to a moved or deleted file?): 'moved.wav'; fix or remove it")):
        assert main(["embed", str(checkpoint), str(wav_folder), "-o", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (3, 32)
