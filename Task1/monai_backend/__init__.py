"""Task 1 with MONAI: two click-guided model families beside the nnU-Net ones.

- ``dynunet``: the challenge's ``interactive-baseline`` style (SW-FastEdit: a residual DynUNet with
  instance norm, the click guidance as extra input channels, Gaussian click heatmaps, DiceCE
  loss, sliding-window inference), at a width that trains on a laptop CPU.
- ``segresnetds``: the Auto3DSeg style of NVIDIA's autoPET II solution (SegResNetDS with deep
  supervision, Dice-CE summed over the levels with weights 1/2^i, CT from [-250, 250] HU and PET
  from [0, 10] SUV to [0, 1], AdamW with a warm-up cosine schedule, adaptive sliding-window
  inference with 0.625 overlap).

Both take CT, PET and the same two click channels as the nnU-Net click trainers (challenge-rule
clicks simulated per training sample with :func:`clicks.simulate.simulate_patch_clicks`, encoded
with :func:`clicks.encodings.encode_clicks`). Modules:

- :mod:`.config`: the model folder format (``monai_model.json`` + ``model.pt``) and each family's
  defaults;
- :mod:`.data`: one preprocessing for training and prediction (MONAI ``Spacing`` and
  ``ScaleIntensityRange``), the training transforms and the click transform;
- :mod:`.train`: ``python -m Task1.monai_backend.train --family dynunet|segresnetds``;
- :mod:`.predict`: :class:`~Task1.monai_backend.predict.MonaiPredictor`, the same interface as
  :class:`Task1.predict.Task1Predictor`, so the entrypoint, the recipe, batch prediction and the
  local challenge run either.

Nothing is imported at package import time.
"""
