"""Music made here: General-MIDI notes and music21 scores rendered by FluidSynth.

The zoo commits no audio. This module makes two sets for the audio families (BEATs,
MERT) from Debian's `fluidsynth` and its General-MIDI soundfont (FluidR3_GM.sf2):

- `notes`: an NSynth-like labelled set of single notes: several GM programs per
  instrument family (program // 8), pitches over three octaves at one velocity; labels
  family, program, pitch, pitch class, velocity in notes.csv;
- `clips`: the music21 corpus (Bach chorales, Haydn, Mozart, ...) with seeded GM
  instruments per part, cut into non-overlapping clips listed in clips.csv.

Every file is written under a temporary name and renamed, and existing files are
skipped, so an interrupted run resumes. A SIGTERM (or SIGUSR1) or Ctrl-C stops the render
processes with it (exit status 128 + the signal, 130 for Ctrl-C):

    python -m modalities.audio.rendering notes -o runs/notes16k
    python -m modalities.audio.rendering clips -o runs/clips16k --max-scores 60
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from zoo.errors import ConfigError, InputError, Stopped, exit_status, on_stop_signals
from zoo.io import atomic_write_text, atomic_write_with
from zoo.options import positive_float, positive_int
from zoo.progress import progress_bar

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
FAMILIES = ("piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
            "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive", "sound_effects")
#: the families whose notes have a clear pitch (sound effects and percussion are left out)
PITCHED_FAMILIES = FAMILIES[:13]
PROGRAMS_PER_FAMILY = 4
PITCHES = tuple(range(48, 84))
VELOCITIES = (100,)
SILENT_PEAK = 1e-3
#: seconds a FluidSynth render may take before the score is skipped
RENDER_TIMEOUT = 300
#: seconds a stopped render process has to end (its FluidSynth killed, its temporary files removed) before it is killed
STOP_GRACE = 10


def ensure_fluidsynth() -> None:
    """Install Debian's fluidsynth and GM soundfont if missing (needs root and a Debian mirror)."""
    if shutil.which("fluidsynth") and SOUNDFONT.is_file():
        return
    install = ["apt-get", "install", "-y", "-q", "fluidsynth", "fluid-soundfont-gm"]
    if shutil.which("apt-get") and subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(install, capture_output=True)
    if not (shutil.which("fluidsynth") and SOUNDFONT.is_file()):
        raise ConfigError(f"fluidsynth or {SOUNDFONT} is missing and could not be installed; run "
                          "`apt-get install fluidsynth fluid-soundfont-gm` as root")


