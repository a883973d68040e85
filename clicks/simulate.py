"""The challenge's click simulation, exact and fast on the CPU.

Reproduces the published autoPET/CT IV simulator (``clicks/simulate_clicks.py`` of the
challenge repository; algorithm in ``../shared/challenge-facts.md``) draw for draw:

- NumPy's legacy generator seeded with 42 once per case (a private ``RandomState(42)``, the
  same stream as ``np.random.seed(42)`` without touching global state), then the same
  ``choice`` calls with the same arguments in the same order.
- Tumor: 26-connected components of the label (``cc3d``; its numbering depends on the memory
  layout, so arrays are labelled Fortran-ordered, as ``nibabel`` gives them to the published
  script, whatever the caller's layout), ``min(budget, n)`` of them sampled without replacement; the
  centre click of each is the first arg-max (C order of the ``[i, j, k]`` array: i slowest)
  of its Euclidean distance transform (unit spacing, distance to the nearest voxel of the
  volume outside the component); fill-up clicks cycle over the sampled components and pick
  one of the voxels with the smallest distance, in ``np.nonzero`` order.
- Background: threshold = ``np.percentile(pet[label == 0], 99.75)`` (linear interpolation,
  float64), region = ``pet > threshold`` outside the label; centre clicks as for tumors;
  fill-up clicks pick any voxel of the component, except for a component whose every voxel
  has distance 1: the published code then picks among all voxels *outside* the component
  (the "background quirk", reproduced by default; ``background_in_component=True`` restricts
  the pick to the component). Where that pick falls on tumor the published code aborts; here
  the pick is drawn again from the same stream.

Speed: each sampled component's distance transform is computed on its bounding box grown by
one voxel and clipped to the volume (``edt``, squared distances, no black border). Inside
that box every distance equals the full-volume one: the nearest voxel outside the component
of any voxel in the box can be moved onto the one-voxel shell (clamping each coordinate to
the box only shortens the distance), and the shell lies outside the component wherever it
is inside the volume; where the box is clipped, the volume border is not background in
either computation. The percentile is computed with two partial sorts in the PET's own
dtype and NumPy's float64 interpolation formula (checked against ``np.percentile`` in the
tests), instead of a full float64 copy.

Arrays are indexed ``[i, j, k]`` (NIfTI order); clicks are lists of Python ints.
Nothing happens at import time.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from autopet_common.click_io import clicks_to_gc_format, empty_clicks
from autopet_common.errors import GridMismatchError, ImageReadError, InputError

SEED = 42
BACKGROUND_PERCENTILE = 99.75
DATASETS = {
    # name: (background clicks?, default click budget)
    "FDG-PETCT": (True, 10),
    "PSMA-FDG-PETCT": (True, 10),
    "Longitudinal-CT": (False, 2),
}
CLICK_FORMATS = ("JSON", "JSON_GC", "heatmap")


class EmptyRegionError(InputError):
    """A click region (tumor or high-uptake background) has no voxel."""


class LabelValueWarning(UserWarning):
    """A label holds values other than 0 and 1 and was binarised (anything non-zero is tumor)."""


# --------------------------------------------------------------------------------------------
# Pure array core
# --------------------------------------------------------------------------------------------

def dataset_settings(dataset_name: str) -> tuple[bool, int]:
    """``(has_background_clicks, default_click_budget)`` of a challenge dataset name."""
    try:
        return DATASETS[dataset_name]
    except KeyError:
        raise ValueError(f"unknown dataset name {dataset_name!r}; choose one of "
                         f"{', '.join(DATASETS)}") from None


def identify_click_region(dataset_name: str) -> tuple[bool, bool, int]:
    """The published helper: ``(tumor_clicks, background_clicks, click_budget)``."""
    with_background, budget = dataset_settings(dataset_name)
    return True, with_background, budget


def binarise_label(label: np.ndarray, case: str = "label") -> np.ndarray:
    """Label -> bool mask (non-zero is tumor), keeping the memory layout (it decides ``cc3d``'s
    component numbering). Values other than 0/1 give a :class:`LabelValueWarning`; NaN is an
    error."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise InputError(f"{case}: label must be a 3D array, got shape {label.shape}")
    if label.dtype == bool:
        return label
    if np.issubdtype(label.dtype, np.floating) and not np.isfinite(label).all():
        raise InputError(f"{case}: label contains NaN or infinite values")
    mask = label != 0
    if np.issubdtype(label.dtype, np.unsignedinteger):
        binary = label.size == 0 or label.max() <= 1
    else:
        binary = np.count_nonzero(mask) == np.count_nonzero(label == 1)
    if not binary:
        values = np.unique(label)
        shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if len(values) > 8 else "")
        warnings.warn(f"{case}: label has values other than 0 and 1 ({shown}); binarised "
                      "(non-zero = tumor)", LabelValueWarning, stacklevel=3)
    return mask


