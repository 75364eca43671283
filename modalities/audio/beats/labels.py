"""AudioSet class names: Freebase id -> display name, shipped as package data.

BEATs' fine-tuned checkpoints name their outputs by AudioSet id (`/m/09x0r`) in a
`label_dict`; the zoo shows the ontology's display names ("Speech"). The table holds the
id and name of all 632 classes of the AudioSet ontology (github.com/audioset/ontology,
ontology.json @ d417d32; Gemmeke et al. 2017; CC BY-SA 4.0), a superset of the 527
labelled classes.
"""

from __future__ import annotations

import csv
import functools
from importlib import resources


@functools.lru_cache(maxsize=1)
def audioset_display_names() -> dict[str, str]:
    """AudioSet id -> display name, for every class of the ontology."""
    text = resources.files("modalities.audio.beats").joinpath("audioset_ontology.csv").read_text(encoding="utf-8")
    return {row["mid"]: row["display_name"] for row in csv.DictReader(text.splitlines())}
