"""The report's figures: the notebook's two plots and new ones, each saved as PNG and SVG."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .analysis import ConfigSummary, ThroughputRow, target_text, targets_text
from .questions import BatchStudy
from .comparison import Comparison
from ..core.result import BROKEN, TrialResult

# Figure + Agg canvas instead of pyplot: no global state, no GUI backend, safe next to a user's notebook.
DPI = 130
BAND = "shaded: min–max over seeds; dotted: runs that diverged or failed, on their own"
Series = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x, mean, min, max


@dataclass(frozen=True)
class FigurePaths:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def _figure(width: float, height: float, ncols: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _save(fig: Figure, out_dir: Path, name: str, title: str, caption: str) -> FigurePaths:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=DPI)
    fig.savefig(svg)
    return FigurePaths(name, title, caption, png, svg)


def _colors(n: int) -> list:
    return [f"C{i % 10}" for i in range(n)]


def _target_line(ax, target: float, color: str = "green") -> None:
    ax.axhline(target, color=color, linestyle="--", linewidth=1.2, label=f"Target {target_text(target)}")


def _target_lines(ax, summaries: Sequence[ConfigSummary], color: str) -> None:
    """One dashed line per distinct target (workloads bring targets of their own)."""
    for target in sorted({s.spec.target for s in summaries}):
        _target_line(ax, target, color)


def _acc_floor(summaries: Sequence[ConfigSummary]) -> float:
    # The notebook's 0.9-1.0 view, widened for easier datasets' lower targets (Fashion-MNIST).
    return min(0.9, math.floor(20 * (min(s.spec.target for s in summaries) - 0.05)) / 20)


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def epoch_series(results: Sequence[TrialResult], attr: str) -> Series:
    """Per-epoch mean, min and max over seeds; seeds that stopped early count only while they ran."""
    runs = [r.epochs for r in results if r.epochs]
    if not runs:
        return (np.array([]),) * 4
    longest = max(runs, key=len)
    x, mean, lo, hi = [], [], [], []
    for i, point in enumerate(longest):
        vals = _finite([getattr(run[i], attr) for run in runs if len(run) > i])
        if vals:
            x.append(point.epoch), mean.append(np.mean(vals)), lo.append(min(vals)), hi.append(max(vals))
    return np.array(x), np.array(mean), np.array(lo), np.array(hi)


def time_series(results: Sequence[TrialResult], points: int = 200) -> Series:
    """Accuracy against timed training seconds; several seeds are interpolated on their common span. Partial
    points (a cadence evaluation that stopped once it could not meet the target) are left out: their accuracy
    is over the images they saw, not the split."""
    full = [[p for p in r.curve if not p.partial] for r in results]
    curves = [(np.array([p.train_seconds for p in c]), np.array([p.eval_accuracy for p in c])) for c in full if c]
    if len(curves) == 1:
        t, a = curves[0]
        return t, a, a, a
    if not curves:
        return (np.array([]),) * 4
    start, end = max(t[0] for t, _ in curves), min(t[-1] for t, _ in curves)
    grid = np.linspace(start, end, points) if end > start else np.array([start])
    stack = np.array([np.interp(grid, t, a) for t, a in curves])
    return grid, stack.mean(0), stack.min(0), stack.max(0)


def _draw(ax, s: ConfigSummary, series: Callable[[Sequence[TrialResult]], Series], color: str,
          marker: str | None = None) -> None:
    """Mean line and min-max band over the runs that finished; each diverged or failed run dotted on its own,
    because averaging a blown-up run into the others would hide both."""
    kept = [r for r in s.results if r.status not in BROKEN]
    x, mean, lo, hi = series(kept)
    if len(x):
        ax.plot(x, mean, color=color, marker=marker, markersize=4, label=s.label)
        if np.any(hi > lo):
            ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
    for i, r in enumerate(r for r in s.results if r.status in BROKEN):
        x, mean, _, _ = series([r])
        ax.plot(x, mean, color=color, linestyle=":", linewidth=1.2,
                label=f"{s.label} ({r.status})" if i == 0 else None)


def plot_convergence(a: ConfigSummary, b: ConfigSummary, out_dir: Path, name: str = "convergence",
                     title: str | None = None) -> FigurePaths:
    """The notebook's first figure: test accuracy and training loss per epoch, side by side."""
    title = title or f"Convergence: {a.optimizer_name} vs {b.optimizer_name}"
    fig, (acc, loss) = _figure(12, 4.6, 2)
    for s, color in zip((a, b), ("C0", "C3")):
        _draw(acc, s, partial(epoch_series, attr="eval_accuracy"), color, "o")
        _draw(loss, s, partial(epoch_series, attr="train_loss"), color, "o")
    _target_line(acc, a.spec.target)
    acc.set(xlabel="Epoch", ylabel="Test accuracy", title=title)
    loss.set(xlabel="Epoch", ylabel="Training loss", title=f"Training loss: {a.optimizer_name} vs {b.optimizer_name}")
    acc.legend(), loss.legend()
    n = f"{a.n} and {b.n} seeds" if a.n != b.n else f"{a.n} seed{'s' * (a.n > 1)} each"
    return _save(fig, out_dir, name, title, f"Per epoch, mean over seeds ({n}); {BAND}.")