def _numpy_linear_quantile_parts():
    """NumPy's own virtual-index and interpolation functions for method "linear" (so the
    result follows the installed NumPy bit for bit), or the NumPy 2.x formulas if private."""
    try:
        from numpy.lib._function_base_impl import _QuantileMethods, _lerp
        return _QuantileMethods["linear"]["get_virtual_index"], _lerp
    except (ImportError, KeyError, AttributeError):
        def lerp(a, b, t):
            diff = b - a
            return b - diff * (1 - t) if t >= 0.5 else a + diff * t
        return (lambda n, q: (n - 1) * q), lerp


def _linear_percentile(n: int, q: float, order_statistics) -> float:
    """NumPy's "linear" percentile of ``n`` values, given ``order_statistics(i, j)`` returning the
    values at sorted positions ``i`` and ``j`` (0-based); arithmetic in float64 like
    ``np.percentile`` on a float64 array."""
    if n == 0:
        raise ValueError("percentile of an empty array")
    get_virtual_index, lerp = _numpy_linear_quantile_parts()
    quantile = np.true_divide(q, 100)
    virtual = np.asanyarray(get_virtual_index(n, quantile))
    if virtual >= n - 1:
        index = n - 1
        return float(np.float64(order_statistics(index, index)[0]))
    if virtual < 0:
        return float(np.float64(order_statistics(0, 0)[0]))
    previous = np.floor(virtual)
    index = int(previous)
    a, b = order_statistics(index, index + 1)
    gamma = float(np.asanyarray(virtual - previous))
    return float(lerp(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), gamma))


def reference_percentile(values: np.ndarray, q: float = BACKGROUND_PERCENTILE) -> float:
    """``np.percentile(values.astype(np.float64), q)`` (method "linear"), bit for bit, without
    the float64 copy.

    ``values`` is a 1D array (it is partially sorted in place). The two neighbouring order
    statistics are found in the array's own dtype (exact: they are values of the array), then
    NumPy's virtual index and interpolation are applied in float64.
    """
    def order_statistics(i: int, j: int):
        values.partition([i, j] if j != i else [i])
        return values[i], values[j]

    return _linear_percentile(values.size, q, order_statistics)


def background_threshold(pet: np.ndarray, tumor: np.ndarray, q: float = BACKGROUND_PERCENTILE,
                         n_tumor: int | None = None) -> float:
    """``np.percentile(pet[tumor == 0].astype(np.float64), q)``, exactly, fast.

    Only the values at the two needed ranks matter. A cut ``g`` taken from a strided
    subsample keeps the top values ``pet >= g`` outside the tumor; when they include both
    ranks (almost always), the order statistics come from that small set, else from all
    non-tumor values.
    """
    n_tumor = int(np.count_nonzero(tumor)) if n_tumor is None else n_tumor
    n = pet.size - n_tumor
    if n <= 0:
        raise ValueError("no value outside the tumor")

    def order_statistics(i: int, j: int):
        step = max(1, int(round((pet.size / 250_000) ** (1 / 3))))
        sample = np.asarray(pet[::step, ::step, ::step]).ravel()
        if step > 1 and sample.size > 100:
            # 4x the needed share of top values (plus slack) to stay safe with few samples.
            share = min(1.0, 4.0 * (n - i) / n + 50.0 / sample.size)
            k = int(np.floor((1.0 - share) * (sample.size - 1)))
            cut = np.partition(sample, k)[k]
            top = pet >= cut
            top &= ~tumor
            candidates = pet[top]
            below = n - candidates.size  # non-tumor values < cut: all before the needed ranks
            if below <= i:
                candidates.partition([i - below, j - below] if j != i else [i - below])
                return candidates[i - below], candidates[j - below]
        values = pet.T[~tumor.T] if pet.flags.f_contiguous else pet[~tumor]
        values.partition([i, j] if j != i else [i])
        return values[i], values[j]

    return _linear_percentile(n, q, order_statistics)


