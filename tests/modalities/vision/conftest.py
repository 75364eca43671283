"""Vision tests run torch on one thread: the golden outputs were made that way."""

from helpers import one_thread  # noqa: F401