def plot_accuracy_per_epoch(summaries: Sequence[ConfigSummary], out_dir: Path) -> FigurePaths:
    """The notebook's closing figure: every configuration's test accuracy per epoch, 0.9 to 1.0."""
    title = "Comparison of the training methods"
    fig, (ax,) = _figure(11, 5.5)
    for s, color in zip(summaries, _colors(len(summaries))):
        _draw(ax, s, partial(epoch_series, attr="eval_accuracy"), color, "o")
    _target_lines(ax, summaries, "black")
    ax.set(xlabel="Epoch", ylabel="Test accuracy", title=title, ylim=(_acc_floor(summaries), 1.0))
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, out_dir, "accuracy_per_epoch", title, f"Mean over seeds; {BAND}.")


def plot_accuracy_vs_time(summaries: Sequence[ConfigSummary], out_dir: Path) -> FigurePaths:
    """Accuracy at every evaluation against the timed training clock (finer than epochs)."""
    title = "Accuracy against timed training seconds"
    fig, (ax,) = _figure(11, 5.5)
    for s, color in zip(summaries, _colors(len(summaries))):
        _draw(ax, s, time_series, color)
    _target_lines(ax, summaries, "black")
    ax.set(xlabel="Timed training seconds (evaluation excluded)", ylabel="Evaluation accuracy", title=title,
           ylim=(_acc_floor(summaries), 1.0))
    ax.legend(loc="lower right", fontsize="small")
    caption = f"Every evaluation; several seeds are interpolated over the time span they share; {BAND}."
    return _save(fig, out_dir, "accuracy_vs_time", title, caption)


def plot_time_to_target(summaries: Sequence[ConfigSummary], out_dir: Path) -> FigurePaths:
    """Mean time to target per configuration with its 95% CI, every seed as a dot."""
    targets = {s.spec.target for s in summaries}
    several = len(targets) > 1  # then each row names its own target, and the title none
    title = f"Time to {targets_text(targets)}"
    fig, (ax,) = _figure(11, 1.4 + 0.55 * len(summaries))
    ys = np.arange(len(summaries))
    longest = max((max(s.time_to_target.values) for s in summaries if s.time_to_target.n), default=1.0)
    for y, s, color in zip(ys, summaries, _colors(len(summaries))):
        st = s.time_to_target
        if not st.n:
            ax.text(0, y, f"  not reached (0/{s.n})", va="center", color="0.4")
            continue
        ax.barh(y, st.mean, xerr=st.ci95 or 0, color=color, alpha=0.55, capsize=4, height=0.6)
        ax.plot(st.values, [y] * st.n, "o", color="black", markersize=3.5, alpha=0.8)
        ax.text(max(st.values + (st.mean + (st.ci95 or 0),)) + 0.01 * longest, y, f" {s.reached}/{s.n}",
                va="center", fontsize="small")
    ax.set_yticks(ys, [f"{s.label} (to {target_text(s.spec.target)})" if several else s.label for s in summaries])
    ax.set_ylim(len(summaries) - 0.5, -0.5)  # first configuration on top, no row touching an axis
    ax.set(xlabel="Timed training seconds", title=title, xlim=(0, longest * 1.15))
    caption = ("Bars: mean over the seeds that reached the target, with 95% CI; dots: single seeds; "
               "k/n: seeds that reached it.")
    return _save(fig, out_dir, "time_to_target", title, caption)


