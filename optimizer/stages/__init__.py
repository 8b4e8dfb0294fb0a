"""The stages `optimize()` runs in order, each a module with one job, handing each other plain objects:

- `reference`: output checks, loading the original (outputs pruned), its statistics and reference outputs.
- `pipeline`: run -> verify -> bisect -> drop over the passes; a typed `PipelineOutcome`.
- `variants`: candidate graphs (`Variant`), the lossy stage's variant, and which variant ships.
- `tuning`: timing the variants under onnxruntime session configurations.
- `output`: publishing the shipped variant with its external data and settings file.
"""

__all__ = ["reference", "pipeline", "variants", "tuning", "output"]
