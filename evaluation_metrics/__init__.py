"""The autoPET/CT IV evaluation: Dice, false positive / negative volume, interactive AUC,
lesion-level detection; fast (one labelling pass per mask) and exact.

Array functions live in :mod:`evaluation_metrics.metrics` (and, for where the Dice is lost,
:mod:`evaluation_metrics.breakdown`), file and folder functions in
:mod:`evaluation_metrics.evaluate`, the command line in :mod:`evaluation_metrics.evaluation_metrics`.
The names below are re-exported lazily so that importing the package does no work.
"""
_EXPORTS = {
    "dice_score": "metrics", "false_positive_volume": "metrics", "false_negative_volume": "metrics",
    "compute_metrics_arrays": "metrics", "lesion_detection": "metrics", "interactive_auc": "metrics",
    "measure_case": "metrics", "error_breakdown": "breakdown",
    "compute_metrics": "evaluate", "compute_interactive_metrics": "evaluate",
    "evaluate_folder": "evaluate", "evaluate_task2": "evaluate", "MissingPredictionError": "evaluate",
    "plot_interactive_curves": "plotting",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
