"""Progress bars of long work: embedding, training, rendering, teacher features."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional

#: seconds between redraws of a bar written to a log file rather than a terminal
LOGGED_INTERVAL = 30.0


def progress_bar(iterable: Optional[Iterable[Any]] = None, *, progress: bool = True, **options: Any) -> Any:
    """A tqdm bar (a widget in notebooks), silent without `progress`. Written to a log file, as
    in a batch job, each redraw is another stretch of the file: a bar redrawn every 0.1 s, tqdm's
    default, wrote 1.8 MB an hour, so there it redraws every 30 s, unless TQDM_MININTERVAL (read
    by tqdm) says otherwise."""
    from tqdm.auto import tqdm
    from tqdm.autonotebook import tqdm as chosen
    from tqdm.std import tqdm as text_bar

    if chosen is text_bar and not on_terminal() and "TQDM_MININTERVAL" not in os.environ:
        options.setdefault("mininterval", LOGGED_INTERVAL)
    return tqdm(iterable, disable=not progress, **options)


def on_terminal() -> bool:
    """Whether bars (on stderr) reach a terminal."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except ValueError:  # stderr closed
        return False
