"""nnU-Net's ``nnUNetPredictor``, made the way every predictor of this project makes it.

On a machine without CUDA, ``nnUNetPredictor.__init__`` (nnunetv2 2.8.1) prints
"perform_everything_on_device=True is only supported for cuda devices! Setting this to False"
whatever ``perform_everything_on_device`` was passed. The predictors here pass ``False`` on the
CPU, and build a predictor per step, so the line was printed 11 times per case and said
something untrue; :func:`make_nnunet_predictor` keeps it out of the output. Everything else
nnU-Net prints still shows.
"""
from __future__ import annotations

import contextlib
import io


def make_nnunet_predictor(device, **kwargs):
    """``nnUNetPredictor(device=device, **kwargs)``; ``perform_everything_on_device`` is forced to
    False off CUDA, where nnU-Net's constructor message about it is dropped."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    if device.type == "cuda":
        return nnUNetPredictor(device=device, **kwargs)
    kwargs["perform_everything_on_device"] = False
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        predictor = nnUNetPredictor(device=device, **kwargs)
    # anything else nnU-Net printed is passed on
    rest = "".join(line for line in captured.getvalue().splitlines(keepends=True)
                   if "perform_everything_on_device" not in line)
    if rest:
        print(rest, end="")
    return predictor
