"""autoPET/CT IV Task 2: longitudinal CT (baseline CT + lesion mask + points, follow-up CT).

- :mod:`Task2.inference`: Grand Challenge input layout -> follow-up masks (``run_task2``, CLI).
- :mod:`Task2.pipeline`: one follow-up, arrays in / arrays out (``segment_followup``).
- :mod:`Task2.registration`: baseline -> follow-up registration, carrying masks and points.
- :mod:`Task2.segmentation`: model-free lesion segmentation with the carried baseline as prior.
- :mod:`Task2.cohort`: a Task 2 cohort's layout on disk (pairs and their truth); the local
  challenge run of both steps with scoring is :mod:`local_challenge.task2`.
- :mod:`Task2.convert_dataset`, :mod:`Task2.nnunet_predict`, ``Task2/trainers``: nnU-Net path.

Nothing is imported eagerly: importing this package does no work.
"""
