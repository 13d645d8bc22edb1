"""Metadata values every asset shows in the Dagster UI: markdown previews of tables and plots."""

from __future__ import annotations

import base64
import html
import io

import dagster as dg
import polars as pl


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return html.escape(text).replace("|", "&#124;").replace("\n", " ")


def table_preview(frame: pl.DataFrame, rows: int = 10, columns: list[str] | None = None) -> dg.MarkdownMetadataValue:
    """A markdown table of the first rows; cell text is escaped because product text is untrusted."""
    frame = frame.select(columns) if columns else frame
    head = frame.head(rows)
    lines = ["| " + " | ".join(_cell(name) for name in head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in head.iter_rows()]
    if frame.height > rows:
        lines.append(f"\n_{frame.height - rows} more rows_")
    return dg.MetadataValue.md("\n".join(lines))


def figure_markdown(figure) -> dg.MarkdownMetadataValue:
    """A matplotlib figure inlined as a PNG, so the plot shows in the asset's metadata panel."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{encoded})")


def histogram_markdown(values, title: str, xlabel: str, bins: int = 30) -> dg.MarkdownMetadataValue:
    """A histogram of ``values`` as an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    axis.hist(list(values), bins=bins, color="tab:blue")
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    return figure_markdown(figure)