def _greater_than(array: np.ndarray, threshold: float) -> np.ndarray:
    """``array > threshold`` with the comparison made in float64, as the published code does
    (it reads the PET as float64), without a float64 copy of a float32 array."""
    if array.dtype == np.float32:
        # For float32 x: x > t  <=>  x > (largest float32 <= t).
        t32 = np.float32(threshold)
        if np.float64(t32) > threshold:
            t32 = np.nextafter(t32, np.float32(-np.inf))
        return array > t32
    return array.astype(np.float64, copy=False) > np.float64(threshold)


@dataclass
class _Component:
    """One connected component, cropped to its bounding box grown by one voxel."""

    offset: np.ndarray       # [i, j, k] of the crop's first voxel in the volume
    mask: np.ndarray         # bool crop: voxels of this component
    dist2: np.ndarray        # squared distance transform (0 outside the component)

    def to_volume(self, crop_index: Sequence[int]) -> list[int]:
        return [int(c) + int(o) for c, o in zip(crop_index, self.offset)]

    def centre(self) -> list[int]:
        """First arg-max of the distance transform in C order (i slowest)."""
        return self.to_volume(np.unravel_index(int(np.argmax(self.dist2)), self.dist2.shape))

    def uniform(self) -> bool:
        """True when every voxel has the same distance (in practice: all at distance 1)."""
        inside = self.dist2[self.mask]
        return bool(inside.min() == inside.max())

    def surface_voxels(self) -> np.ndarray:
        """Voxels with the smallest positive distance, ``np.nonzero`` order (crop coordinates)."""
        inside = self.dist2[self.mask]
        return np.argwhere(self.mask & (self.dist2 == inside.min()))

    def voxels(self) -> np.ndarray:
        return np.argwhere(self.mask)


