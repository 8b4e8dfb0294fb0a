#!/usr/bin/env bash
# The CI recipe (README "In CI"): gate a pull request's change to a model, not the optimizer's work.
#
# Both the pull request's model and the base branch's model are optimized the same way (same level,
# same inputs, no tuning) and the optimized PR model is gated against the optimized base model, both
# timed under onnxruntime's defaults (--no-config) in the same run: --max-regression then measures what
# the pull request changed. The shipped model is tuned afterwards, outside the gate.
#
#   PR_MODEL=models/classifier.onnx BASE_MODEL=baseline.onnx INPUTS=models/sample.npz OUT=ci scripts/ci_recipe.sh
#
# Settings (environment): PR_MODEL, BASE_MODEL (may be missing: a new model gets the static gates
# only), INPUTS (an .npz; empty: generated inputs, saved to OUT/inputs.npz and reused), OUT (folder),
# LEVEL (O2), MAX_SIZE (100MB), MAX_REGRESSION (5%), MAX_ERROR (cos=0.999), FORBID_OP (Loop),
# BUDGET (20 s of timing), TUNE_BUDGET (0: no tuning of the shipped model), OPTIMIZE (the command: optimize).
# Exit status: the gate's (0 pass, 1 a gate failed, 2 bad input).
set -euo pipefail

: "${PR_MODEL:?set PR_MODEL to the model of the pull request}"
: "${OUT:=ci}"
: "${LEVEL:=O2}"
: "${MAX_SIZE:=100MB}"
: "${MAX_REGRESSION:=5%}"
: "${MAX_ERROR:=cos=0.999}"
: "${FORBID_OP:=Loop}"
: "${BUDGET:=20}"
: "${TUNE_BUDGET:=0}"
: "${OPTIMIZE:=optimize}"
read -r -a optimize <<< "$OPTIMIZE"
mkdir -p "$OUT"

step() { printf '::group::%s\n' "$*" >&2; }
done_step() { printf '::endgroup::\n' >&2; }

# 1. The inputs both models run on: the given .npz, else generated once and saved, so both use the same.
inputs=(--inputs "${INPUTS:-$OUT/inputs.npz}")
if [[ -z "${INPUTS:-}" ]]; then
  step "generate inputs"
  "${optimize[@]}" run "$PR_MODEL" -o "$OUT/pr.opt.onnx" --level "$LEVEL" --no-tune --force --save-inputs "$OUT/inputs.npz" -q
  done_step
fi

# 2. Optimize both models the same way (no tuning: tuned settings are per machine and per run).
step "optimize the pull request's model"
"${optimize[@]}" run "$PR_MODEL" -o "$OUT/pr.opt.onnx" --level "$LEVEL" --no-tune --force "${inputs[@]}" --report "$OUT/optimize.md" -q
done_step
gate=(--max-size "$MAX_SIZE" --forbid-op "$FORBID_OP")
if [[ -n "${BASE_MODEL:-}" && -f "${BASE_MODEL:-}" ]]; then
  step "optimize the base branch's model"
  "${optimize[@]}" run "$BASE_MODEL" -o "$OUT/base.opt.onnx" --level "$LEVEL" --no-tune --force "${inputs[@]}" -q
  done_step
  gate+=(--baseline "$OUT/base.opt.onnx" --max-regression "$MAX_REGRESSION" --max-error "$MAX_ERROR" --no-config --budget "$BUDGET")
fi

# 3. Gate the optimized PR model against the optimized base model, both under onnxruntime's defaults.
step "gate"
status=0
"${optimize[@]}" check "$OUT/pr.opt.onnx" "${gate[@]}" "${inputs[@]}" --report "$OUT/check.md" --report "$OUT/check.html" || status=$?
done_step

# 4. Only a model that passed is tuned for shipping (its settings file lands beside it).
if [[ $status -eq 0 && "$TUNE_BUDGET" != "0" ]]; then
  step "tune the shipped model"
  "${optimize[@]}" tune "$OUT/pr.opt.onnx" -o "$OUT/pr.opt.onnx.json" "${inputs[@]}" --budget "$TUNE_BUDGET" -q
  done_step
fi
cat "$OUT/optimize.md" "$OUT/check.md" > "$OUT/comment.md"
exit "$status"
