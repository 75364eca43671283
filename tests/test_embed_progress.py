"""`zoo embed`'s bar moves a group of inputs at a time, not a shard (1,024 inputs) at a time,
and a long recording's windows show as they are done: the bar stood still until a shard of
1,024 files, or a recording of an hour, was embedded."""

from __future__ import annotations

import numpy as np
import soundfile
import tqdm.auto

import zoo.encoder
from zoo.embed_job import run_embed_job


class RecordedBar(tqdm.auto.tqdm):
    """tqdm, recording its updates and postfixes."""

    updates: list[float] = []
    postfixes: list[str] = []

    def update(self, n=1):
        RecordedBar.updates.append(n)
        return super().update(n)

    def set_postfix_str(self, s="", refresh=True):
        RecordedBar.postfixes.append(s)
        return super().set_postfix_str(s, refresh)


def write_clips(folder, seconds):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, length in enumerate(seconds):
        samples = (0.1 * rng.standard_normal(int(length * 16000))).astype(np.float32)
        soundfile.write(folder / f"{index:02d}.wav", samples, 16000)
    return sorted(str(path) for path in folder.iterdir())


def test_the_jobs_bar_moves_a_group_at_a_time(tmp_path, micro_hubert, monkeypatch):
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordedBar)
    monkeypatch.setattr(zoo.encoder, "PREPARE_GROUP", 4)
    RecordedBar.updates, RecordedBar.postfixes = [], []
    files = write_clips(tmp_path / "clips", [0.1] * 10)
    run_embed_job(micro_hubert, files, tmp_path / "out.npy", progress=True)
    assert RecordedBar.updates == [4, 4, 2, 0]  # was [10]: the shard's, at its end
    assert RecordedBar.postfixes == []  # no recording was cut into windows


def test_a_long_recordings_windows_show_as_they_are_done(tmp_path, micro_hubert, monkeypatch):
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordedBar)
    RecordedBar.updates, RecordedBar.postfixes = [], []
    micro_hubert.processor.chunk_seconds = 0.1  # a 1 s recording is 11 windows of whole frames
    files = write_clips(tmp_path / "long", [1.0])
    run_embed_job(micro_hubert, files, tmp_path / "out.npy", batch_size=4, progress=True)
    assert RecordedBar.postfixes == ["window 1 of 11", "window 5 of 11", "window 9 of 11", ""]
    assert RecordedBar.updates == [1, 0]


def test_no_progress_hides_the_bars_of_zoo_embed_and_predict(tmp_path, capsys):
    """`zoo embed` and `zoo predict` had no --no-progress, which `zoo finetune` and `zoo pretrain` take."""
    from helpers import shared_path

    from zoo.cli import main

    clips = [str(shared_path("data", "fsdd", "recordings", f"{digit}_george_0.wav")) for digit in range(3)]
    tu = str(shared_path("data", "tu"))
    for command in (["embed", "hubert-tiny-fsdd", *clips, "-o", str(tmp_path / "a.npy")],
                    ["embed", "graphmae-mutag", "--dataset", "mutag", "--data", tu, "-o", str(tmp_path / "b.npy")]):
        assert main(command) == 0
        assert "item/s]" in capsys.readouterr().err, command
        assert main([*command, "--no-progress"]) == 0
        assert "item/s]" not in capsys.readouterr().err, command


class Stream:
    """stderr as a terminal or as a batch job's log file."""

    def __init__(self, terminal):
        self.terminal = terminal

    def isatty(self):
        return self.terminal

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def test_bars_written_to_a_log_redraw_every_30_seconds(monkeypatch):
    """A training bar redrawn every 0.1 s (tqdm's default) wrote 1.8 MB an hour into a job's log."""
    from zoo.progress import progress_bar

    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    for terminal, interval in [(True, 0.1), (False, 30.0)]:
        monkeypatch.setattr("sys.stderr", Stream(terminal))
        with progress_bar(total=3) as bar:
            assert bar.mininterval == interval
    with progress_bar(total=3, progress=False) as bar:
        assert bar.disable


def test_tqdms_own_setting_of_the_interval_wins():
    """tqdm reads TQDM_MININTERVAL when it is imported: in a process of its own, stderr a pipe."""
    import os
    import subprocess
    import sys

    code = "from zoo.progress import progress_bar; print(progress_bar(total=3).mininterval)"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TQDM_MININTERVAL": "2"},
                         capture_output=True, text=True, check=True)
    assert run.stdout == "2.0\n"
