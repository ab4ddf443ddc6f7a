"""The figures the notebooks share, each a function that draws on given axes (or new ones): training
curves, intervals and means, embeddings, augmented views, selections and difficulty bands, sweeps,
class matrices and the alignment–uniformity plane. Notebooks call these; they do not build figures."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator

from cl import stats

METRIC_LABELS = {"knn_top1": "kNN top-1 (%)", "linear_top1": "linear-probe top-1 (%)",
                 "loss": "training loss (nats)", "alignment": "alignment (lower: better aligned)",
                 "uniformity": "uniformity loss (lower: more uniform)",
                 "images_per_second": "training images per second"}


def metric_label(key: str) -> str:
    """An axis label for a metric of ``metrics.json``: its name in words, with its unit."""
    return METRIC_LABELS.get(key, key.replace("_", " "))


def curves(records: dict[str, dict], keys=("loss", "knn_top1"), title: str | None = None, axes=None):
    """One panel per metric of ``metrics.json``'s per-epoch rows, one line per run (on ``axes``, one
    per key, when given); an epoch's kNN is the monitor bank's, and its label says so."""
    if axes is None:
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    else:
        fig, axes = axes[0].figure, [list(axes)]
    for ax, key in zip(axes[0], keys):
        for name, rec in records.items():
            rows = rec["epochs"]
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", ms=3, label=name)
        label = "kNN top-1 (%, monitor bank)" if key == "knn_top1" else metric_label(key)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def seeded_curves(series: dict[str, pd.DataFrame], ylabel: str, title: str = "", ax=None):
    """Curves over epochs with their 95 % t interval over seeds at each epoch (``series``: label →
    epoch × seed table, ``cl.analysis.per_epoch``); a curve of fewer than 3 seeds has no band."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for label, table in series.items():
        epochs = list(table.index)
        rows = [stats.t_interval(table.loc[e].dropna()) for e in epochs]
        line, = ax.plot(epochs, [r.mean for r in rows], marker="o", ms=3, label=label)
        if all(r.claims for r in rows):
            ax.fill_between(epochs, [r.low for r in rows], [r.high for r in rows], color=line.get_color(),
                            alpha=0.2, lw=0)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


FAMILIES = {  # the alignment–uniformity plane's colour and marker of each family of methods
    "control": ("tab:gray", "s"), "no negatives": ("tab:red", "v"), "SimSiam / BYOL": ("tab:orange", "^"),
    "MoCo / InfoNCE": ("tab:blue", "o"), "selected negatives": ("tab:cyan", "D"),
    "DCL / HCL": ("tab:green", "P"), "MoCHi": ("tab:purple", "X"), "SupCon": ("tab:brown", "*")}


def family(record: dict) -> str:
    """The family of methods a run belongs to (a key of FAMILIES), from its metrics.json record."""
    cfg = record["config"]
    if record.get("control"):
        return "control"
    loss = cfg.get("loss", "info_nce")
    named = {"positives_only": "no negatives", "simsiam": "SimSiam / BYOL", "byol": "SimSiam / BYOL",
             "debiased": "DCL / HCL", "hard": "DCL / HCL", "supcon": "SupCon"}
    if loss in named:
        return named[loss]
    if cfg.get("mochi_s", 0) + cfg.get("mochi_s_prime", 0) > 0:
        return "MoCHi"
    selected = cfg.get("select", "all") != "all" or cfg.get("mined_queue", 0)
    return "selected negatives" if selected else "MoCo / InfoNCE"


def alignment_uniformity(results: dict[str, list[dict]], ax=None, title: str = "final embedding, every seed"):
    """The alignment–uniformity plane (Wang & Isola 2020): one point per run (``results``: condition →
    records), coloured and shaped by the method's :func:`family`, each condition's name at the mean of
    its runs; both axes lower-is-better, so better lies towards the lower left."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    shown = set()
    for name, records in results.items():
        kind = family(records[0])
        colour, marker = FAMILIES[kind]
        x = [r["final"]["uniformity"] for r in records]
        y = [r["final"]["alignment"] for r in records]
        ax.scatter(x, y, s=22, color=colour, marker=marker, alpha=0.8, label=None if kind in shown else kind)
        shown.add(kind)
        ax.annotate(name, (sum(x) / len(x), sum(y) / len(y)), fontsize=7, xytext=(3, 3),
                    textcoords="offset points", color=colour)
    ax.set(xlabel=metric_label("uniformity"), ylabel=metric_label("alignment"), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="family", title_fontsize=8)
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


def intervals(diffs, title: str = "", ax=None):
    """Paired differences (``cl.stats.Difference``) as points with their 95 % t intervals
    against the zero line: an interval clear of zero is a resolved difference."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(diffs) + 1.2))
    for y, d in enumerate(diffs):
        err = [[d.mean - d.low], [d.high - d.mean]] if d.claims else None
        colour = "tab:blue" if d.claims else "tab:gray"
        ax.errorbar(d.mean, y, xerr=err, fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="k", lw=1, ls="--")
    labels = [f"{d.a} − {d.b}" + ("" if d.claims else f" ({stats.plural(d.seeds, 'seed')}, no claim)")
              for d in diffs]
    ax.set(yticks=range(len(diffs)), yticklabels=labels,
           xlabel=f"{diffs[0].metric.replace('_', ' ')} difference (points), 95 % t interval over seeds",
           title=title)
    ax.invert_yaxis()
    ax.figure.tight_layout()
    return ax


