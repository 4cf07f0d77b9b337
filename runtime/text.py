"""Quoting untrusted values in error messages: one line, a bounded length, whatever the value is.

A box.toml value, a preset field or a name that arrived over OSC can be 100,000 characters long or hold
newlines; an error that quotes it whole buries the log line that explains the problem. `excerpt` shows
enough to recognise the value and never more.
"""

from __future__ import annotations

EXCERPT_CHARS = 60


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """repr(value) on one line, cut to `limit` characters ending in '…' when longer.

    >>> excerpt("x" * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…"
    >>> excerpt("two\\nlines")
    "'two\\\\nlines'"
    """
    try:
        text = repr(value)  # escapes newlines and control characters: the excerpt stays one line
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_name(name: str, limit: int = EXCERPT_CHARS) -> str:
    """A key or section name as typed when it is short and printable, else its excerpt."""
    return name if len(name) <= limit and name.isprintable() else excerpt(name, limit)