def require_music_packages(*names: str) -> None:
    """Refuse a missing package of the `music` extra before anything is rendered: its
    ModuleNotFoundError came from inside a worker process, after the output folder was made."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"rendering music needs {', '.join(missing)}, of the `music` extra: `make install "
                          "EXTRAS=test,music`, or `pip install -e '.[music]'` in the checkout")


def family_of(program: int) -> str:
    """General-MIDI family of a program number 0-127 (8 programs per family)."""
    if not 0 <= program < 128:
        raise InputError(f"GM program {program} is out of range 0-127")
    return FAMILIES[program // 8]


def note_grid(programs_per_family: int = PROGRAMS_PER_FAMILY, pitches: Sequence[int] = PITCHES,
              velocities: Sequence[int] = VELOCITIES) -> list[tuple[int, int, int]]:
    """(program, pitch, velocity) of every note: the first programs of each pitched family."""
    programs = [8 * family + offset for family in range(len(PITCHED_FAMILIES)) for offset in range(programs_per_family)]
    return [(program, pitch, velocity) for program in programs for pitch in pitches for velocity in velocities]


def render_midi(midi: Path, wav: Path, sampling_rate: int) -> np.ndarray:
    """FluidSynth render of a MIDI file, mixed to mono float32."""
    import soundfile

    subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-F", str(wav), "-r", str(sampling_rate), str(SOUNDFONT),
                    str(midi)], check=True, capture_output=True, timeout=RENDER_TIMEOUT)
    audio, _ = soundfile.read(str(wav), dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def write_flac(path: Path, audio: np.ndarray, sampling_rate: int) -> None:
    """Write atomically: a temporary file of its own in the same folder (two workers never share
    one), then a rename."""
    import soundfile

    atomic_write_with(path, lambda tmp: soundfile.write(str(tmp), audio, sampling_rate, format="FLAC"))


def note_name(program: int, pitch: int, velocity: int) -> str:
    """A note's file name, zero-padded (`p000_n048_v100.flac`): `render_note` skips a note whose
    file exists, so a rerun finds its earlier renders under this name."""
    return f"p{program:03d}_n{pitch:03d}_v{velocity:03d}.flac"


def render_note(job: tuple[int, int, int, str, int, float]) -> Optional[str]:
    """Render one note (held 75 % of the clip) unless its file exists; None when it is silent."""
    import mido

    program, pitch, velocity, folder, sampling_rate, seconds = job
    target = Path(folder) / note_name(program, pitch, velocity)
    if target.exists():
        return target.name
    ticks = 480
    song = mido.MidiFile(ticks_per_beat=ticks)
    track = mido.MidiTrack()
    song.tracks.append(track)
    held = int(mido.second2tick(0.75 * seconds, ticks, 500000))
    track.extend([mido.Message("program_change", program=program, time=0),
                  mido.Message("note_on", note=pitch, velocity=velocity, time=0),
                  mido.Message("note_off", note=pitch, velocity=0, time=held)])
    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp) / "note.mid"
        song.save(str(midi))
        audio = render_midi(midi, Path(tmp) / "note.wav", sampling_rate)
    length = int(seconds * sampling_rate)
    audio = np.pad(audio[:length], (0, max(0, length - len(audio))))
    if np.abs(audio).max() < SILENT_PEAK:
        return None
    write_flac(target, audio, sampling_rate)
    return target.name


def render_notes(out_dir: str | Path, sampling_rate: int = 16000, seconds: float = 2.0, limit: Optional[int] = None,
                 workers: int = 2, progress: bool = True) -> Path:
    """Render the note grid into `out_dir` and write notes.csv; returns the folder."""
    if limit is not None and limit < 1:  # a slice: 0 rendered nothing and failed writing notes.csv, -3 all but 3
        raise ConfigError(f"limit={limit}; render at least one note (--limit N, N >= 1), or leave it out for all")
    require_music_packages("mido")
    ensure_fluidsynth()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    grid = note_grid()[:limit]
    jobs = [(program, pitch, velocity, str(folder), sampling_rate, seconds) for program, pitch, velocity in grid]
    names = render_all(render_note, jobs, workers, progress, "render notes", chunksize=8)
    rows = [dict(file=name, program=program, family=family_of(program), pitch=pitch, pitch_class=pitch % 12,
                 velocity=velocity) for name, (program, pitch, velocity) in zip(names, grid) if name is not None]
    if not rows:
        raise InputError(f"all {len(grid)} notes rendered silent; check that {SOUNDFONT} is a General-MIDI soundfont")
    write_csv(folder / "notes.csv", rows)
    print(f"{len(rows)} notes ({len(grid) - len(rows)} silent dropped), {len(rows) * seconds:.0f} s of audio "
          f"in {folder}", file=sys.stderr)
    return folder


def render_all(render: Callable[[Any], Any], jobs: Sequence[Any], workers: int, progress: bool, desc: str,
               chunksize: int = 1) -> list[Any]:
    """`render` of each job, in order, in `workers` processes. On a SIGTERM (or SIGUSR1), Ctrl-C or
    a failed job the processes are stopped before the error goes on up (`stop_workers`): a SIGTERM
    ended this process alone, and its two workers, re-parented to pid 1, went on starting FluidSynth
    and then waited for good; Ctrl-C waited for every job left."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=handle_signals_in_worker)
    try:
        with stopped_by_signals():
            results = list(progress_bar(pool.map(partial(render_in_worker, render), jobs, chunksize=chunksize),
                                        total=len(jobs), progress=progress, desc=desc))
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown()
    return results


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Within the block, a SIGTERM or SIGUSR1 raises `Stopped`, as Ctrl-C raises KeyboardInterrupt,
    so that `render_all` can stop its workers; their default ended the process at once. Python
    takes signals in the main thread only; elsewhere the defaults stay."""

    def stop(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    with on_stop_signals(stop):
        yield


def handle_signals_in_worker() -> None:
    """A render process leaves Ctrl-C to its parent, which stops it (a terminal sends Ctrl-C to
    both: each worker printed a KeyboardInterrupt traceback and went on to its next job), and
    ends on a SIGTERM as on an error (`render_in_worker`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, exit_on_signal)


