"""Regular expressions as Envoy compiles them: RE2, with Envoy's program-size limit.

Python's ``re`` accepts what RE2 does not (look-behind, back-references), and
Envoy refuses an RE2 program larger than its error threshold (runtime key
``re2.max_program_size.error_level``, 100 by default), so a pattern is checked
with the RE2 library itself, not approximated.
"""

from __future__ import annotations

import re2

# Envoy's default for re2.max_program_size.error_level: a larger program is a NACK.
MAX_PROGRAM_SIZE = 100

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error comes back as an exception; do not also print it


def check_re2(pattern: str) -> str:
    """``pattern`` if Envoy can compile it; raise ``ValueError`` saying why not."""
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regular expression (RE2 syntax, as Envoy uses): {reason}") from None
    except Exception as exc:  # the binding raises TypeError and friends for odd input, not only re2.error
        raise ValueError(f"invalid regular expression: {exc}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(
            f"regular expression too complex for Envoy: RE2 program size {compiled.programsize} "
            f"(Envoy's limit is {MAX_PROGRAM_SIZE}); simplify it or match a prefix instead"
        )
    return pattern
