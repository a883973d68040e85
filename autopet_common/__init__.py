"""Shared building blocks of the autoPET/CT IV toolkit.

- :mod:`autopet_common.image_io`: images as NumPy arrays in NIfTI index order with their
  geometry; atomic writes; grid and NaN checks.
- :mod:`autopet_common.click_io`: the challenge's click JSON formats (simulator,
  Grand Challenge "Multiple points", Task 2 "Points of interest") and step selection.
- :mod:`autopet_common.phantoms`: synthetic PET/CT and longitudinal CT phantoms.

Nothing is imported eagerly: importing this package does no work.
"""
