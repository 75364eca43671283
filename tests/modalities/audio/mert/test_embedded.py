"""The embedded `mert-tiny` checkpoint: loads offline from float16 files within the 12 MB
budget, matches its hub_config and card, embeds the bundled example notes at 75 Hz, and
(slow) its weights are trained: on rendered notes of an octave it never saw in the probe's
fit, its pitch class is told far better than by a random-init MERT of the same shape."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import zoo
from helpers import check_embedded_entry, check_float16_within_budget
from zoo.demo import example_inputs

NAME = "mert-tiny"


def test_loads_offline_from_float16_and_matches_its_hub_config(offline_cache):
    encoder, entry = check_embedded_entry(NAME)
    assert encoder.family == "mert" and encoder.modality == "audio"
    processor = {k: v for k, v in encoder.processor.to_dict().items() if k != "processor_type"}
    assert processor == entry["preprocessing"] and processor["sampling_rate"] == 24000
    check_float16_within_budget(NAME, encoder)


def test_embeds_the_example_notes_at_75_hz():
    encoder = zoo.load(NAME)
    notes = [str(path) for path in example_inputs("audio")]  # 1.5 s at 16 kHz, resampled to 24 kHz
    rows = encoder.embed(notes, progress=False)
    assert rows.shape == (4, 192) and torch.isfinite(rows).all()
    assert encoder.embed(notes, layer="all", progress=False).shape == (4, 5, 192)
    times, frames = encoder.embed_frames(notes[:1], progress=False)[0]
    assert frames.shape == (112, 192)  # 36,000 samples at 24 kHz: 112 frames of the 320-sample hop
    assert times.dtype == torch.float64
    assert torch.allclose(times.diff(), torch.full((111,), 1 / 75, dtype=torch.float64))


def rendered_notes(folder) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """One GM program of each pitched family (the second: 1, 9, 17...) at MIDI 48-83, 1 s at
    24 kHz; returns (audio, pitch class, octave)."""
    import soundfile
    from modalities.audio.rendering import PITCHED_FAMILIES, SOUNDFONT, render_note

    if not SOUNDFONT.is_file():
        pytest.skip(f"{SOUNDFONT} is absent: apt-get install fluid-soundfont-gm")
    jobs = [(8 * family + 1, pitch, 100, str(folder), 24000, 1.0)
            for family in range(len(PITCHED_FAMILIES)) for pitch in range(48, 84)]
    rendered = [(name, pitch) for name, (_, pitch, *_) in zip(map(render_note, jobs), jobs) if name is not None]
    audio = [soundfile.read(str(folder / name), dtype="float32")[0] for name, _ in rendered]
    pitches = np.array([pitch for _, pitch in rendered])
    return audio, pitches % 12, pitches // 12


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs Debian's fluidsynth and fluid-soundfont-gm "
                    "(apt-get install fluidsynth fluid-soundfont-gm)")
def test_tells_pitch_class_on_an_unseen_octave_better_than_a_random_init(tmp_path):
    # 2-5 minutes here (137 s alone), most of it rendering 468 notes through FluidSynth
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modalities.audio.mert.model import MertEncoder

    audio, pitch_class, octave = rendered_notes(tmp_path)
    encoder = zoo.load(NAME).eval()
    torch.manual_seed(0)
    random_init = MertEncoder(encoder.config, encoder.processor).eval()
    held_out = octave == 5  # MIDI 60-71; the probe fits on 48-59 and 72-83
    scores = []
    for model in (encoder, random_init):
        features = model.embed(audio, sampling_rate=24000, progress=False).numpy()
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(features[~held_out], pitch_class[~held_out])
        scores.append(probe.score(features[held_out], pitch_class[held_out]))
    assert scores[0] > scores[1] + 0.1, scores  # measured: 0.519 vs 0.295 (chance 0.083)
