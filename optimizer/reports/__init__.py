"""Reports: a command's typed document (`optimizer.reports.document`) written as JSON, Markdown or HTML.

The format follows the file name's suffix: `--report out.json`, `out.md`, `out.html` (repeatable).
Each file is written beside its target under a temporary name and renamed into place, so a reader
never sees half a report.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from optimizer.errors import UserError
from optimizer.reports.document import Document, document_from_dict

__all__ = ["ReportError", "FORMATS", "check_report_paths", "render", "to_json", "write_reports"]


class ReportError(UserError):
    """A report path that cannot be written (unknown suffix, missing folder)."""


def _finite(value):
    """The document with NaN and infinities as strings: strict JSON parsers (JavaScript's, jq's) refuse bare NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(document: Document | dict) -> str:
    """The document as strict JSON (non-finite numbers as strings; anything else unknown via str)."""
    data = document.to_dict() if isinstance(document, Document) else document
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False) + "\n"


def _markdown(document: Document) -> str:
    from optimizer.reports.markdown import render_markdown

    return render_markdown(document)


def _html(document: Document) -> str:
    from optimizer.reports.html import render_html

    return render_html(document)


FORMATS: dict[str, Callable[[Document], str]] = {".json": to_json, ".md": _markdown, ".html": _html}


def _protected(models: Sequence[str | os.PathLike | None]) -> set[Path]:
    """The files a report must never replace: each model, its settings (`.json`) and external data (`.data`)."""
    guarded = set()
    for model in models:
        if model is not None:
            base = Path(model).resolve()
            guarded |= {base, base.with_name(base.name + ".json"), base.with_name(base.name + ".data")}
    return guarded


def check_report_paths(paths: Sequence[str | os.PathLike], models: Sequence[str | os.PathLike | None] = ()) -> list[Path]:
    """The report paths, refused up front (ReportError) when a suffix is unknown, a folder is missing, or
    a report would overwrite one of `models` (inputs, outputs, baselines), its settings or its data."""
    checked = []
    guarded = _protected(models)
    for raw in paths:
        path = Path(raw)
        if path.resolve() in guarded:
            raise ReportError(f"--report {path}: would overwrite a model, its settings or its data; choose another name")
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


def render(document: Document | dict, suffix: str) -> str:
    """The document (typed, or its JSON-ready dict) in the format `suffix` names (.json, .md, .html)."""
    return FORMATS[suffix.lower()](document_from_dict(document))


def write_reports(document: Document | dict, paths: Sequence[str | os.PathLike], models: Sequence[str | os.PathLike | None] = ()) -> list[Path]:
    """Write the document once per path, in the format its suffix names; the paths written (ReportError
    for a path `check_report_paths` refuses or the system cannot write)."""
    written = []
    document = document_from_dict(document)
    for path in check_report_paths(paths, models):
        text = render(document, path.suffix)
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
        except OSError as error:
            raise ReportError(f"--report {path}: cannot write: {error.strerror or error}") from None
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise ReportError(f"--report {path}: cannot write: {error.strerror or error}") from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(path)
    return written
