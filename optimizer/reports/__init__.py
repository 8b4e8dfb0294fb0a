"""Reports: a command's document (`optimizer.reports.document`) written as JSON, Markdown or HTML.

The format follows the file name's suffix: `--report out.json`, `out.md`, `out.html` (repeatable).
Each file is written beside its target under a temporary name and renamed into place, so a reader
never sees half a report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ReportError", "FORMATS", "check_report_paths", "render", "write_reports"]


class ReportError(Exception):
    """A report path that cannot be written (unknown suffix, missing folder)."""


def _json(document: dict) -> str:
    return json.dumps(document, indent=2, default=str) + "\n"


def _markdown(document: dict) -> str:
    from optimizer.reports.markdown import render_markdown

    return render_markdown(document)


def _html(document: dict) -> str:
    from optimizer.reports.html import render_html

    return render_html(document)


FORMATS: dict[str, Callable[[dict], str]] = {".json": _json, ".md": _markdown, ".html": _html}


def check_report_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The report paths, refused up front (ReportError) when a suffix is unknown or a folder is missing."""
    checked = []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() not in FORMATS:
            raise ReportError(f"--report {path}: the suffix picks the format; use .json, .md or .html")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ReportError(f"--report {path}: folder {folder} does not exist")
        if path.is_dir():
            raise ReportError(f"--report {path}: is a folder")
        if not os.access(folder, os.W_OK):
            raise ReportError(f"--report {path}: folder {folder} is not writable")
        checked.append(path)
    return checked


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def render(document: dict, suffix: str) -> str:
    """The document in the format `suffix` names (.json, .md, .html)."""
    return FORMATS[suffix.lower()](document)


def write_reports(document: dict, paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Write the document once per path, in the format its suffix names; the paths written."""
    written = []
    for path in check_report_paths(paths):
        text = render(document, path.suffix)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(path)
    return written
