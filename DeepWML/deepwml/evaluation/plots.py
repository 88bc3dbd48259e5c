"""The report's figures (PNG): the paper's Figs. 2-4 and timings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .stats import LV_GROUPS

METRICS = ("dice", "sensitivity", "precision")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, png: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(png, dpi=dpi)
    plt.close(fig)
    return png


def _finite(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def _empty(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def plot_boxplots(rows: list[dict], png: Path) -> Path:
    """Per-slice Dice / sensitivity / precision per center (top) and per disease (bottom)."""
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for col, metric in enumerate(METRICS):
        for row, key in enumerate(("center", "disease")):
            ax = axes[row, col]
            names = sorted({r[key] for r in rows})
            data = [_finite([r[metric] for r in rows if r[key] == n]) for n in names]
            keep = [(n, d) for n, d in zip(names, data) if d.size]
            if keep:
                ax.boxplot([d for _, d in keep], tick_labels=[n for n, _ in keep], showfliers=True)
                ax.tick_params(axis="x", rotation=45 if key == "center" else 0, labelsize=7)
            else:
                _empty(ax)
            ax.set(ylim=(-0.02, 1.02), title=f"{metric} per {key}")
    return _save(fig, png, 90)


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def plot_lv_groups(rows: list[dict], stats_by_metric: dict, png: Path) -> Path:
    """Metrics per lesion-volume group with brackets for significant Bonferroni pairs."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, metric in zip(axes, METRICS):
        data = [_finite([r[metric] for r in rows if r["lv_group"] == g]) for g in LV_GROUPS]
        positions = [i + 1 for i, d in enumerate(data) if d.size]
        if positions:
            ax.boxplot([d for d in data if d.size], positions=positions,
                       tick_labels=[f"{LV_GROUPS[p - 1]}\n(n={data[p - 1].size})" for p in positions])
        else:
            _empty(ax)
        height = 1.04
        for pair in stats_by_metric.get(metric, {}).get("pairwise", []):
            mark = _stars(pair["p_bonferroni"])
            if not mark:
                continue
            a, b = LV_GROUPS.index(pair["a"]) + 1, LV_GROUPS.index(pair["b"]) + 1
            ax.plot([a, a, b, b], [height, height + 0.02, height + 0.02, height], color="k", lw=0.8)
            ax.text((a + b) / 2, height + 0.02, mark, ha="center", va="bottom", fontsize=8)
            height += 0.07
        kw = stats_by_metric.get(metric, {}).get("kruskal", {})
        p = kw.get("p", float("nan"))
        ax.set(ylim=(-0.02, max(1.1, height + 0.05)),
               title=f"{metric} (Kruskal-Wallis p={p:.2g})" if np.isfinite(p) else metric)
    return _save(fig, png, 90)


def plot_overlays(samples: list[dict], png: Path) -> Path:
    """Manual (red) and automatic (green) outlines on FLAIR, as in the paper's Fig. 2."""
    plt = _plt()
    n = max(len(samples), 1)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, samples):
        img = s["image"]
        lo, hi = np.percentile(img, [1, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        overlay = np.zeros((*img.shape, 4))
        overlay[s["truth"] & ~s["pred"]] = (1, 0, 0, 0.55)
        overlay[s["pred"] & ~s["truth"]] = (0, 1, 0, 0.55)
        overlay[s["truth"] & s["pred"]] = (1, 1, 0, 0.55)
        ax.imshow(overlay)
        ax.set_title(f"{s['disease']} {s['case']} slice {s['slice']}", fontsize=9)
    if not samples:
        _empty(axes[0, 0], "no lesion slices")
    fig.suptitle("red: manual only, green: automatic only, yellow: both")
    return _save(fig, png, 80)


def plot_timings(volume_rows: list[dict], png: Path) -> Path:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    per_slice = _finite([r["s_per_slice"] * 1000 for r in volume_rows])
    per_volume = _finite([r["total_s"] for r in volume_rows])
    a1.hist(per_slice, bins=20, color="tab:blue")
    a1.set(xlabel="ms per slice", ylabel="volumes", title="Time per slice")
    a2.hist(per_volume, bins=20, color="tab:orange")
    a2.set(xlabel="s per volume", title="Time per volume")
    return _save(fig, png, 90)
