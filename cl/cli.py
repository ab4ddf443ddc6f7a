"""What the command lines share: YAML read as people write numbers, and one line per expected failure.

An expected failure is one the user can fix: a bad config or parameter, missing data, a run
folder in use, a diverged run, an unreadable checkpoint, a full disk, Ctrl-C. Its exception
is a :class:`UserError` (or an ``OSError``, a YAML error, a ``KeyboardInterrupt``) whose
message says what to do; :func:`run_main` prints that message as one line ``error: ...``
and exits non-zero, and IPython shows it as one line too. Set ``NEGATIVES_DEBUG=1`` to see
the traceback instead. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml

DEBUG = "NEGATIVES_DEBUG"

# YAML 1.2 reads 5e-4, 1e6 and 1E+3 as numbers; the YAML 1.1 resolver of PyYAML reads them as
# strings (it wants a dot: 5.0e-4). This is the form it misses.
EXPONENT_NUMBER = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+")


def debugging() -> bool:
    """Whether ``NEGATIVES_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG, "") not in ("", "0")


def _one_line_traceback(error):
    """IPython's hook for how an exception is shown: one line, unless debugging (then the traceback)."""
    if debugging():
        raise AttributeError("_render_traceback_")  # IPython then formats the usual traceback
    return lambda: [f"{type(error).__name__}: {error}"]


class UserError(Exception):
    """A failure the user can fix; its message says how. Shown as one line, without a traceback."""

    _render_traceback_ = property(_one_line_traceback)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what happens next (which epoch a run resumes at) as its message."""

    _render_traceback_ = property(_one_line_traceback)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no object tags), reading 5e-4 and 1e6 as numbers."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(rf"^{EXPONENT_NUMBER.pattern}$"),
                              list("-+0123456789."))


def load_yaml(text: str):
    """YAML as the project reads it: safe (no object tags), and 5e-4 is a number."""
    return yaml.load(text, Loader=_Loader)


def load_yaml_file(path) -> object:
    """A YAML file read as :func:`load_yaml` does; one that is not valid YAML is a UserError naming the
    file and the line (an unreadable file: an OSError naming it)."""
    try:
        return load_yaml(Path(path).read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or one_line(error)
        raise UserError(f"{where}: not valid YAML ({problem}): fix it") from None


def one_line(error: BaseException) -> str:
    """An error's message on one line (YAML errors span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def run_main(main, argv=None) -> int:
    """Run a command's ``main(argv)``; an expected failure becomes one line on stderr and an exit status.

    ``error: ...`` and 1 for an error, ``interrupted: ...`` and 130 for Ctrl-C (as a shell reports
    it). With ``NEGATIVES_DEBUG=1`` the exception propagates, traceback and all.
    """
    if debugging():
        return main(argv)
    try:
        return main(argv)
    except KeyboardInterrupt as error:
        print(f"interrupted: {one_line(error)}" if str(error) else "interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError, yaml.YAMLError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