def means(table: pd.DataFrame, metric: str = "knn_top1", ax=None, title: str = ""):
    """Horizontal bars of each condition's mean ``metric`` ± its std over seeds (``table``: from
    ``cl.stats.mean_std``), sorted; a one-seed condition has no error bar."""
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


def class_matrices(matrices: dict[str, torch.Tensor], classes: list[str], colorbar: str | dict[str, str] = "",
                   xlabel: str = "", ylabel: str = "", title: str = "", axes=None, **imshow):
    """One heat map per class-by-class matrix (``matrices``: panel title → (C, C) tensor), the
    classes named on both axes, each with a colour bar labelled ``colorbar`` (its unit; a dict
    gives each panel its own). ``imshow`` options (cmap, vmin, vmax) apply to every panel."""
    if axes is None:
        _, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 4.4), squeeze=False)
        axes = axes[0]
    ticks = range(len(classes))
    for ax, (name, matrix) in zip(axes, matrices.items()):
        image = ax.imshow(matrix.cpu().numpy(), **{"cmap": "viridis", **imshow})
        ax.set(title=name, xticks=ticks, yticks=ticks, xlabel=xlabel, ylabel=ylabel)
        ax.set_xticklabels(classes, rotation=90, fontsize=7)
        ax.set_yticklabels(classes, fontsize=7)
        label = colorbar.get(name, "") if isinstance(colorbar, dict) else colorbar
        ax.figure.colorbar(image, ax=ax, label=label)
    if title:
        axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes[0].figure


def boxes(panels: dict[str, dict], xlabel: str = "", ylabel: str = "", title: str = "", axes=None):
    """Box plots, one panel per entry of ``panels`` (panel title → {group: 1-D values}) and one box
    per group in its order (quartiles, whiskers to 1.5 IQR, outliers not drawn); group names that
    are floats print with two decimals."""
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
        axes = axes[0]
    for ax, (name, groups) in zip(axes, panels.items()):
        names = [f"{g:.2f}" if isinstance(g, float) else str(g) for g in groups]
        ax.boxplot([torch.as_tensor(v).cpu().numpy() for v in groups.values()], showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=60, fontsize=7)
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
    if title:
        axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes[0].figure


CONTROL_STYLES = {"observed": dict(marker="o", color="tab:blue", label="observed"),
                  "within_class_pairs": dict(marker="s", color="tab:orange", ls="--",
                                             label="shuffled within class pairs"),
                  "global": dict(marker=".", color="gray", ls=":", label="shuffled globally"),
                  "raw pixels (centred)": dict(color="tab:green", ls="-.", label="raw pixels (centred)"),
                  "untrained encoder": dict(color="tab:red", ls="-.", label="untrained encoder")}


