"""PURE: the geometry of a grouped bar chart (one group per dataset, one bar per model) for the web page's
SVG, drawn by the template (templates/chart.html), which escapes every label. No script, nothing fetched."""

from __future__ import annotations

import math
from dataclasses import dataclass

PALETTE = ("#1f6fb4", "#e07b1a", "#2f9e44", "#c92a2a", "#7048e8", "#8d5a3b", "#d6336c", "#5c6770")
BAR, BAR_GAP, GROUP_GAP = 18, 2, 22
LEFT, TOP, RIGHT, PLOT_HEIGHT = 56, 28, 16, 160
LABEL_ROW, LEGEND_ROW = 22, 18
TICKS = 5  # at most this many axis values
CHAR_WIDTH, MAX_LABEL = 6.6, 32  # px per character of a 12px label; longer dataset names are cut


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    tooltip: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    color: str = "#222"


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_right: int
    plot_bottom: int
    zero_y: float
    bars: tuple[Bar, ...]
    ticks: tuple[Text, ...]  # y-axis values, right-aligned at plot_left
    groups: tuple[Text, ...]  # dataset names under their group, centred
    legend: tuple[Text, ...]  # model names, each beside a swatch of its colour


def _short(label: str) -> str:
    """A group label cut to MAX_LABEL characters (the bars' tooltips keep the whole name)."""
    return label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "\u2026"


def _tick_text(value: float) -> str:
    return f"{value:.4g}"


def axis(lo: float, hi: float) -> tuple[float, float, float]:
    """Round axis ends and a step of 1, 2, 2.5 or 5 times a power of ten covering [lo, hi] in at most TICKS - 1."""
    if hi == lo:
        hi = lo + 1.0
    raw = (hi - lo) / (TICKS - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    while True:
        low, high = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
        if round((high - low) / step) <= TICKS - 1:
            return low, high, step
        step *= 2


def grouped_bars(title: str, groups: list[str], series: list[tuple[str, list[float | None]]]) -> Chart | None:
    """Bars of each series' value per group; a None value leaves a gap. None when there is no value at all."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not values or not groups:
        return None
    lo, hi, step = axis(min(0.0, *values), max(0.0, *values))
    bars_width = len(series) * (BAR + BAR_GAP) - BAR_GAP
    labels = [_short(group) for group in groups]
    widths = [max(bars_width, round(len(label) * CHAR_WIDTH)) for label in labels]  # a label fits its group
    plot_width = sum(widths) + GROUP_GAP * (len(groups) + 1)
    width = max(LEFT + plot_width + RIGHT, 320)
    bottom = TOP + PLOT_HEIGHT
    height = bottom + LABEL_ROW + LEGEND_ROW * len(series) + 8

    def y_of(value: float) -> float:
        return round(TOP + (hi - value) / (hi - lo) * PLOT_HEIGHT, 2)

    bars, texts = [], []
    left = LEFT + GROUP_GAP
    for g, group in enumerate(groups):
        texts.append(Text(left + widths[g] / 2, bottom + 15, labels[g]))
        start = left + (widths[g] - bars_width) / 2
        left += widths[g] + GROUP_GAP
        for s, (name, vs) in enumerate(series):
            value = vs[g] if g < len(vs) else None
            if value is None:
                continue
            top, base = y_of(max(value, 0.0)), y_of(min(value, 0.0))
            bars.append(Bar(start + s * (BAR + BAR_GAP), top, BAR, max(base - top, 0.5), PALETTE[s % len(PALETTE)],
                            f"{name} on {group}: {value:.4f}"))
    count = round((hi - lo) / step) + 1
    ticks = tuple(Text(LEFT - 6, y_of(lo + step * i) + 4, _tick_text(round(lo + step * i, 10))) for i in range(count))
    legend = tuple(Text(LEFT + 18, bottom + LABEL_ROW + LEGEND_ROW * s + 12, name, PALETTE[s % len(PALETTE)])
                   for s, (name, _) in enumerate(series))
    return Chart(title=title, width=width, height=height, plot_left=LEFT, plot_top=TOP,
                 plot_right=LEFT + plot_width, plot_bottom=bottom, zero_y=y_of(0.0), bars=tuple(bars), ticks=ticks,
                 groups=tuple(texts), legend=legend)


def metric_charts(table: dict) -> dict[str, Chart]:
    """One chart per metric of a results table (webpage.results_table): a bar per model, grouped by dataset."""
    charts = {}
    for metric in table["metrics"]:
        series = [(f"{m['name']} ({m['id']})", [table["values"].get((metric, m["id"], d["id"])) for d in table["datasets"]])
                  for m in table["models"]]
        chart = grouped_bars(metric, [f"{d['name']} ({d['id']})" for d in table["datasets"]], series)
        if chart is not None:
            charts[metric] = chart
    return charts