def plot_batch_studies(studies: Sequence[BatchStudy], out_dir: Path) -> FigurePaths:
    """Time to target and final accuracy against batch size (log scale), 95% CI error bars."""
    title = "Batch size study"
    fig, (tax, aax) = _figure(12, 4.6, 2)
    for study, color in zip(studies, _colors(len(studies))):
        label = study.title.removeprefix("Batch size: ")
        for ax, attr in ((tax, "time_to_target"), (aax, "accuracy")):
            rows = [s for s in study.rows if getattr(s, attr).n]
            stats_ = [getattr(s, attr) for s in rows]
            ax.errorbar([s.spec.batch_size for s in rows], [st.mean for st in stats_],
                        yerr=[st.ci95 or 0 for st in stats_], color=color, marker="o", capsize=4, label=label)
    sizes = sorted({s.spec.batch_size for st in studies for s in st.rows})
    for ax in (tax, aax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel("Batch size")
    tax.set(ylabel="Seconds", title=f"Time to {target_text(studies[0].rows[0].spec.target)}")
    aax.set(ylabel="Final test accuracy", title="Final test accuracy")
    tax.legend(fontsize="small")
    caption = "Mean over seeds with 95% CI; batch sizes that never reached the target are left out of the left panel."
    return _save(fig, out_dir, "batch_size", title, caption)


def plot_inference(rows: Sequence[ThroughputRow], out_dir: Path) -> FigurePaths:
    """Inference throughput: one group of bars per model/label, one bar per batch size."""
    title = "Inference throughput"
    labels = list(dict.fromkeys(r.label for r in rows))
    sizes = sorted({r.batch_size for r in rows})
    fig, (ax,) = _figure(11, 4.8)
    width = 0.8 / len(sizes)
    for i, (bs, color) in enumerate(zip(sizes, _colors(len(sizes)))):
        found = {r.label: r.images_per_second for r in rows if r.batch_size == bs}
        xs = [j + (i - (len(sizes) - 1) / 2) * width for j, lab in enumerate(labels) if lab in found]
        bars = ax.bar(xs, [found[lab] for lab in labels if lab in found], width * 0.95, color=color,
                      label=f"batch {bs}")
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in bars.datavalues], fontsize="x-small", padding=2)
    ax.set_xticks(range(len(labels)), labels)
    ax.set(ylabel="Images per second", title=title)
    ax.legend(fontsize="small")
    return _save(fig, out_dir, "inference", title, "Images per second by batch size (higher is better).")


# Colours of a comparison's verdict in the forest plot (decisions.Verdict); anything else is grey.
VERDICT_COLORS = {"claimed": "C2", "indication": "C1", "exploratory": "C4"}


def plot_forest(comparisons: Sequence[Comparison], verdicts: Sequence[str], out_dir: Path) -> FigurePaths:
    """Every comparison's effect with its 95% interval on one axis per kind: time ratios on a log scale (left of 1:
    the first-named configuration is sooner), accuracy differences in points (right of 0: it is higher)."""
    from .analysis import METRICS

    title = "Effects with 95% intervals"
    panels = [("ratio", "Time ratio, first / second (log scale)", 1.0),
              ("difference", "Difference in final accuracy, first − second (points)", 0.0)]
    rows = {kind: [(c, v) for c, v in zip(comparisons, verdicts) if c.effect and c.effect.kind == kind]
            for kind, _, _ in panels}
    shown = [p for p in panels if rows[p[0]]]
    fig = Figure(figsize=(10, 1.0 + sum(0.9 + 0.38 * len(rows[k]) for k, _, _ in shown)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(shown), 1, squeeze=False,
                        height_ratios=[1 + 0.42 * len(rows[k]) for k, _, _ in shown])[:, 0]
    for ax, (kind, xlabel, null) in zip(axes, shown):
        ax.grid(True, axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ys = np.arange(len(rows[kind]))
        for y, (c, v) in zip(ys, rows[kind]):
            scale = 1 if kind == "ratio" else METRICS[c.metric].scale
            e = c.effect
            color = VERDICT_COLORS.get(v, "0.55")
            ax.plot([e.low * scale, e.high * scale], [y, y], color=color, linewidth=2.2)
            ax.plot(e.estimate * scale, y, "o", color=color, markersize=6)
        ax.axvline(null, color="black", linewidth=1)
        if kind == "ratio":
            ax.set_xscale("log")
            lo, hi = ax.get_xlim()
            ax.set_xticks([v for v in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 2 / 3, 1, 1.5, 2, 4, 8, 16) if lo <= v <= hi])
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}x"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(ys, [f"{c.a_label} vs {c.b_label}" for c, _ in rows[kind]], fontsize="small")
        ax.set_ylim(len(rows[kind]) - 0.5, -0.5)
        ax.set(xlabel=xlabel)
    fig.suptitle(title)
    caption = ("Dot: the estimate; line: its 95% interval. Green: claimed (kept by the family's procedure); "
               "orange: significant alone, not claimed; grey: undecided; purple: exploratory. An interval that "
               "crosses the black line (ratio 1, difference 0) leaves the direction open.")
    return _save(fig, out_dir, "effects", title, caption)