def consistency(curves: dict, title: str = "", ax=None):
    """Spearman's ρ of each epoch's difficulty with the last epoch's, against its controls
    (``curves``: run → a ``cl.analysis.consistency`` table, one line per run and column; the
    columns named in ``CONTROL_STYLES`` that the table has), epochs on x."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    for i, table in enumerate(curves.values()):
        for column, style in CONTROL_STYLES.items():
            if column in table:
                ax.plot(table.index, table[column], **{**style, "label": style["label"] if i == 0 else None})
    ax.set(xlabel="epoch", ylabel="Spearman ρ with the last epoch's difficulty", title=title)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


def class_pair_examples(pairs: list[tuple[str, tuple[str, str]]], images: torch.Tensor, labels: torch.Tensor,
                        classes: list[str], per_class: int = 2):
    """Example images of class pairs, one row per pair (``pairs``: [(row label, (class a, class b))],
    the label written under the row's first class name): the first ``per_class`` images of class a,
    then of class b, from ``images`` (N, channels, H, W; uint8 or in [0, 1]) with their ``labels``
    (N,). None when there is no pair."""
    if not pairs:
        return None
    fig, axes = plt.subplots(len(pairs), 2 * per_class, figsize=(1.4 * 2 * per_class, 1.8 * len(pairs)),
                             squeeze=False)
    for row, (label, names) in zip(axes, pairs):
        shown = [(name, i) for name in names
                 for i in torch.nonzero(labels == classes.index(name))[:per_class, 0]]
        for col, (ax, (name, i)) in enumerate(zip(row, shown)):
            image = images[i].float() / (255 if images.dtype == torch.uint8 else 1)
            ax.imshow(image.permute(1, 2, 0).squeeze(-1).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(name + (f"\n({label})" if col == 0 else ""), fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return fig


def mixup_row(first: torch.Tensor, second: torch.Tensor, weights, names: tuple[str, str] = ("", ""),
              axes=None):
    """mixup in input space (Zhang et al. 2018) in one row of grey images: ``first`` (H, W), the convex
    combinations λ·first + (1 − λ)·second for each λ of ``weights`` (sorted), then ``second``; the two
    ends are titled with their ``names`` (class names, say), the mixes with their λ."""
    weights = sorted(float(w) for w in weights)
    if axes is None:
        _, axes = plt.subplots(1, len(weights) + 2, figsize=(1.3 * (len(weights) + 2), 1.7))
    images = [first, *(w * first + (1 - w) * second for w in weights), second]
    titles = [names[0], *(f"λ = {w:.2f}" for w in weights), names[1]]
    for ax, image, title in zip(axes, images, titles):
        ax.imshow(image.float().cpu().numpy(), cmap="gray")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    axes[0].figure.tight_layout()
    return axes


def similarity_histograms(groups: dict[str, torch.Tensor], bins: int = 30, ax=None,
                          xlabel: str = "cosine similarity to the query (unit vectors)"):
    """Overlaid density histograms of similarity values, one per group (``groups``: label → a 1-D
    tensor): where several sets of negatives fall against the same query, whatever their sizes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.8))
    for label, values in groups.items():
        ax.hist(values.detach().float().cpu().numpy(), bins=bins, alpha=0.5, density=True, label=label)
    ax.set(xlabel=xlabel, ylabel="density (per unit of similarity)")
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax


def selected_entries(kept: dict[str, torch.Tensor], ax=None, title: str = ""):
    """Which entries of one row of negatives each selection keeps (``kept``: selection name → (N,)
    bool mask over a row sorted from the hardest negative, rank 0, to the easiest): one line of
    dots per selection, a dot at the rank of each entry it keeps."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.4 * len(kept) + 0.6))
    for y, mask in enumerate(kept.values()):
        ranks = mask.cpu().nonzero().squeeze(1)
        ax.scatter(ranks.numpy(), [y] * len(ranks), s=2)
    ax.set(yticks=range(len(kept)), yticklabels=list(kept), title=title,
           xlabel="rank in the row (0 = the hardest negative, the most similar to the query)")
    ax.invert_yaxis()
    ax.figure.tight_layout()
    return ax


def negative_bands(epochs: list[dict], reference: float | None = None, axes=None):
    """What a run logged of its negatives at the last step of each epoch (``metrics.json``'s
    per-epoch rows, each with ``cl.negatives.difficulty_bands`` under ``negatives``): the
    similarities of the negatives, one line per epoch; then, for the last epoch, each difficulty
    band's share of InfoNCE's gradient and the fraction of its negatives that share the query's
    class, with ``reference`` (the same-class share of all the negatives, say) as a dashed line."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    last = epochs[-1]["negatives"]
    edges = torch.tensor(last["histogram_edges"])
    centres = ((edges[1:] + edges[:-1]) / 2).tolist()
    for row in epochs:
        axes[0].plot(centres, row["negatives"]["histogram_counts"], label=f"epoch {row['epoch']}")
    axes[0].set(xlabel="similarity q·k⁻ (cosine)", ylabel="negatives (count over the batch)",
                title="similarities of the negatives (last step)")
    axes[0].legend(fontsize=7)
    fractions = [float("nan") if f is None else f for f in last["same_class_fraction"]]
    for ax, values, ylabel in ((axes[1], last["gradient_share"], "share of the gradient (fraction)"),
                               (axes[2], fractions, "same-class fraction of the band")):
        ax.bar(last["band_names"], values)
        ax.set(xlabel="difficulty band (share of the row, hardest first)", ylabel=ylabel,
               title=f"{ylabel.split(' (')[0]}, epoch {epochs[-1]['epoch']}")
        ax.tick_params(axis="x", labelrotation=20)
    if reference is not None:
        axes[2].axhline(reference, color="k", ls="--", lw=1, label=f"all negatives ({reference:.2f})")
        axes[2].legend(fontsize=8)
    axes[0].figure.tight_layout()
    return axes


