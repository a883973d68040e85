"""Shared pytest fixtures: cheap synthetic phantoms (session-scoped, generated once).

- ``tiny_task1_cohort``: path of a written tiny FDG cohort of 3 cases in nnU-Net raw layout
  (``imagesTr``, ``labelsTr``, ``dataset.json``, ``lesions.json``, ``gc/<case>/images/...``);
  ``PHANTOM_FDG_0002`` has no lesion.
- ``tiny_case``: a :class:`autopet_common.phantoms.PetCtCase` (tiny FDG, 6 lesions, seed 0).
- ``tiny_longitudinal_pair``: a :class:`autopet_common.phantoms.LongitudinalPair` (tiny, seed 0).
"""
import pytest


@pytest.fixture(scope="session")
def tiny_task1_cohort(tmp_path_factory):
    from autopet_common.phantoms import write_task1_cohort

    return write_task1_cohort(tmp_path_factory.mktemp("tiny_cohort"), n_cases=3, tracer="FDG",
                              size="tiny", seed=0, empty_every=3, n_lesions=6)


@pytest.fixture(scope="session")
def tiny_case():
    from autopet_common.phantoms import make_petct_case

    return make_petct_case(size="tiny", tracer="FDG", seed=0, n_lesions=6)


@pytest.fixture(scope="session")
def tiny_longitudinal_pair():
    from autopet_common.phantoms import make_longitudinal_pair

    return make_longitudinal_pair(size="tiny", seed=0, n_lesions=4, n_new=1)
