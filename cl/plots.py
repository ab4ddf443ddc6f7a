"""The pictures the notebooks share: training curves, an embedding in 2-D, augmented views."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch


def curves(records: dict[str, dict], keys=("loss", "knn_top1"), title: str | None = None):
    """One panel per metric of ``metrics.json``'s per-epoch rows, one line per run."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
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
