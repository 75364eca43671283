"""Graph tests run torch on one thread (see `helpers.one_thread`)."""

from helpers import one_thread  # noqa: F401
