"""PURE: plain-text tables with aligned columns, a rule under the header (the recap's run table, results)."""

from __future__ import annotations

from collections.abc import Sequence


def align(cells: Sequence[Sequence[str]], *, indent: str = "", free_last: bool = False) -> list[str]:
    """The rows as lines, columns two spaces apart; `free_last`: the last column (e.g. an error) is not padded."""
    n = len(cells[0]) - (1 if free_last else 0)
    widths = [max(len(row[i]) for row in cells) for i in range(n)]
    lines = []
    for row in cells:
        line = indent + "  ".join(f"{row[i]:<{widths[i]}}" for i in range(n))
        if free_last:
            line += "  " + row[n]
        lines.append(line.rstrip())
    rule = indent + "  ".join("-" * w for w in widths) + ("  " + "-" * len(cells[0][n]) if free_last else "")
    lines.insert(1, rule)
    return lines