#: whether this worker is in `render_in_worker`'s job, where a SIGTERM unwinds (`exit_on_signal`)
in_job = False


def exit_on_signal(signum: int, frame: Any) -> None:
    """A worker's SIGTERM during a job is an exception, so that `subprocess.run` kills its FluidSynth
    and the temporary files are removed on the way out (the default handler ended the process at
    once, FluidSynth left running); between jobs the worker ends at once: ProcessPoolExecutor's code
    there would hand the exception back as a result and go on to the next job. Later SIGTERMs (the
    executor sends its own once a worker has ended) are ignored: one raised while `subprocess.run`
    was killing FluidSynth left it running and the worker waiting on it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if in_job:
        raise SystemExit(128 + signum)
    os._exit(128 + signum)


def render_in_worker(render: Callable[[Any], Any], job: Any) -> Any:
    """`render(job)`; the worker ends once a SIGTERM has unwound the job (`exit_on_signal`), rather
    than handing the SystemExit back as the job's result and going on to the next job."""
    global in_job
    try:
        in_job = True
        return render(job)
    except SystemExit as stop:
        os._exit(stop.code)
    finally:
        in_job = False


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Drop the jobs not begun and end the running ones (SIGTERM, then SIGKILL after `STOP_GRACE`
    seconds). The executor has no public handle on its processes before Python 3.14's
    `terminate_workers`, hence `_processes`."""
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(STOP_GRACE)
        if process.is_alive():
            process.kill()
            process.join()


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write `rows` under a temporary name, then rename, so an interrupted run leaves no partial
    table; the first row's keys are the header, so there must be one."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write_with(path, write)


def load_notes(folder: str | Path):
    """(files, table) of a rendered notes folder; the table has the notes.csv columns."""
    import pandas as pd

    path = Path(folder) / "notes.csv"
    if not path.is_file():
        raise InputError(f"{path} does not exist; make the notes with "
                         f"`python -m modalities.audio.rendering notes -o {folder}`")
    table = pd.read_csv(path)
    return [Path(folder) / name for name in table["file"]], table


CORPUS_COMPOSERS = ("bach", "haydn", "mozart", "beethoven", "handel", "schubert", "joplin", "chopin")
#: GM programs the clips draw from for each part: pianos, organs, guitars, strings, brass, reeds, pipes
CLIP_PROGRAMS = (0, 1, 4, 6, 16, 19, 24, 25, 32, 40, 41, 42, 48, 56, 57, 60, 64, 65, 68, 71, 73, 74)


def corpus_paths(max_scores: Optional[int]) -> list[Path]:
    """Score files of the music21 corpus, composers interleaved so that any prefix is varied."""
    from music21 import corpus

    lists = [sorted(Path(str(p)) for p in corpus.getComposer(name)) for name in CORPUS_COMPOSERS]
    longest = max(len(lst) for lst in lists)
    interleaved = [lst[i] for i in range(longest) for lst in lists if i < len(lst)]
    return interleaved[:max_scores]


def render_score(job: tuple[str, str, int, float, int]) -> list[tuple[str, float]]:
    """Render one score with seeded GM instruments and cut it into clips; (file, start) of each.
    A score is done once its last clip is written (a hidden record of its clips): a score stopped
    midway counted as done when any of its clips existed, and kept 2 of its 6 for good."""
    score_path, folder, sampling_rate, clip_seconds, seed = job
    stem = f"{Path(score_path).parent.name}_{Path(score_path).stem}".replace(" ", "_")
    done = Path(folder) / f".{stem}.done"
    if done.is_file():
        return [(name, start) for name, start in json.loads(done.read_text(encoding="utf-8"))]
    audio = score_audio(score_path, sampling_rate, np.random.default_rng([seed, zlib.crc32(stem.encode())]))
    if audio is None:
        return []
    length = int(clip_seconds * sampling_rate)
    clips = []
    for index in range(len(audio) // length):
        piece = audio[index * length : (index + 1) * length]
        if np.abs(piece).max() < SILENT_PEAK:
            continue
        name = f"{stem}_{index:04d}.flac"
        write_flac(Path(folder) / name, piece, sampling_rate)
        clips.append((name, index * clip_seconds))
    atomic_write_text(done, json.dumps(clips))
    return clips


def score_audio(score_path: str, sampling_rate: int, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A score rendered through FluidSynth with GM instruments drawn by `rng`, as mono audio; None
    (said on stderr) for a score music21 cannot read or write."""
    from music21 import converter, instrument

    try:
        score = converter.parse(score_path)
        for part in score.parts:
            for old in part.recurse().getElementsByClass(instrument.Instrument):
                part.remove(old, recurse=True)
            chosen = instrument.instrumentFromMidiProgram(int(rng.choice(CLIP_PROGRAMS)))
            part.insert(0, chosen)
        with tempfile.TemporaryDirectory() as tmp:
            midi = Path(tmp) / "score.mid"
            score.write("midi", fp=str(midi))
            return render_midi(midi, Path(tmp) / "score.wav", sampling_rate)
    except Exception as err:  # music21 raises many types for scores it cannot read or write
        print(f"skipped {score_path}: {err}", file=sys.stderr)
        return None