def hardest_negatives(images: torch.Tensor, labels: torch.Tensor, classes: list[str], queries: torch.Tensor,
                      neg: torch.Tensor, keys: torch.Tensor, key_labels: torch.Tensor, per_query: int = 6):
    """One row per query: its image, then its ``per_query`` hardest negatives, the most similar
    first, each titled with its class and its similarity q·k⁻ (cosine). ``images`` (N, channels,
    H, W) and ``labels`` (N,) are the data set; ``queries`` (R,) the queries' indices in it;
    ``neg`` (R, K) their similarities with K keys (−inf: excluded); ``keys`` (K,) the keys'
    indices in the data set and ``key_labels`` (K,) their labels (a MoCo queue's ``queue_index``
    and ``queue_labels``)."""
    rows, columns = len(queries), per_query + 1
    fig, axes = plt.subplots(rows, columns, figsize=(1.15 * columns, 1.25 * rows), squeeze=False)

    def show(ax, index: int, title: str):
        image = images[index].cpu()
        ax.imshow(image[0] if image.shape[0] == 1 else image.permute(1, 2, 0), cmap="gray")
        ax.set_title(title, fontsize=6)

    for row, query, similarities in zip(axes, queries.tolist(), neg):
        show(row[0], query, f"query: {classes[int(labels[query])]}")
        top = similarities.topk(per_query)
        for ax, value, j in zip(row[1:], top.values.tolist(), top.indices.tolist()):
            show(ax, int(keys[j]), f"{classes[int(key_labels[j])]} {value:.2f}")
        for ax in row:
            ax.axis("off")
    fig.suptitle(f"each row: a query, then its {per_query} hardest negatives (class, similarity q·k⁻)")
    fig.tight_layout()
    return fig


_LEVEL_STYLES = [("k", "--"), ("tab:red", ":"), ("tab:green", "-."), ("tab:gray", "--")]


def sweep(table: pd.DataFrame, curve: dict[float, str], levels: dict[str, str] | None = None,
          metric: str = "knn_top1", label: str = "", xlabel: str = "", title: str = "",
          mark: float | None = None, ax=None):
    """A metric against a swept hyperparameter: one line through the conditions of ``curve`` (value →
    condition of ``table``, a ``cl.stats.mean_std`` table of means over seeds), a horizontal line at
    each reference condition of ``levels`` (legend label → condition), and a thin vertical line at
    ``mark`` (a value the text singles out, such as the true class prior)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    values = sorted(curve)
    ax.plot(values, [table.loc[curve[v], metric] for v in values], marker="o", label=label or None)
    for i, (text, name) in enumerate((levels or {}).items()):
        colour, style = _LEVEL_STYLES[i % len(_LEVEL_STYLES)]
        ax.axhline(table.loc[name, metric], color=colour, ls=style, lw=1, label=text)
    if mark is not None:
        ax.axvline(mark, color="gray", lw=0.5)
    ax.set(xlabel=xlabel, ylabel=metric_label(metric), title=title)
    if label or levels:
        ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


def confusion(counts: torch.Tensor, classes: list[str], title: str = "", ax=None):
    """A confusion matrix (``counts``: (C, C), row = true class, column = predicted class, as
    ``cl.analysis.confusion_matrix`` counts it) as a heat map of each row in % of its true class,
    every cell written out: the diagonal is each class's recall, a row's other cells say where its
    errors go."""
    share = 100 * counts.float() / counts.sum(1, keepdim=True).clamp(min=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * len(classes) + 2.5, 0.5 * len(classes) + 1.5))
    image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=100)
    ticks = range(len(classes))
    for i in ticks:
        for j in ticks:
            value = share[i, j].item()
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 50 else "black")
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted class", ylabel="true class", title=title)
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    ax.figure.colorbar(image, ax=ax, label="% of the true class")
    ax.figure.tight_layout()
    return ax
