"""Reports of studies and runs: read (`records`), tabulated (`tables`), plotted (`plots`) and written as one
self-contained HTML page and a Markdown file (`page`)."""

from ensayo.studies.report.page import build_report, render_html, write_runs_report, write_study_report
from ensayo.studies.report.records import RunRecord

__all__ = ["RunRecord", "build_report", "render_html", "write_runs_report", "write_study_report"]
