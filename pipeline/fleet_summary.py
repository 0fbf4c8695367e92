"""The fleet summary: DIR/fleet.csv, DIR/fleet.json and DIR/index.html (a table sortable by any column)."""
from __future__ import annotations

import csv
import html
import json
import os
import time
from pathlib import Path

from .fleet_drive import REPORT, DriveRecord


def with_reports(records: list[dict], out: Path) -> list[dict]:
    """Each record's ``report``: its drive's report.html relative to ``out`` when the file is there."""
    done = []
    for r in records:
        rel = f"{r['drive']}/{REPORT}"
        done.append({**r, "report": rel if (out / rel).is_file() else ""})
    return done


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def write_summary(out: Path, records: list[dict], meta: dict) -> list[Path]:
    """fleet.csv (one row per drive), fleet.json (``meta`` and the rows) and index.html; their paths."""
    records = with_reports(sorted(records, key=lambda r: r["drive"]), out)
    cols = DriveRecord.columns()
    csv_path, json_path, html_path = out / "fleet.csv", out / "fleet.json", out / "index.html"
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in records:
            w.writerow([_cell(r.get(c)) for c in cols])
    os.replace(tmp, csv_path)
    _atomic_write(json_path, json.dumps({**meta, "drives": records}, indent=2) + "\n")
    _atomic_write(html_path, index_html(records, meta))
    return [csv_path, json_path, html_path]


# Click a header to sort by it (numbers as numbers, empty cells last); click again to reverse.
_SORT_JS = """
document.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], asc = th.dataset.dir !== 'asc';
  document.querySelectorAll('th').forEach(h => delete h.dataset.dir); th.dataset.dir = asc ? 'asc' : 'desc';
  const key = tr => tr.cells[col].dataset.v ?? tr.cells[col].textContent.trim();
  const cmp = (a, b) => { if (a === '' || b === '') return (a === '') - (b === '');
    const x = Number(a), y = Number(b);
    const d = isNaN(x) || isNaN(y) ? a.localeCompare(b) : x - y; return asc ? d : -d; };
  [...body.rows].sort((r1, r2) => cmp(key(r1), key(r2))).forEach(r => body.appendChild(r));
}));
"""

_CSS = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; user-select: none; }
th[data-dir=asc]::after { content: ' \\25B2'; } th[data-dir=desc]::after { content: ' \\25BC'; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; } tr.interrupted td { background: #fff6dc; }
"""

_SHOWN = ("drive", "status", "frames", "duration_s", "fps", "wall_s", "dropped", "tracks", "lifetime_median_s",
          "coasted_share", "id_churn_per_min", "relinks", "recoveries", "ttc_events", "min_ttc_s", "error")


def index_html(records: list[dict], meta: dict) -> str:
    """A self-contained page (no network): the fleet's drives, each linking to its report when present."""
    counts = {s: sum(r["status"] == s for r in records) for s in ("done", "failed", "interrupted")}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _SHOWN)
    rows = []
    for r in records:
        cells = []
        for c in _SHOWN:
            v = r.get(c)
            text = html.escape(_cell(v))
            if c == "drive":
                link = r.get("report")
                text = f'<a href="{html.escape(link)}">{text}</a>' if link else text
                cells.append(f'<td title="{html.escape(r["input"])}">{text}</td>')
            elif c == "status" and r.get("resumed"):
                cells.append(f'<td data-v="done">done (earlier run)</td>')
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        rows.append(f'<tr class="{html.escape(r["status"])}">{"".join(cells)}</tr>')
    title = f"dashtrack fleet: {len(records)} drives"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta.get("finished", time.time())))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{title}</h1>\n"
            f"<p>{counts['done']} done, {counts['failed']} failed, {counts['interrupted']} interrupted; "
            f"{when}. Click a column to sort. Also: <a href=\"fleet.csv\">fleet.csv</a>, "
            f"<a href=\"fleet.json\">fleet.json</a>.</p>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) +
            f"\n</tbody></table>\n<script>{_SORT_JS}</script>\n</body></html>\n")
