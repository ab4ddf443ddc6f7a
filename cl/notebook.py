"""What every notebook does first, after its parameters cell: ``this_notebook = notebook.start(globals())``,
``show_source``, which shows the code the text explains, and ``show``, which shows Markdown that
``cl.stats`` words from the measurements.

It checks the parameters (one line naming a bad one and its fix: :func:`cl.parameters.check_parameters`),
seeds torch, and returns the notebook's name, which its runs record in metrics.json.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
from IPython.display import Markdown, display

from cl import parameters


def start(namespace: dict) -> str:
    """Check every parameter of the notebook (the names its parameters cell binds, read from
    ``namespace``, its ``globals()``), seed torch, and return the notebook's name."""
    parameters.check_parameters(**parameters.session_parameters(namespace))
    torch.manual_seed(0)
    return name()


def name() -> str:
    """The running notebook's name: from cl.study (papermill), else from JupyterLab (jupyter-server names
    a kernel's notebook in ``JPY_SESSION_NAME``), else ``interactive``."""
    if os.environ.get(parameters.NOTEBOOK_ENV):
        return os.environ[parameters.NOTEBOOK_ENV]
    session = os.environ.get("JPY_SESSION_NAME", "")
    return Path(session).stem if session.endswith(".ipynb") else "interactive"


def show_source(fn) -> None:
    """Show a function's or class's source in a notebook, as Markdown (the code the text explains)."""
    display(Markdown(f"```python\n{inspect.getsource(fn)}```"))


def show(markdown: str) -> None:
    """Show Markdown (a sentence or bullets of ``cl.stats``) as the notebook's text."""
    display(Markdown(markdown))