def _component(labels: np.ndarray, label: int, bbox: Sequence[slice]) -> _Component:
    import edt  # imported lazily: no work at import time

    shape = labels.shape
    lo = [max(0, s.start - 1) for s in bbox]
    hi = [min(n, s.stop + 1) for s, n in zip(bbox, shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    mask = np.ascontiguousarray(labels[box] == label)
    if mask.all():
        # The component fills the volume (no voxel outside it): no finite distance; mirror
        # scipy's full-volume result so the published behaviour is kept.
        from scipy import ndimage
        full = labels == label
        dist2 = (ndimage.distance_transform_edt(full) ** 2)[box]
    else:
        dist2 = edt.edtsq(mask, black_border=False, parallel=1)
    return _Component(np.asarray(lo), mask, np.ascontiguousarray(dist2))


def _labelled_components(mask: np.ndarray):
    """26-connected components (numbered like the published code: ``cc3d`` on the array as
    laid out in memory), their labels ``1..n`` and a function giving a label's bounding box.

    Bounding boxes come from the (sparse) foreground voxel list, which is much faster than a
    full-volume statistics pass."""
    import cc3d

    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    # Flat indices in memory order (a view, no copy, for C- or Fortran-ordered arrays).
    order = "F" if mask.flags.f_contiguous and not mask.flags.c_contiguous else "C"
    flat = np.flatnonzero(mask.ravel(order=order))
    ids = labels.ravel(order=order)[flat]

    def bbox(label: int) -> tuple[slice, ...]:
        coords = np.unravel_index(flat[ids == label], mask.shape, order=order)
        return tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)

    return labels, np.arange(1, int(n) + 1, dtype=labels.dtype), bbox


def _integers(rng: Any, low: int, high: int, size: int) -> np.ndarray:
    """``size`` integers in ``[low, high)`` from a ``Generator`` or a legacy ``RandomState``."""
    if hasattr(rng, "integers"):
        return rng.integers(low, high, size=size)
    return rng.randint(low, high, size=size)


def _perturb(click: list[int], offset: int | None, tumor: np.ndarray, rng: Any, inside_tumor: bool,
             symmetric: bool = False, allowed: np.ndarray | None = None) -> list[int]:
    """Add a random offset per axis, 0..offset voxels (the challenge's rule) or, with
    ``symmetric``, -offset..offset; keep it only if the moved point stays in the volume, on
    the same side of the tumor mask (``tumor == inside_tumor``, as the published code checks)
    and, when given, in ``allowed`` (patch voxels that are not padding)."""
    if not offset:
        return click
    low = -int(offset) if symmetric else 0
    moved = [c + int(d) for c, d in zip(click, _integers(rng, low, int(offset) + 1, 3))]
    if not all(0 <= m < s for m, s in zip(moved, tumor.shape)):
        return click
    point = tuple(moved)
    if bool(tumor[point]) != inside_tumor or (allowed is not None and not allowed[point]):
        return click
    return moved


def _check_offset(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a whole number of voxels >= 0, got {value!r}") from None
    if number != float(value) or number < 0:
        raise ValueError(f"{name} must be a whole number of voxels >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class ClickDrawSettings:
    """How clicks are drawn beyond the challenge's rules; the defaults are the challenge's.

    ``center_offset`` / ``edge_offset``: random offset of centre / fill-up clicks, in voxels per
    axis (None or 0: none). ``symmetric_offsets``: offsets in [-n, n] instead of the challenge's
    [0, n] (training uses it: the challenge's one-sided offsets would teach a network a drift
    towards the far corner). ``background_in_component``: fill-up clicks of a background
    component whose voxels all have distance 1 stay in the component, instead of the
    published code's pick among all voxels outside it (the "background quirk").
    """

    center_offset: int | None = None
    edge_offset: int | None = None
    symmetric_offsets: bool = False
    background_in_component: bool = False


def draw_clicks(tumor: np.ndarray, pet: np.ndarray | None, budget: int, rng: Any, *,
                perturb_rng: Any = None, settings: ClickDrawSettings = ClickDrawSettings(),
                valid: np.ndarray | None = None, strict: bool = True, case: str = "case",
                tumor_budget: int | None = None) -> dict[str, list]:
    """The challenge's click rules on checked arrays: the one definition that the simulator
    (:func:`simulate_clicks`) and the training-time patch clicks
    (:func:`simulate_patch_clicks`) share.

    ``tumor``: bool mask; components are numbered by ``cc3d`` in the array's memory order
    (the published script sees Fortran-ordered arrays: :func:`simulate_clicks` passes those).
    ``pet``: same shape, or None for no background clicks. ``rng``: draws the component
    samples and fill-up picks (``RandomState(42)`` gives the challenge's clicks; a
    ``Generator`` works too). ``perturb_rng``: draws the offsets (default: ``rng``).
    ``valid``: voxels that belong to the image (a training patch's non-padding voxels):
    background clicks, their percentile and moved clicks stay in it. ``strict``: an empty
    background region raises :class:`EmptyRegionError` (the simulator) instead of giving no
    background clicks (a patch). ``tumor_budget``: tumor clicks when they differ from the
    background clicks' ``budget`` (a training patch's share of a case's clicks,
    :func:`case_share_of_tumor_clicks`); None: ``budget``.
    Returns ``{"tumor": [[i, j, k], ...], "background": [...]}``.
    """
    perturb_rng = rng if perturb_rng is None else perturb_rng
    tumor_budget = budget if tumor_budget is None else int(tumor_budget)
    clicks = empty_clicks()

    def move(click: list[int], offset: int | None, on_tumor: bool) -> list[int]:
        return _perturb(click, offset, tumor, perturb_rng, on_tumor, settings.symmetric_offsets, valid)

    if tumor_budget > 0 and tumor.any():
        def surface_pick(comp: _Component) -> list[int]:
            surface = comp.surface_voxels()
            return comp.to_volume(surface[rng.choice(surface.shape[0])])

        clicks["tumor"] = _component_clicks(tumor, tumor_budget, rng, settings, lambda c, o: move(c, o, True),
                                            surface_pick)

    if pet is None or budget <= 0:
        return clicks
    excluded = tumor if valid is None else (tumor | ~valid)
    n_excluded = int(np.count_nonzero(excluded))
    if n_excluded == tumor.size:
        if strict:
            raise EmptyRegionError(f"{case}: the label covers the whole image; no background "
                                   "voxel for background clicks")
        return clicks
    threshold = background_threshold(pet, excluded, BACKGROUND_PERCENTILE, n_excluded)
    region = _greater_than(pet, threshold) * ~excluded
    if not region.any():
        if strict:
            raise EmptyRegionError(f"{case}: no PET voxel outside the label is above the "
                                   f"{BACKGROUND_PERCENTILE}th percentile ({threshold:g}); no "
                                   "high-uptake region for background clicks (constant PET?)")
        return clicks

    def background_pick(comp: _Component) -> list[int]:
        click = None
        if comp.uniform() and not settings.background_in_component:
            click = _outside_component_pick(comp, excluded, rng)
        if click is None:
            voxels = comp.voxels()
            click = comp.to_volume(voxels[rng.choice(voxels.shape[0])])
        return click

    clicks["background"] = _component_clicks(region, budget, rng, settings, lambda c, o: move(c, o, False),
                                             background_pick)
    return clicks


def _component_clicks(mask: np.ndarray, budget: int, rng: Any, settings: ClickDrawSettings,
                      move: Callable[[list[int], int | None], list[int]],
                      fill_pick: Callable[[_Component], list[int]]) -> list[list[int]]:
    """The published sampling on one region: ``min(budget, n)`` of its components sampled
    without replacement, a centre click (distance-transform arg-max) on each, then fill-up
    clicks cycling over the sampled components (``fill_pick``) until ``budget`` clicks exist.
    ``move`` applies the offsets (centre: ``center_offset``, fill-up: ``edge_offset``)."""
    labels, unique_labels, boxes = _labelled_components(mask)
    size = min(budget, len(unique_labels))
    sampled = rng.choice(unique_labels, size=size, replace=False)
    components = [_component(labels, int(lab), boxes(int(lab))) for lab in sampled]
    clicks = [move(comp.centre(), settings.center_offset) for comp in components]
    while components and len(clicks) < budget:
        for comp in components:
            clicks.append(move(fill_pick(comp), settings.edge_offset))
            if len(clicks) == budget:
                break
    return clicks


def simulate_clicks(label: np.ndarray, pet: np.ndarray | None = None, dataset_name: str = "FDG-PETCT", *,
                    click_budget: int | None = None, center_offset: int | None = None,
                    edge_offset: int | None = None, seed: int = SEED,
                    background_in_component: bool = False, case: str = "case") -> dict[str, list]:
    """Simulate the challenge's clicks for one case (pure function on arrays).

    ``label`` (binary; other values are binarised with a warning) and ``pet`` (SUV) are 3D
    arrays ``[i, j, k]`` on the same grid; ``pet`` is needed unless the dataset has no
    background clicks (``Longitudinal-CT``). ``click_budget`` defaults to the dataset's (10, or
    2 for Longitudinal-CT). ``seed`` 42 gives the challenge's clicks. ``center_offset`` /
    ``edge_offset`` add a reproducible random offset of 0..N voxels per axis (drawn from a
    separate generator seeded with ``seed``, so the unperturbed draws are unchanged), kept
    only if the point stays in its region (tumor clicks: the label; background: outside it).
    ``case`` names the case in messages.

    Returns ``{"tumor": [[i, j, k], ...], "background": [[i, j, k], ...]}``.
    Raises :class:`InputError` subclasses for mismatched shapes, NaN in the PET, a missing PET
    and an empty background region.
    """
    with_background, default_budget = dataset_settings(dataset_name)
    budget = default_budget if click_budget is None else int(click_budget)
    if budget < 0:
        raise ValueError(f"click budget must be >= 0, got {click_budget!r}")
    settings = ClickDrawSettings(center_offset=_check_offset("center_offset", center_offset),
                                 edge_offset=_check_offset("edge_offset", edge_offset),
                                 background_in_component=background_in_component)

    # cc3d numbers components in memory order. The published script labels nibabel's
    # Fortran-ordered arrays, so label in Fortran order whatever the caller's layout: the
    # clicks then depend on the image only, and equal the published ones for its file.
    tumor = binarise_label(np.asfortranarray(label), case)
    if with_background:
        if pet is None:
            raise InputError(f"{case}: a PET image is needed for background clicks ({dataset_name})")
        pet = np.asfortranarray(pet)
        if pet.shape != tumor.shape:
            raise GridMismatchError(f"{case}: label {tumor.shape} and PET {pet.shape} have "
                                    "different shapes")
        if not np.issubdtype(pet.dtype, np.number) or np.issubdtype(pet.dtype, np.complexfloating):
            raise InputError(f"{case}: PET must be a real-valued image, got dtype {pet.dtype}")
        if np.issubdtype(pet.dtype, np.floating) and not (np.isfinite(pet.min()) and np.isfinite(pet.max())):
            # min/max propagate NaN and show infinities: two fast reductions instead of a mask.
            n_bad = int(np.count_nonzero(~np.isfinite(pet)))
            if n_bad:
                raise InputError(f"{case}: PET contains {n_bad} NaN or infinite voxel(s)")
    else:
        pet = None
    # the published stream: one legacy generator seeded once per case; the offsets come from a
    # separate generator so that turning them on leaves every other draw unchanged
    return draw_clicks(tumor, pet, budget, np.random.RandomState(seed), perturb_rng=np.random.default_rng(seed),
                       settings=settings, case=case)


def simulate_patch_clicks(label: np.ndarray, pet: np.ndarray, n_clicks: int, rng: Any, *,
                          valid: np.ndarray | None = None, perturb_rng: Any = None,
                          settings: ClickDrawSettings = ClickDrawSettings(symmetric_offsets=True),
                          tumor_clicks: int | None = None) -> dict[str, list[list[int]]]:
    """``n_clicks`` tumor and ``n_clicks`` background clicks on one training patch, by the
    challenge's rules (:func:`draw_clicks`).

    ``label``: tumor mask of the patch (anything > 0 is tumor). ``pet``: PET of the patch, SUV
    or z-score normalised (an increasing affine map leaves the percentile region unchanged).
    ``valid``: voxels that belong to the image (nnU-Net marks padding with label -1).
    ``rng``: a ``np.random.Generator`` (or ``RandomState``) for every draw unless
    ``perturb_rng`` is given. ``settings``: symmetric offsets by default (see
    :class:`ClickDrawSettings`); offsets are off unless set. Components are numbered in the
    patch's memory order. ``tumor_clicks``: tumor clicks when they differ from ``n_clicks``
    (see :func:`case_share_of_tumor_clicks`). Returns voxel indices of the patch; fewer clicks
    than asked when the patch has no tumor or no high-uptake region. With a Fortran-ordered whole image,
    ``RandomState(42)`` and the challenge's settings, the clicks equal :func:`simulate_clicks`.
    """
    tumor = np.asarray(label) > 0
    pet = np.asarray(pet)
    if tumor.shape != pet.shape:
        raise ValueError(f"label shape {tumor.shape} and PET shape {pet.shape} differ")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != tumor.shape:
            raise ValueError(f"label shape {tumor.shape} and valid-voxel mask shape {valid.shape} differ")
    return draw_clicks(tumor, pet, int(n_clicks), rng, perturb_rng=perturb_rng, settings=settings,
                       valid=valid, strict=False, case="patch", tumor_budget=tumor_clicks)


def case_share_of_tumor_clicks(n_patch_lesions: int, n_case_lesions: int, n_clicks: int, rng: Any) -> int:
    """How many of a case's ``n_clicks`` tumor clicks land on ``n_patch_lesions`` of its
    ``n_case_lesions`` lesions, by the published sampling (:func:`_component_clicks`):
    ``min(n_clicks, n_case_lesions)`` lesions drawn without replacement get a centre click, then
    fill-up clicks cycle over them in the drawn order.

    Why: a training patch holds one or two lesions of a case. Drawing a step's clicks on the
    patch alone gives those lesions every click (at step 10: a centre and 9 surface clicks),
    while in a whole-body case the same step spreads its clicks over all lesions (with 8 lesions:
    one centre click each and 2 fill-ups). The share gives training the prediction-time mix;
    whether a network gains from it is measured per model (on the phantoms it did not:
    ``models/task1_phantom_organs/MODEL_CARD.md``).
    ``rng``: a ``np.random.Generator``. ``n_case_lesions`` below ``n_patch_lesions`` counts as
    ``n_patch_lesions`` (the patch's lesions are the whole case)."""
    n_patch = int(n_patch_lesions)
    n_case = max(int(n_case_lesions), n_patch)
    n = int(n_clicks)
    if n_patch <= 0 or n <= 0:
        return 0
    # the patch's lesions are lesions 0 .. n_patch - 1 of the case (the draw is symmetric)
    drawn = rng.choice(n_case, size=min(n, n_case), replace=False)
    on_patch = drawn < n_patch
    full_rounds, rest = divmod(n, drawn.size)
    return int(full_rounds * np.count_nonzero(on_patch) + np.count_nonzero(on_patch[:rest]))


def random_patch_clicks(label: np.ndarray, n_clicks: int, rng: Any, *,
                        valid: np.ndarray | None = None) -> dict[str, list[list[int]]]:
    """``n_clicks`` tumor clicks uniformly at random inside ``label > 0`` and ``n_clicks``
    background clicks uniformly at random in the valid background: the "more diverse" clicks
    that a training mix adds to the challenge's (:func:`simulate_patch_clicks`), so a model
    does not rely on clicks sitting at lesion centres. ``rng`` is a ``np.random.Generator``.
    Fewer clicks when a region is empty; voxel indices of the patch."""
    tumor = np.asarray(label) > 0
    background = ~tumor if valid is None else (~tumor & np.asarray(valid, dtype=bool))
    out = {}
    for kind, region in (("tumor", tumor), ("background", background)):
        flat = np.flatnonzero(region)
        picks = rng.choice(flat, size=min(int(n_clicks), flat.size), replace=False) if flat.size else []
        out[kind] = [[int(c) for c in np.unravel_index(int(p), region.shape)] for p in picks]
    return out


def _outside_component_pick(comp: _Component, excluded: np.ndarray, rng: Any) -> list[int] | None:
    """The published background fill-up pick for a component whose voxels all have distance 1:
    ``rng.choice(count)`` over every voxel *outside* the component (C order), drawn again
    while it falls on an ``excluded`` voxel (tumor, where the published code aborts; padding of
    a patch). Maps the drawn rank to a voxel without listing the volume. None when no voxel
    outside the component is allowed (the caller then picks in the component).
    """
    shape = excluded.shape
    inside = np.ravel_multi_index(tuple((comp.voxels() + comp.offset).T), shape)  # ascending
    n_outside = int(np.prod(shape)) - inside.size
    if n_outside == 0:
        return None
    # rank r -> flat index r + #{component voxels before it}; inside[m] - m is non-decreasing.
    shifted = inside - np.arange(inside.size)
    for attempt in range(100_000):
        if attempt == 1000 and int(np.count_nonzero(excluded)) >= n_outside:
            return None  # every voxel outside the component is excluded: no pick can succeed
        rank = int(rng.choice(n_outside))
        flat = rank + int(np.searchsorted(shifted, rank, side="right"))
        click = [int(v) for v in np.unravel_index(flat, shape)]
        if not excluded[tuple(click)]:
            return click
    return None


def lesion_centre_points(mask: np.ndarray) -> dict[int, tuple[float, float, float]]:
    """Centre of gravity ``(x, y, z)`` (float voxel indices ``[i, j, k]``) of each lesion.

    A binary mask is split into 26-connected components (numbered 1.. in ``cc3d`` order);
    a multi-label mask (values other than 0/1) gives one point per label id.
    """
    import cc3d

    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"mask must be a 3D array, got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating):
        if not np.isfinite(mask).all():
            raise InputError("mask contains NaN or infinite values")
        if not np.array_equal(mask, np.round(mask)):
            raise InputError("mask has non-integer values")
        mask = mask.astype(np.int64)
    if mask.dtype == bool or set(np.unique(mask).tolist()) <= {0, 1}:
        labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    else:
        if mask.min() < 0:
            raise InputError("mask has negative label values")
        labels = mask
    stats = cc3d.statistics(labels)
    counts, centroids = stats["voxel_counts"], stats["centroids"]
    return {int(lesion): tuple(float(v) for v in centroids[lesion])
            for lesion in range(1, len(counts)) if counts[lesion] > 0}


# --------------------------------------------------------------------------------------------
# File edges
# --------------------------------------------------------------------------------------------

def default_pet_path(label_path: str | os.PathLike, channel: str = "_0001") -> Path:
    """The published convention: replace ``labels`` by ``images`` in the label path and
    ``.nii.gz`` by ``<channel>.nii.gz`` in its name (``labelsTr/x.nii.gz`` ->
    ``imagesTr/x_0001.nii.gz``)."""
    path = Path(label_path)
    folder = str(path.parent).replace("labels", "images")
    name = path.name
    name = name[: -len(".nii.gz")] + f"{channel}.nii.gz" if name.endswith(".nii.gz") else name
    return Path(folder) / name


def load_case(input_label: Any, input_pet: Any = None, with_background: bool = True, case: str | None = None):
    """Load a label and PET (paths or arrays ``[i, j, k]``) and check them.

    Returns ``(label, pet_or_None, geometry_or_None, case_name)``. A missing PET, corrupt
    images, different grids and NaN in the PET raise :class:`InputError` naming the case.
    """
    from autopet_common.image_io import check_same_grid, read_image, strip_image_suffix

    geometry = None
    if isinstance(input_label, (str, os.PathLike)):
        case = case or strip_image_suffix(input_label)
        label, geometry = read_image(input_label, what=f"label of case {case}")
    else:
        label = np.asarray(input_label)
        case = case or "case"
    pet = None
    if with_background:
        if input_pet is None:
            if geometry is None:
                raise InputError(f"{case}: a PET array is needed for background clicks")
            input_pet = default_pet_path(input_label)
        if isinstance(input_pet, (str, os.PathLike)):
            if not Path(input_pet).is_file():
                raise ImageReadError(f"{case}: PET not found: {input_pet}")
            pet, pet_geometry = read_image(input_pet, check_finite=True, what=f"PET of case {case}")
            pet = _nifti_scaled_as_published(input_pet, pet)
            if geometry is not None:
                check_same_grid(geometry, pet_geometry, f"label of case {case}", f"PET {input_pet}")
        else:
            pet = np.asarray(input_pet)
    return label, pet, geometry, case


def _nifti_scaled_as_published(path: str | os.PathLike, array: np.ndarray) -> np.ndarray:
    """For a NIfTI file stored with a scale slope / intercept, the values the published code
    sees: ``nibabel``'s float64 scaling (SimpleITK scales in float32, which can differ in the
    last bits and move the percentile threshold). Unscaled files are returned unchanged."""
    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz")):
        return array
    import nibabel as nib

    image = nib.load(str(path))
    slope, inter = getattr(image.dataobj, "slope", 1.0), getattr(image.dataobj, "inter", 0.0)
    if slope == 1.0 and inter == 0.0:
        return array
    scaled = image.get_fdata(dtype=np.float64)
    if scaled.shape != array.shape:
        return array
    return scaled


def process_image(input_label: Any, input_pet: Any = None, dataset_name: str = "FDG-PETCT",
                  click_format: str = "JSON", center_offset: int | None = None,
                  edge_offset: int | None = None, click_budget: int | None = None, seed: int = SEED,
                  background_in_component: bool = False, encoding: str = "gaussian",
                  encoding_size: float | None = None):
    """Simulate one case's clicks from paths or arrays, as the published ``process_image``.

    ``input_label`` / ``input_pet``: NIfTI (or any image) paths or arrays ``[i, j, k]``;
    without ``input_pet``, a label path ``.../labelsTr/<case>.nii.gz`` implies the PET
    ``.../imagesTr/<case>_0001.nii.gz``. ``click_format``: ``"JSON"`` (simulator dict),
    ``"JSON_GC"`` (Grand Challenge dict) or ``"heatmap"`` (``(tumor_map, background_map)``
    float32 arrays on the label's grid; ``encoding`` ``"gaussian"`` (sigma 3 voxels, peak 1)
    or ``"edt"`` (ball, radius 2 voxels); ``encoding_size`` overrides the size).
    """
    if click_format not in CLICK_FORMATS:
        raise ValueError(f"unknown click format {click_format!r}; choose one of {CLICK_FORMATS}")
    with_background, _ = dataset_settings(dataset_name)
    label, pet, _, case = load_case(input_label, input_pet, with_background)
    clicks = simulate_clicks(label, pet, dataset_name, click_budget=click_budget, center_offset=center_offset,
                             edge_offset=edge_offset, seed=seed, background_in_component=background_in_component,
                             case=case)
    if click_format == "JSON":
        return clicks
    if click_format == "JSON_GC":
        return clicks_to_gc_format(clicks)
    from .encodings import encode_clicks
    return encode_clicks(np.shape(label), clicks, encoding, encoding_size)


def write_lesion_centre_points(mask: Any, output_json: str | os.PathLike) -> dict[int, tuple]:
    """Write a mask's per-lesion centres of gravity as a Task 2 "Points of interest" file
    (atomically). ``mask`` is a path or an array ``[i, j, k]``; returns the points."""
    from autopet_common.click_io import write_task2_points
    from autopet_common.image_io import read_image

    if isinstance(mask, (str, os.PathLike)):
        array, _ = read_image(mask, what="lesion mask")
        try:
            points = lesion_centre_points(array)
        except InputError as exc:
            raise InputError(f"lesion mask {mask}: {exc}") from None
    else:
        points = lesion_centre_points(mask)
    write_task2_points(output_json, points)
    return points
