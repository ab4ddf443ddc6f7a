"""cl: the small shared library behind the negatives study notebooks.

One module per concern (docs/design.md has the map): ``data``, ``augment``, ``models``, ``moco``,
``losses``, ``negatives``, ``metrics``, ``semantics``, ``train``.
``difficulty``: which negatives a trained encoder finds hard, over a fixed probe set (notebook 07).
``report``: the study's HTML (each notebook's page, runs/report.html), equations typeset offline.
"""
