"""cl: the small shared library behind the negatives study notebooks.

One module per concern; docs/design.md has the module map and the loss contract.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: data/, runs/, notebooks/, params/
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
RUNS = Path(os.environ.get("NEGATIVES_RUNS", ROOT / "runs"))  # NEGATIVES_RUNS moves runs/ elsewhere
