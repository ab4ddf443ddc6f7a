"""The pictures the notebooks share: training curves, an embedding in 2-D, augmented views."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch


def curves(records: dict[str, dict], keys=("loss", "knn_top1"), title: str | None = None, axes=None):
    """One panel per metric of ``metrics.json``'s per-epoch rows, one line per run (on ``axes``, one
    per key, when given)."""
    if axes is None:
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    else:
        fig, axes = axes[0].figure, [list(axes)]
    for ax, key in zip(axes[0], keys):
        for name, rec in records.items():
            rows = rec["epochs"]
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel=key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def alignment_uniformity(results: dict[str, list[dict]], ax=None, title: str = "final embedding, every seed"):
    """The alignment–uniformity plane (Wang & Isola 2020): one point per run of each condition
    (``results``: condition → records), both lower-is-better, so better lies towards the origin's
    lower left."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for name, records in results.items():
        ax.scatter([r["final"]["uniformity"] for r in records], [r["final"]["alignment"] for r in records],
                   label=name, s=18)
    ax.set(xlabel="uniformity (lower: more uniform)", ylabel="alignment (lower: better aligned)", title=title)
    ax.legend(fontsize=8)
    return ax


def embedding_2d(features: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str = "",
                 ax=None, points: int = 3000):
    """The first two principal components of (normalised) features, coloured by class."""
    x = features[:points].float()
    x = x - x.mean(0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    xy = (x @ v[:, :2]).cpu()
    y = labels[:points].cpu()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    for c, name in enumerate(classes):
        m = y == c
        ax.scatter(xy[m, 0], xy[m, 1], s=3, alpha=0.6, label=name)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(markerscale=4, fontsize=7, loc="best")
    return ax


def views_grid(images: torch.Tensor, views: list[torch.Tensor], mean, std, title: str = ""):
    """Originals in the first row, then one row per augmented view."""
    rows = [images.float() / 255] + [(v.float() * torch.tensor(std).view(1, -1, 1, 1)
                                      + torch.tensor(mean).view(1, -1, 1, 1)).clamp(0, 1) for v in views]
    n = len(images)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n, 1.25 * len(rows)))
    for r, row in enumerate(rows):
        for i in range(n):
            img = row[i].cpu().permute(1, 2, 0).squeeze(-1)
            axes[r][i].imshow(img, cmap="gray" if img.dim() == 2 else None, vmin=0, vmax=1)
            axes[r][i].axis("off")
    axes[0][0].set_title("original", fontsize=8, loc="left")
    if len(rows) > 1:
        axes[1][0].set_title("views", fontsize=8, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def table(records: dict[str, dict], columns=("knn_top1", "linear_top1", "alignment", "uniformity",
                                              "train_seconds")) -> pd.DataFrame:
    """The final metrics of several runs, one row each."""
    return pd.DataFrame({name: {c: rec["final"].get(c) for c in columns} for name, rec in records.items()}).T


def source(fn) -> None:
    """Show a function's or class's source in a notebook, as Markdown (the code the text explains)."""
    import inspect

    from IPython.display import Markdown, display
    display(Markdown(f"```python\n{inspect.getsource(fn)}```"))


def intervals(diffs, title: str = "", ax=None):
    """Paired differences (``cl.study.Difference``) as points with their 95 % t intervals
    against the zero line: an interval clear of zero is a resolved difference."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(diffs) + 1.2))
    for y, d in enumerate(diffs):
        err = [[d.mean - d.low], [d.high - d.mean]] if d.claims else None
        colour = "tab:blue" if d.claims else "tab:gray"
        ax.errorbar(d.mean, y, xerr=err, fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="k", lw=1, ls="--")
    labels = [f"{d.a} − {d.b}" + ("" if d.claims else f" ({d.seeds} seed)") for d in diffs]
    ax.set(yticks=range(len(diffs)), yticklabels=labels,
           xlabel=f"{diffs[0].metric.replace('_', ' ')} difference (points), 95 % t interval over seeds",
           title=title)
    ax.invert_yaxis()
    ax.figure.tight_layout()
    return ax


def means(table: pd.DataFrame, metric: str = "knn_top1", ax=None, title: str = ""):
    """Horizontal bars of each condition's mean ``metric`` ± its std over seeds (``table``: from
    ``cl.study.mean_std``), sorted; a one-seed condition has no error bar."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1.2))
    order = table[metric].sort_values().index
    ax.barh(order, table.loc[order, metric], xerr=table.loc[order, f"{metric} std"].fillna(0), capsize=2)
    ax.set(xlabel=f"{metric.replace('_', ' ')} (mean ± std over seeds)", xlim=(table[metric].min() - 5, None),
           title=title)
    ax.figure.tight_layout()
    return ax


def share_curves(table: pd.DataFrame, families: dict[str, list[tuple[float, str]]], baseline: float,
                 metric: str = "knn_top1", ax=None):
    """Accuracy against the share of each row's negatives kept, one line per family of
    conditions (``families``: name → [(share kept, condition)]), with the all-negatives level."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, points in families.items():
        points = sorted(points)
        ax.plot([p for p, _ in points], [table.loc[c, metric] for _, c in points], marker="o", label=name)
    ax.axhline(baseline, color="k", lw=1, ls="--", label="all negatives")
    ax.set(xscale="log", xlabel="share of each row's negatives kept", ylabel=metric.replace("_", " "))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
