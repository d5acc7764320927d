"""User input repeated in an error message: quoted, and cut short, so a pasted page or a runaway
shell expansion gives one readable line."""

from __future__ import annotations

ECHOED_CHARACTERS = 40


def quoted(value: object) -> str:
    """`value` as repr would show it, cut after its first 40 characters ("…" and the whole length then)."""
    text = str(value)
    if len(text) <= ECHOED_CHARACTERS:
        return repr(text)
    return f"{text[:ECHOED_CHARACTERS] + '…'!r} ({len(text):,} characters)"
