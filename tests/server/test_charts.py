"""server/charts.py: the bar chart's geometry (pure): bar heights follow the values on a round axis, a missing
value leaves a gap, negative values hang below the zero line, and no value at all means no chart."""

from __future__ import annotations

import pytest

from server.charts import PLOT_HEIGHT, TOP, axis, grouped_bars, metric_charts


def test_bars_are_proportional_to_their_values_on_a_round_axis():
    chart = grouped_bars("AUC", ["d1", "d2"], [("m1", [0.5, 1.0]), ("m2", [None, 0.25])])
    assert [b.tooltip for b in chart.bars] == ["m1 on d1: 0.5000", "m1 on d2: 1.0000", "m2 on d2: 0.2500"]
    heights = [b.height for b in chart.bars]
    assert heights == [PLOT_HEIGHT / 2, PLOT_HEIGHT, PLOT_HEIGHT / 4]
    assert all(b.y + b.height == pytest.approx(chart.zero_y) for b in chart.bars)
    assert [t.text for t in chart.ticks] == ["0", "0.25", "0.5", "0.75", "1"]
    assert [g.text for g in chart.groups] == ["d1", "d2"] and [lg.text for lg in chart.legend] == ["m1", "m2"]
    assert len({b.color for b in chart.bars}) == 2  # one colour per model
    assert chart.groups[0].x < chart.groups[1].x and chart.bars[0].x < chart.bars[1].x


def test_negative_values_hang_below_zero_and_nothing_means_no_chart():
    chart = grouped_bars("delta", ["d"], [("m", [-0.5]), ("n", [1.0])])
    neg, pos = chart.bars
    assert neg.y == pytest.approx(chart.zero_y) and pos.y + pos.height == pytest.approx(chart.zero_y)
    assert chart.zero_y > TOP and neg.height == pytest.approx(pos.height / 2, abs=0.02)
    assert grouped_bars("x", ["d"], [("m", [None])]) is None
    assert grouped_bars("x", [], []) is None


@pytest.mark.parametrize("lo, hi, expected", [(0, 0.9877, (0, 1, 0.25)), (0, 123, (0, 150, 50)),
                                              (0, 0, (0, 1, 0.25)), (-0.3, 0.7, (-0.5, 1, 0.5))])
def test_axis_ends_are_round(lo, hi, expected):
    assert axis(lo, hi) == pytest.approx(expected)


def test_metric_charts_skip_metrics_without_numbers():
    table = {"metrics": ["AUC", "note"], "models": [{"id": 1, "name": "cnn"}], "datasets": [{"id": 7, "name": "h"}],
             "values": {("AUC", 1, 7): 0.9, ("note", 1, 7): None}}
    charts = metric_charts(table)
    assert list(charts) == ["AUC"] and charts["AUC"].legend[0].text == "cnn (1)"
    assert charts["AUC"].groups[0].text == "h (7)"


def test_long_dataset_names_widen_their_group_and_are_cut():
    long = "a-hospital-with-a-very-long-dataset-name-indeed (12)"
    chart = grouped_bars("AUC", ["short (1)", long], [("m", [0.5, 0.6])])
    first, second = chart.groups
    assert second.text.endswith("\u2026") and len(second.text) == 32
    assert second.x - first.x > len(second.text) * 6.6 / 2  # the labels do not overlap
    assert chart.bars[1].tooltip.startswith("m on " + long)
    assert chart.plot_right > second.x
