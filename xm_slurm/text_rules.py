"""The one rule for names, free text and ids that the library, the store and the REST server all check.

Model layer (pure, no I/O): the experiment layer checks a value when it is given (before any remote side
effect), the store's models check it again before a write, and the server checks what clients send, all
with these functions, so a value one end accepts the other end accepts too.

* A *name* (artifact and config artifact names) is a path segment on the REST routes: non-empty, no `/`,
  not `.` or `..`, no control characters, at most `MAX_NAME` characters.
* A *line* (identities, job names, titles, tags) is one line of text: no control characters (so no NUL,
  no newline), at most its cap.
* A *text* (descriptions, notes, args, URIs) may hold newlines and tabs but no other control characters.
* Every string is valid Unicode: a lone surrogate (which no UTF-8 encoder accepts) is refused.
* An *id* (experiment and work unit ids) is an integer in 1 .. 2**63 - 1 (SQLite's and PostgreSQL's
  BIGINT range).
"""

from __future__ import annotations

import re

from xm_slurm.errors import ValidationError

#: Largest id either SQL backend stores (signed 64-bit).
MAX_ID = 2**63 - 1
#: Caps, in characters.
MAX_NAME = 255
MAX_LINE = 1_000
MAX_TITLE = 1_000
MAX_TEXT = 100_000  # descriptions, notes, URIs
MAX_ARGS = 1_000_000  # a work unit's args, as stored (JSON)

# C0 and C1 controls, DEL and lone surrogates; text allows newline, tab and carriage return. One regex
# search runs in C: the launch checks every job name and row of a 1,000-trial sweep with these.
_BAD_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _check(value: object, what: str, cap: int, bad_chars: re.Pattern[str], example: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {type(value).__name__} {value!r:.100}")
    if len(value) > cap:
        raise ValidationError(f"{what} is {len(value):,} characters long; at most {cap:,} are allowed")
    found = bad_chars.search(value)
    if found is not None:
        code = ord(found.group())
        kind = "a lone surrogate (not valid Unicode)" if 0xD800 <= code <= 0xDFFF else "a control character"
        raise ValidationError(f"{what}={value!r:.100} contains {kind} U+{code:04X}; {example}")
    return value


def check_line(value: object, what: str, cap: int = MAX_LINE) -> str:
    """One line of text: no control characters (no NUL, no newline), valid Unicode, at most `cap` long."""
    return _check(value, what, cap, _BAD_IN_LINE, "use one line of printable text")


def check_text(value: object, what: str, cap: int = MAX_TEXT) -> str:
    """Free text: newlines and tabs allowed, no other control character, valid Unicode, at most `cap`."""
    return _check(value, what, cap, _BAD_IN_TEXT, "use printable text (newlines and tabs are fine)")


def check_name(value: object, what: str) -> str:
    """A name used as one path segment: non-empty, no '/', not '.' or '..', one line, at most MAX_NAME."""
    check_line(value, what, MAX_NAME)
    assert isinstance(value, str)
    if not value or "/" in value or value in (".", ".."):
        raise ValidationError(
            f"{what}={value!r} is not a valid name: it must be non-empty, hold no '/' and not be '.' or "
            "'..', e.g. 'wandb' or 'checkpoint-3'"
        )
    return value


def check_id(value: object, what: str) -> int:
    """An experiment or work unit id: an integer in 1 .. 2**63 - 1."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise ValidationError(f"{what} must be an integer in 1..{MAX_ID}, got {value!r:.100}")
    return value
