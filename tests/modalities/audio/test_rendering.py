"""Rendered music data: the note grid and its labels, the CSV loader, and (where Debian's
fluidsynth and GM soundfont are installed) an end-to-end render of a few notes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from zoo.errors import InputError


def test_gm_families_and_the_note_grid():
    from modalities.audio.rendering import FAMILIES, PITCHED_FAMILIES, family_of, note_grid

    assert len(FAMILIES) == 16
    assert family_of(0) == "piano" and family_of(40) == "strings" and family_of(127) == "sound_effects"
    with pytest.raises(InputError, match="GM program 128"):
        family_of(128)
    grid = note_grid(programs_per_family=2, pitches=(60, 61), velocities=(100,))
    assert len(grid) == len(PITCHED_FAMILIES) * 2 * 2
    assert {family_of(program) for program, _, _ in grid} == set(PITCHED_FAMILIES)


def test_load_notes_names_the_command_when_missing(tmp_path):
    from modalities.audio.rendering import load_notes

    with pytest.raises(InputError, match="modalities.audio.rendering notes -o"):
        load_notes(tmp_path)


def test_counts_below_one_are_refused(tmp_path, capsys):
    """`--limit` sliced the note grid: 0 failed writing notes.csv (an IndexError) and -3 rendered all
    but the last 3 notes."""
    from modalities.audio.rendering import main, render_clips, render_notes
    from zoo.errors import ConfigError

    for argv in (["notes", "--limit", "0"], ["notes", "--limit", "-3"], ["clips", "--max-scores", "0"],
                 ["notes", "--workers", "0"], ["clips", "--clip-seconds", "0"]):
        with pytest.raises(SystemExit) as exit:
            main([*argv, "-o", str(tmp_path / "out")])
        assert exit.value.code == 2 and "not a positive number" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"limit=0; render at least one note \(--limit N, N >= 1\)"):
        render_notes(tmp_path / "out", limit=0)
    with pytest.raises(ConfigError, match=r"max_scores=-1; render at least one score"):
        render_clips(tmp_path / "out", max_scores=-1)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs Debian's fluidsynth and fluid-soundfont-gm "
                    "(apt-get install fluidsynth fluid-soundfont-gm)")
def test_render_a_few_notes_end_to_end(tmp_path):
    import soundfile
    from modalities.audio.rendering import SOUNDFONT, load_notes, render_notes

    if not SOUNDFONT.is_file():
        pytest.skip(f"{SOUNDFONT} is absent: apt-get install fluid-soundfont-gm")
    render_notes(tmp_path, sampling_rate=16000, seconds=1.0, limit=3, workers=1, progress=False)
    files, table = load_notes(tmp_path)
    assert list(table["pitch"]) == [48, 49, 50] and set(table["family"]) == {"piano"}
    assert list(table["pitch_class"]) == [0, 1, 2]
    for path in files:
        audio, rate = soundfile.read(str(path))
        assert rate == 16000 and audio.ndim == 1 and len(audio) == 16000 and np.abs(audio).max() > 1e-3
    first = files[0].stat().st_mtime_ns
    render_notes(tmp_path, sampling_rate=16000, seconds=1.0, limit=3, workers=1, progress=False)
    assert files[0].stat().st_mtime_ns == first  # resumed: existing notes are not rendered again


def test_a_missing_music_package_or_apt_get_is_named_before_anything_is_made(tmp_path, monkeypatch):
    """Without the `music` extra, rendering failed inside a worker with `No module named 'mido'`
    after making the output folder; without apt-get, with a FileNotFoundError for it."""
    import importlib.util

    import modalities.audio.rendering as rendering
    from zoo.errors import ConfigError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name in ("mido", "music21") else find_spec(name))
    with pytest.raises(ConfigError, match=r"rendering music needs mido, of the `music` extra: `make install "):
        rendering.render_notes(tmp_path / "notes", limit=1)
    with pytest.raises(ConfigError, match=r"rendering music needs music21, of the `music` extra"):
        rendering.render_clips(tmp_path / "clips", max_scores=1)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(rendering.shutil, "which", lambda program: None)  # no fluidsynth and no apt-get
    with pytest.raises(ConfigError, match="fluidsynth or .* is missing and could not be installed; run `apt-get "):
        rendering.ensure_fluidsynth()


def test_a_score_stopped_while_its_clips_are_written_is_rendered_again(tmp_path, monkeypatch):
    """A score counted as done once any of its clips existed: a run stopped after 2 of its 6 clips
    kept those 2 for good. It is done once its last clip is written (a hidden record of its clips).
    The score's rendering (music21, fluidsynth) is stood in for by a 30 s tone, so that only the
    file handling is exercised."""
    from modalities.audio import rendering

    score = "corpus/bach/bwv1.6.mxl"
    tone = 0.5 * np.sin(np.arange(30 * 8000) / 8000 * 2 * np.pi * 440).astype(np.float32)
    monkeypatch.setattr(rendering, "score_audio", lambda path, rate, rng: tone)
    write, written = rendering.write_flac, []

    def stopping(path, audio, rate):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path.name)
        write(path, audio, rate)

    job = (score, str(tmp_path), 8000, 5.0, 0)
    monkeypatch.setattr(rendering, "write_flac", stopping)
    with pytest.raises(KeyboardInterrupt):
        rendering.render_score(job)
    monkeypatch.setattr(rendering, "write_flac", write)
    clips = rendering.render_score(job)
    assert [start for _, start in clips] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert rendering.render_score(job) == clips and len(list(tmp_path.glob("*.flac"))) == 6


#: `rendering notes` with each note's FluidSynth stood in for by a child that sleeps while the note's
#: file is being written; argv: marker (on every command line of the run), pid folder, output folder
SLOW_RENDER = """
import os, signal, subprocess, sys
from pathlib import Path

