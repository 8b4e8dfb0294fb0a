"""A job's options (the manifest's keys, JSON values) as `optimizer.api.optimize` keywords and gate checks.

The main command's defaults apply (level O2, verification and tuning on, a 30 s budget); list options
take a list or comma-separated text; bad values raise the library's own UserError, so the worker
reports them as that model's bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["optimize_arguments", "check_gates"]


def _names(value) -> list[str]:
    """A list option given as a list or as comma-separated text."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def _input_shapes(value) -> dict:
    from optimizer.verify import VerificationInputError, parse_input_shapes

    try:
        if isinstance(value, Mapping):
            return {name: tuple(int(d) for d in dims) for name, dims in value.items()}
        return parse_input_shapes(_names(value) if not isinstance(value, (list, tuple)) else [str(v) for v in value])
    except (ValueError, TypeError) as error:
        raise VerificationInputError(f"input_shape {value!r}: {error}") from None


def _lossy(options: Mapping):
    """LossyOptions from the quantization/pruning options, or None when none is asked for."""
    from optimizer.error_budget import ErrorBudget
    from optimizer.lossy import LossyInputError, LossyOptions

    if options.get("quantize", "none") == "none" and options.get("prune_weights") is None:
        return None
    ratio = options.get("prune_weights")
    if isinstance(ratio, str):
        method, _, value = ratio.partition(":")
        try:
            ratio = float(value) if method == "magnitude" else None
        except ValueError:
            ratio = None
        if ratio is None:
            raise LossyInputError(f"prune_weights {options['prune_weights']!r}: expected magnitude:RATIO")
    try:
        budget = ErrorBudget.parse(_names(options.get("max_error", [])))
    except ValueError as error:
        raise LossyInputError(str(error)) from None
    return LossyOptions(
        quantize=options.get("quantize", "none"),
        calibration=Path(options["calibration"]) if options.get("calibration") else None,
        budget=budget,
        per_channel=bool(options.get("per_channel", True)),
        quant_format=options.get("quant_format", "qdq"),
        exclude_nodes=tuple(_names(options.get("exclude_nodes", []))),
        op_types=tuple(_names(options.get("op_types", []))) or None,
        prune_weights=ratio,
        time_budget_s=float(options.get("budget", 30.0)),
    )


def optimize_arguments(options: Mapping) -> dict:
    """`optimizer.api.optimize` keywords from a job's options (UserError for bad values)."""
    from optimizer import verify

    keywords = {
        "level": options.get("level", "O2"),
        "passes": _names(options["passes"]) if options.get("passes") else None,
        "skip_passes": _names(options.get("skip_passes", [])),
        "verify": bool(options.get("verify", True)),
        "inputs": verify.load_inputs(options["inputs"]) if options.get("inputs") else None,
        "input_shapes": _input_shapes(options.get("input_shape") or {}),
        "tune": bool(options.get("tune", True)),
        "tune_budget": float(options.get("budget", 30.0)),
        "objective": options.get("objective", "latency"),
        "batch": int(options.get("batch", 1)),
        "lossy": _lossy(options),
        "prune_outputs": _names(options["prune_outputs"]) if options.get("prune_outputs") else None,
    }
    for key in ("rtol", "atol", "fold_max_bytes", "fold_max_growth", "target_opset", "external_data"):
        if options.get(key) is not None:
            keywords[key] = options[key]
    for key in ("strict", "keep_initializer_inputs"):
        keywords[key] = bool(options.get(key, False))
    return keywords


def check_gates(output: Path, gates: Mapping) -> dict:
    """The static gates of `optimize check` on the written model."""
    from optimizer.gates import CheckOptions, parse_size, run_check

    size = gates.get("max_size")
    check = CheckOptions(
        max_size=parse_size(size) if isinstance(size, str) else size,
        max_params=gates.get("max_params"),
        require_ops=_names(gates.get("require_ops", [])),
        forbid_ops=_names(gates.get("forbid_ops", [])),
    )
    return run_check(output, check).to_dict()
