"""What every notebook does first, after its parameters cell: ``NB = notebook.start(scale=scale, ...)``.

It checks the parameters (one line naming a bad one and its fix: :func:`cl.study.check_parameters`),
seeds torch, and returns the notebook's name, which its runs record in metrics.json.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from cl import study


def start(**parameters) -> str:
    """Check every parameter of the notebook, seed torch, and return the notebook's name."""
    study.check_parameters(**parameters)
    torch.manual_seed(0)
    return name()


def name() -> str:
    """The running notebook's name: from cl.study (papermill), else from JupyterLab (jupyter-server names
    a kernel's notebook in ``JPY_SESSION_NAME``), else ``interactive``."""
    if os.environ.get(study.NOTEBOOK_ENV):
        return os.environ[study.NOTEBOOK_ENV]
    session = os.environ.get("JPY_SESSION_NAME", "")
    return Path(session).stem if session.endswith(".ipynb") else "interactive"