from modalities.audio import rendering
from zoo.io import atomic_write_with

marker, pids, output = sys.argv[1:]


def slow_note(job):
    program, pitch, velocity, folder, _, _ = job
    (Path(pids) / str(os.getpid())).touch()
    sleep = [sys.executable, "-c", "import time; time.sleep(60)", marker]
    atomic_write_with(Path(folder) / rendering.note_name(program, pitch, velocity),
                      lambda tmp: (tmp.write_text("half"), subprocess.run(sleep, check=True)))
    return rendering.note_name(program, pitch, velocity)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal, whoever started pytest
    rendering.render_note = slow_note
    rendering.require_music_packages = rendering.ensure_fluidsynth = lambda *names: None
    sys.exit(rendering.main(["notes", "-o", output, "--limit", "24", "--workers", "2"]))
"""


def live_processes() -> dict[int, bytes]:
    """The command line of every process but zombies."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:  # one that just ended
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="looks for surviving processes in /proc (Linux)")
@pytest.mark.parametrize("signum, to_group, status", [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)],
                         ids=["sigterm", "ctrl-c"])
def test_a_stopped_render_stops_its_workers_and_their_fluidsynth(tmp_path, signum, to_group, status):
    """A SIGTERM ended `rendering notes` alone (killed by it, at once): its two workers, re-parented
    to pid 1, went on rendering (22 more notes, each a FluidSynth, measured with the real one) and
    then waited for good. Ctrl-C waited for every job left (34 more notes in 6 s with FluidSynth;
    here, with jobs of 60 s, past the test's 10 s). Now both stop the workers and their children
    within a second, exit 143 and 130, and leave no file, whole, half written or temporary."""
    marker, pids, output = f"zoo-render-test-{uuid.uuid4().hex}".encode(), tmp_path / "pids", tmp_path / "notes"
    pids.mkdir()
    script = tmp_path / "slow_render.py"
    script.write_text(SLOW_RENDER)

    def left() -> list[int]:  # the run's processes: each command line holds the marker, each worker wrote its pid
        workers = {int(path.name) for path in pids.iterdir()}
        return [pid for pid, command in live_processes().items() if marker in command or pid in workers]

    import modalities

    checkout = str(Path(modalities.__file__).parent.parent)  # the code under test, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")]))}
    with (tmp_path / "stderr.txt").open("w") as stderr:
        run = subprocess.Popen([sys.executable, str(script), marker, str(pids), str(output)], stderr=stderr, env=env,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(marker in command and b"sleep" in command
                                                  for command in live_processes().values()) < 2:
            time.sleep(0.1)  # until both workers are in a note
        time.sleep(0.5)  # and past subprocess.Popen, which loses its child when stopped before it returns
        os.killpg(run.pid, signum) if to_group else run.send_signal(signum)
        sent = time.monotonic()
        try:
            exit_status = run.wait(timeout=10)
        except subprocess.TimeoutExpired:
            exit_status = None
        seconds = time.monotonic() - sent
        survivors = left()
    finally:
        if run.poll() is None:
            run.kill()
        for pid in left():
            os.kill(pid, signal.SIGKILL)
        run.wait()
    assert (exit_status, survivors) == (status, []), (tmp_path / "stderr.txt").read_text()[-2000:]
    assert seconds < 5 and len(list(pids.iterdir())) == 2
    assert list(output.iterdir()) == []
    assert "a rerun of the same command keeps the files written" in (tmp_path / "stderr.txt").read_text()
