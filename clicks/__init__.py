"""Click simulation (the challenge's algorithm, exact, on the CPU), click formats and encodings.

- :func:`simulate_clicks` / :func:`process_image`: the published Task 1 / Task 2 click
  simulation (``clicks.simulate``), arrays in NIfTI order ``[i, j, k]``.
- :func:`lesion_centre_points`: per-lesion centres of gravity (Task 2 "Points of interest").
- :mod:`clicks.encodings`: Gaussian and distance-transform ball heatmaps.
- :func:`clicks_to_gc_format`, :func:`clicks_at_step`: re-exported from
  :mod:`autopet_common.click_io`.

Attributes are imported lazily: importing this package does no work.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "clicks_to_gc_format": "autopet_common.click_io",
    "clicks_at_step": "autopet_common.click_io",
    "gc_format_to_clicks": "autopet_common.click_io",
    "read_clicks_json": "autopet_common.click_io",
    "write_clicks_json": "autopet_common.click_io",
    "simulate_clicks": "clicks.simulate",
    "process_image": "clicks.simulate",
    "lesion_centre_points": "clicks.simulate",
    "write_lesion_centre_points": "clicks.simulate",
    "gaussian_heatmap": "clicks.encodings",
    "ball_heatmap": "clicks.encodings",
    "encode_clicks": "clicks.encodings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clicks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