def render_clips(out_dir: str | Path, sampling_rate: int = 16000, clip_seconds: float = 5.0,
                 max_scores: Optional[int] = None, seed: int = 0, workers: int = 2, progress: bool = True) -> Path:
    """Render music21 corpus scores into clips and write clips.csv; returns the folder."""
    if max_scores is not None and max_scores < 1:
        raise ConfigError(f"max_scores={max_scores}; render at least one score (--max-scores N, N >= 1), or leave it "
                          "out for all")
    require_music_packages("music21")
    ensure_fluidsynth()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    scores = corpus_paths(max_scores)
    jobs = [(str(path), str(folder), sampling_rate, clip_seconds, seed) for path in scores]
    results = render_all(render_score, jobs, workers, progress, "render scores")
    rows = [dict(file=name, score=f"{path.parent.name}/{path.name}", start_seconds=start)
            for path, clips in zip(scores, results) for name, start in clips]
    if not rows:
        raise InputError(f"no clip was rendered from {len(scores)} scores; see the messages above")
    write_csv(folder / "clips.csv", rows)
    skipped = sum(1 for clips in results if not clips)
    print(f"{len(rows)} clips ({len(rows) * clip_seconds / 60:.1f} min) from {len(scores) - skipped} scores "
          f"({skipped} skipped) in {folder}", file=sys.stderr)
    return folder


#: what a stopped render says: files are written whole and skipped when they exist
RESUMES = "a rerun of the same command keeps the files written and renders the rest"


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m modalities.audio.rendering notes|clips -o DIR ...`: render one set; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sets = parser.add_subparsers(dest="set", required=True)
    notes = sets.add_parser("notes", help="labelled single notes (notes.csv)")
    notes.add_argument("--limit", type=positive_int, help="render only the first N notes of the grid")
    notes.add_argument("--seconds", type=positive_float, default=2.0, help="length of each note file (default: 2.0)")
    clips = sets.add_parser("clips", help="music21 corpus clips (clips.csv)")
    clips.add_argument("--max-scores", type=positive_int, help="render only the first N scores")
    clips.add_argument("--clip-seconds", type=positive_float, default=5.0, help="clip length (default: 5.0)")
    for sub in (notes, clips):
        sub.add_argument("-o", "--output", required=True, help="folder to write")
        sub.add_argument("--sampling-rate", type=positive_int, default=16000, help="Hz (default: 16000)")
        sub.add_argument("--workers", type=positive_int, default=2, help="render processes (default: 2)")
    args = parser.parse_args(argv)
    if args.set == "notes":
        render = partial(render_notes, args.output, args.sampling_rate, args.seconds, args.limit, args.workers)
    else:
        render = partial(render_clips, args.output, args.sampling_rate, args.clip_seconds, args.max_scores,
                         workers=args.workers)
    return exit_status(parser.prog, render, f"; {RESUMES}")  # a missing fluidsynth: the fix, not a traceback


if __name__ == "__main__":
    sys.exit(main())
