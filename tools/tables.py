"""Markdown tables printed by the tools and the benchmarks (``bench/`` imports this; tools never import ``bench``)."""
from __future__ import annotations


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table: the header, the separator and one line per row (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
