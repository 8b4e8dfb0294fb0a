"""The framework never imports the registered passes; the passes import the framework.

Only `optimizer/api.py` (which builds the pipeline from the registry) and `optimizer/cli.py` (which lists
the passes) may import `passes`; every other module in `optimizer/` — pipeline, rewriter, graph helpers,
io, measure, the lossy stage, reports — must not, not even inside a function. Every bad-input error
shares one base class, so the command line maps them all to exit 2.
"""

import ast
import importlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_TO_IMPORT_PASSES = {"optimizer/api.py", "optimizer/cli.py"}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_framework_imports_nothing_from_the_passes():
    offenders = {}
    for path in sorted((ROOT / "optimizer").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in ALLOWED_TO_IMPORT_PASSES:
            continue
        bad = sorted(name for name in _imported_modules(path) if name == "passes" or name.startswith("passes."))
        if bad:
            offenders[relative] = bad
    assert offenders == {}, f"framework modules import the registered passes: {offenders}"


def test_the_check_sees_a_violation(tmp_path):
    """The AST walk finds imports placed inside functions too (they hid the cycle before)."""
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from passes.fusion import gelu\n    import passes\n")
    assert _imported_modules(sample) == {"passes.fusion", "passes"}


def test_every_bad_input_error_is_a_user_error():
    from optimizer.errors import UserError

    expected = {
        "optimizer.io": "ModelInputError", "optimizer.verify": "VerificationInputError", "optimizer.runtime": "ConfigError",
        "optimizer.tune": "TuningError", "optimizer.lossy": "LossyInputError", "optimizer.partition": "PartitionError",
        "optimizer.reports": "ReportError", "optimizer.gates": "GateInputError", "optimizer.comparison": "ComparisonError",
    }
    for module, name in expected.items():
        cls = getattr(importlib.import_module(module), name)
        assert inspect.isclass(cls) and issubclass(cls, UserError), f"{module}.{name}"


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_the_framework_or_the_passes_is_over_120_lines():
    long = {
        f"{path.relative_to(ROOT).as_posix()}:{name}": lines
        for package in ("optimizer", "passes") for path in sorted((ROOT / package).rglob("*.py"))
        for name, lines in _functions(path) if lines > 120
    }
    assert long == {}, f"functions over 120 lines: {long}"


def test_optimize_fits_on_a_screen():
    (lines,) = [lines for name, lines in _functions(ROOT / "optimizer" / "api.py") if name == "optimize"]
    assert lines <= 60, f"optimize() is {lines} lines: it should stay a short sequence of stage calls"
