"""``report.html``: one page per run to look at the results: the summary table, the pooled size distribution,
and a gallery of every image's overlay with its count, median ECD and warnings, linking the image's files.

The page is self-contained apart from relative links to the files beside it in the output folder, so the
folder can be moved, zipped or shared as it is.
"""

from __future__ import annotations

import csv
import html
import os
from pathlib import Path
from typing import Any

from rformer_monai.files import write_atomic
from rformer_monai.reports.summary import (
    SIZE_DISTRIBUTION_NAME,
    SUMMARY_CSV_NAME,
    read_image_records,
)
from rformer_monai.reports.uncertainty import MeasurementErrors

__all__ = ["REPORT_NAME", "write_report"]

REPORT_NAME = "report.html"
GALLERY_FILES = (
    ("particles.csv", "_particles.csv"),
    ("ImageJ ROIs", "_rois.zip"),
    ("labels", "_labels.tif"),
    ("size distribution", "_psd.png"),
)
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
tr.pooled { font-weight: bold; background: #f4f4f4; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; width: 360px; }
figure img { width: 100%; border: 1px solid #999; }
.warning { color: #b00; }
"""


def _text(value: object) -> str:
    return html.escape(str(value))


def _read_summary(output_dir: Path) -> list[list[str]]:
    """``summary.csv``'s lines (header first), or none where it is missing."""
    path = output_dir / SUMMARY_CSV_NAME
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _summary_table(summary: list[list[str]], image_count: int) -> str:
    if not summary:
        return "<p>No summary.csv.</p>"
    header, body = summary[0], summary[1:]
    lines = ["<table id='summary'>", "<tr>" + "".join(f"<th>{_text(name)}</th>" for name in header) + "</tr>"]
    for index, row in enumerate(body):
        css = " class='pooled'" if index >= image_count else ""
        lines.append(f"<tr{css}>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _figures(output_dir: Path) -> str:
    figures = sorted(output_dir.glob(SIZE_DISTRIBUTION_NAME.replace(".png", "*.png")))
    parts = []
    for figure in figures:
        svg = figure.with_suffix(".svg")
        link = f" (<a href='{_text(svg.name)}'>SVG</a>)" if svg.is_file() else ""
        parts.append(f"<p><img src='{_text(figure.name)}' alt='size distribution' width='600'>{link}</p>")
    return "\n".join(parts) or "<p>No size distribution.</p>"


def _image_rows(summary: list[list[str]], image_count: int) -> dict[str, dict[str, str]]:
    """``summary.csv``'s image rows by stem (the pooled rows follow them)."""
    if not summary:
        return {}
    rows = [dict(zip(summary[0], cells)) for cells in summary[1 : 1 + image_count]]
    return {row["stem"]: row for row in rows}


def _true_range(row: dict[str, str], name: str, unit: str = "") -> str:
    """`` (true likely low–high unit)`` from a summary row's range columns, or nothing where they are empty."""
    low, high = row.get(f"{name}_low", ""), row.get(f"{name}_high", "")
    return f" (true likely {_text(low)}&ndash;{_text(high)}{' ' + _text(unit) if unit else ''})" if low and high else ""


def _gallery(output_dir: Path, records: list[dict[str, Any]], rows: dict[str, dict[str, str]]) -> str:
    cards = []
    for record in records:
        stem = str(record["stem"])
        row = rows.get(stem, {})
        median = record.get("ecd_median")
        median_text = "–" if median in (None, "") or median != median else f"{float(median):.4g} {record['unit']}"
        warnings = ", ".join([*(record.get("warnings") or []), *([record["warning"]] if record.get("warning") else [])])
        warning_html = f"<br><span class='warning'>warnings: {_text(warnings)}</span>" if warnings else ""
        links = " · ".join(
            f"<a href='{_text(stem + suffix)}'>{_text(name)}</a>"
            for name, suffix in GALLERY_FILES
            if (output_dir / f"{stem}{suffix}").is_file()
        )
        cards.append(
            f"<figure><a href='{_text(stem)}_overlay.png'><img src='{_text(stem)}_overlay.png' alt='{_text(stem)}'></a>"
            f"<figcaption><b>{_text(stem)}</b>: <span class='count'>{_text(record.get('particle_count', ''))}</span> "
            f"particles{_true_range(row, 'count')}, median ECD {_text(median_text)}"
            f"{_true_range(row, 'ecd_median', record['unit'])}{warning_html}<br>{links}</figcaption></figure>"
        )
    return "<div class='gallery'>\n" + "\n".join(cards) + "\n</div>"


def _errors_paragraph(errors: MeasurementErrors | None, reason: str) -> str:
    if errors is None:
        reason_text = f": {_text(reason)}" if reason else ""
        return f"<p id='errors'>No ranges for the true count and median ECD{reason_text}.</p>"
    low, high = errors.percentiles
    return (
        f"<p id='errors'>How wrong these numbers may be: {_text(errors.describe())}. In each row, "
        "<code>count_low</code>&ndash;<code>count_high</code> and <code>ecd_median_low</code>&ndash;"
        f"<code>ecd_median_high</code> are the true values those errors allow between their {low:g}th and "
        f"{high:g}th percentile: such a range held the truth on {high - low:g} % of those images. It holds for "
        f"micrographs like them ({_text(errors.protocol)}) and is left empty for images the trust check flagged.</p>"
    )


def write_report(output_dir: str | os.PathLike, errors: MeasurementErrors | None = None, errors_reason: str = "") -> Path:
    """Write ``OUT/report.html`` over the images complete in ``output_dir`` (after the summary is written).

    Args:
        output_dir: the run's output folder.
        errors: the measured errors behind ``summary.csv``'s ranges, where they apply.
        errors_reason: why no errors apply, where ``errors`` is None.

    Returns:
        The path written.
    """
    output_dir = Path(output_dir)
    records = read_image_records(output_dir)
    summary = _read_summary(output_dir)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Particle report: {_text(output_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>Particle report</h1>
<p>Files: <a href="{SUMMARY_CSV_NAME}">summary.csv</a> · <a href="run.json">run.json</a> (settings, weights,
per-image records). Sizes are equivalent circular diameters (ECD) of the particles off the image border.</p>
<h2>Summary</h2>
{_errors_paragraph(errors, errors_reason)}
{_summary_table(summary, len(records))}
<h2>Size distribution</h2>
{_figures(output_dir)}
<h2>Images</h2>
{_gallery(output_dir, records, _image_rows(summary, len(records)))}
</body></html>
"""
    return write_atomic(output_dir / REPORT_NAME, lambda temporary: temporary.write_text(page, encoding="utf-8"))
