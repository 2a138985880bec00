"""Reports of the validation gates (validate_manifest, encode_latents): JSON, quarantine CSV,
Markdown summary, a rich table, and the gate's exit code."""
from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from dmospeech.ops.atomic import write_json_atomic, write_text_atomic
from dmospeech.data.manifest import QUARANTINE_REASONS
from dmospeech.data.validate import ValidationReport


def quarantine_csv(report: ValidationReport) -> str:
    """The quarantine summary as CSV: stage, reason, count, description."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["stage", "reason", "count", "description"])
    for row in report.quarantine_summary:
        writer.writerow([row.stage, row.reason, row.count, QUARANTINE_REASONS.get(row.reason, "unknown reason")])
    return out.getvalue()


def summary_markdown(report: ValidationReport) -> str:
    """A short human-readable summary: verdict, failures, row counts, quarantine counts."""
    lines = [f"# {report.gate}: {'PASSED' if report.success else 'FAILED'}", "",
             f"{len(report.checks) - len(report.failures)} of {len(report.checks)} checks passed.", ""]
    if report.failures:
        lines += ["## Failures", ""] + [f"- {check.message()}" for check in report.failures] + [""]
    lines += ["## Rows", "", "| table | rows |", "|---|---|"]
    lines += [f"| {table} | {count} |" for table, count in report.row_counts.items()]
    lines += ["", "## Quarantine", "", "| stage | reason | count |", "|---|---|---|"]
    lines += [f"| {row.stage} | {row.reason} | {row.count} |" for row in report.quarantine_summary]
    return "\n".join(lines) + "\n"


def write_report(report: ValidationReport, report_dir: str | os.PathLike) -> Path:
    """Write report.json, quarantine_summary.csv and summary.md into `report_dir` (each atomically)."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", asdict(report), indent=2, default=str)
    write_text_atomic(out / "quarantine_summary.csv", quarantine_csv(report))
    write_text_atomic(out / "summary.md", summary_markdown(report))
    return out


def print_report(report: ValidationReport, console: Optional[Console] = None) -> None:
    """Print the checks (failures first) as a rich table, then the quarantine counts."""
    console = console or Console()
    checks = Table(title=f"{report.gate}: {'PASSED' if report.success else 'FAILED'}")
    for name in ("ok", "expectation", "where", "failing", "rows"):
        checks.add_column(name)
    for check in sorted(report.checks, key=lambda c: c.success):
        checks.add_row("[green]ok[/]" if check.success else "[red]FAIL[/]", check.expectation, check.where,
                       str(check.unexpected_count), check.error or ", ".join(check.failing_rows[:5]))
    console.print(checks)
    counts = ", ".join(f"{row.stage}/{row.reason}: {row.count}" for row in report.quarantine_summary)
    console.print(f"quarantine: {counts or 'empty'}")


def finish_gate(report: ValidationReport, report_dir: str | os.PathLike) -> int:
    """Write and print the report; on failure name every failed check on stderr. The exit code."""
    write_report(report, report_dir)
    print_report(report)
    if report.success:
        return 0
    print(f"{report.gate} failed: {len(report.failures)} of {len(report.checks)} checks "
          f"(report in {report_dir}):\n{report.failure_message()}", file=sys.stderr)
    return 1
