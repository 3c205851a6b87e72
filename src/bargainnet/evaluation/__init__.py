"""Evaluation, one job per module:

- :mod:`.protocols` — the named scoring protocols (``published``, ``standard``)
- :mod:`.metrics` — MSE, PSNR, fMSE per image and per batch, foreground-ratio bins
- :mod:`.evaluator` — datasets, methods (baselines and weights files) and :func:`evaluate`
- :mod:`.report` — Table 1-style Markdown, CSV and JSON (:func:`write_report`)
- :mod:`.plots` — the report's figures
- :mod:`.baselines`, :mod:`.color_transfer` — the classical colour-statistics methods
- :mod:`.analysis` — domain-code analysis (paper Table 2) and inharmony ranking
- :mod:`.bradley_terry` — user-study pairs to Bradley–Terry scores

Python::

    from bargainnet.evaluation import load_dataset, resolve_methods, evaluate, write_report
    data = load_dataset("iHarmony4", "test")
    methods = resolve_methods(["composite", "reinhard", "model.safetensors"], device="cpu")
    result = evaluate(data, methods, protocol="published", batch_size=8)
    write_report(result, "outputs/eval")

Names are re-exported lazily (importing a light submodule does not import torch).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Protocol", "PROTOCOLS", "PROTOCOL_NAMES", "get_protocol"), ".protocols"),
    **dict.fromkeys(("image_metrics", "batch_metrics", "RATIO_BINS", "ratio_bin"), ".metrics"),
    **dict.fromkeys(("Method", "EvaluationResult", "IHARMONY4_SUBSETS", "NearestMasks", "load_dataset",
                     "baseline_method", "model_method", "resolve_methods", "evaluate", "summarize",
                     "subsample_indices"), ".evaluator"),
    **dict.fromkeys(("PAPER_TABLE1", "PAPER_RATIO_TABLE", "comparison_table", "ratio_table", "paper_tables",
                     "markdown_report", "write_report", "json_safe"), ".report"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
