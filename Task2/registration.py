"""Registration of a baseline CT onto its follow-up CT, and carrying baseline data across.

Conventions:

- Arrays are indexed ``[i, j, k]`` (NIfTI / ITK order, x fastest); points are continuous voxel
  indices ``[i, j, k]`` of their own image's grid; physical coordinates are ITK (LPS) mm.
- The follow-up CT is the *fixed* image, the baseline CT the *moving* one. As in ITK, the
  resulting transform maps a **follow-up** physical point to the corresponding **baseline**
  physical point. That is what resampling needs (baseline mask -> follow-up grid);
  baseline points are carried with its inverse (:func:`carry_points`).

Method (all SimpleITK): both CTs are block-averaged (``BinShrink``) to a working grid of about
``work_spacing_mm`` (default 4 mm) because at real size (512 x 512 x 300) full-resolution
registration does not fit the 5-minute budget on 2 cores and lesion-level accuracy does not
need it; a body mask (> -500 HU, largest component, holes filled, slightly dilated) restricts
the metric to the patient; rigid (Euler3D, initialised on the body masks' centres of mass),
then affine, each multi-resolution with a mean-squares metric (same modality: it measured more
accurate than mutual information on the phantoms, see Task2/README.md); an optional BSpline
refinement (``deformable=True``) on top. Random metric sampling is seeded: results are
deterministic for a given thread count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from autopet_common.errors import InputError
from autopet_common.image_io import Geometry, to_sitk

BODY_THRESHOLD_HU = -500.0


class RegistrationError(InputError):
    """The baseline CT cannot be registered onto the follow-up CT (no body, no overlap,
    a grid too small, or an optimiser failure)."""


@dataclass
class RegistrationParameters:
    """Knobs of :func:`register_ct`. Defaults are the ones measured in Task2/README.md."""

    work_spacing_mm: float = 4.0  # working grid (block-averaged) for the rigid/affine stages
    metric: str = "meansquares"  # "meansquares" | "correlation" | "mattes"
    sampling_fraction: float = 0.3
    rigid_iterations: int = 200
    affine_iterations: int = 150
    deformable: bool = False
    bspline_grid_mm: float = 60.0  # control point spacing of the optional BSpline stage
    bspline_iterations: int = 50
    min_body_dice: float = 0.5  # below this after registration the result is rejected
    seed: int = 0
    identity: bool = False  # no registration: the scanners' coordinates only (an ablation)


@dataclass
class RegistrationResult:
    """``transform`` maps follow-up physical points (mm) to baseline physical points (mm)."""

    transform: Any  # SimpleITK.Transform
    body_dice_before: float
    body_dice_after: float
    stages: list[dict] = field(default_factory=list)


def _sitk():
    import SimpleITK as sitk

    return sitk


def _shrink_to_working_grid(image: Any, work_spacing_mm: float) -> Any:
    """Block-average ``image`` so that its spacing is about ``work_spacing_mm`` per axis.

    Block averaging (not point sampling) so that noise and thin structures do not alias."""
    sitk = _sitk()
    factors = [max(1, int(round(work_spacing_mm / s))) for s in image.GetSpacing()]
    factors = [min(f, max(1, n // 8)) for f, n in zip(factors, image.GetSize())]
    if any(f > 1 for f in factors):
        image = sitk.BinShrink(image, factors)  # before the cast: no full-size float copy
    return sitk.Cast(image, sitk.sitkFloat32)


def body_mask_sitk(ct: Any, threshold: float = BODY_THRESHOLD_HU, dilate_voxels: int = 1) -> Any:
    """Body mask of a CT (SimpleITK image in HU): voxels above ``threshold``, largest
    26-connected component, holes filled, dilated by ``dilate_voxels`` (so the skin edge, the
    strongest structure for alignment, is inside the metric region)."""
    sitk = _sitk()
    mask = sitk.BinaryThreshold(ct, lowerThreshold=float(threshold), upperThreshold=1e30,
                                insideValue=1, outsideValue=0)
    components = sitk.ConnectedComponent(mask, True)
    relabelled = sitk.RelabelComponent(components, sortByObjectSize=True)
    mask = sitk.Cast(relabelled == 1, sitk.sitkUInt8)
    mask = sitk.BinaryFillhole(mask, fullyConnected=False, foregroundValue=1)
    if dilate_voxels > 0:
        mask = sitk.BinaryDilate(mask, [dilate_voxels] * 3, sitk.sitkBall, 0, 1)
    return mask


def _mask_dice(fixed_mask: Any, moving_mask: Any, transform: Any) -> float:
    sitk = _sitk()
    warped = sitk.Resample(moving_mask, fixed_mask, transform, sitk.sitkNearestNeighbor, 0,
                           sitk.sitkUInt8)
    a = sitk.GetArrayViewFromImage(fixed_mask) > 0
    b = sitk.GetArrayViewFromImage(warped) > 0
    denom = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / denom if denom else 0.0


def sampling_seed(seed: int) -> int:
    """SimpleITK's metric-sampling seed for our ``seed`` (>= 0).

    SimpleITK reads a sampling seed of 0 as ``sitkWallClock``: a new random sample every run,
    and so a different registration and mask for the same input. Shift by one so that every
    seed of ours, 0 included, is a fixed ITK seed."""
    if seed < 0:
        raise ValueError(f"registration seed must be >= 0, got {seed}")
    return int(seed) + 1


def _configure_method(params: RegistrationParameters, fixed_mask: Any, shrink: list[int],
                      sigmas: list[float]) -> Any:
    sitk = _sitk()
    method = sitk.ImageRegistrationMethod()
    metric = params.metric.lower()
    if metric == "meansquares":
        method.SetMetricAsMeanSquares()
    elif metric == "correlation":
        method.SetMetricAsCorrelation()
    elif metric == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    else:
        raise ValueError(f"unknown registration metric {params.metric!r} "
                         "(use meansquares, correlation or mattes)")
    method.SetMetricFixedMask(fixed_mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(params.sampling_fraction, sampling_seed(params.seed))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel(sigmas)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def _levels(size: tuple[int, ...], wanted: list[int]) -> list[int]:
    """Drop shrink factors that would leave fewer than 8 voxels along an axis."""
    levels = [f for f in wanted if min(size) // f >= 8]
    return levels or [1]


def register_ct(followup_ct: Any, baseline_ct: Any,
                params: RegistrationParameters | None = None,
                names: tuple[str, str] = ("follow-up CT", "baseline CT")) -> RegistrationResult:
    """Register ``baseline_ct`` (moving) onto ``followup_ct`` (fixed); SimpleITK images in HU.

    Returns a :class:`RegistrationResult` whose transform maps follow-up physical points to
    baseline physical points. Raises :class:`RegistrationError` naming both inputs when either
    CT shows no body, when the bodies cannot be brought to overlap, or when the optimiser fails.
    """
    sitk = _sitk()
    params = params or RegistrationParameters()
    fixed = _shrink_to_working_grid(followup_ct, params.work_spacing_mm)
    moving = _shrink_to_working_grid(baseline_ct, params.work_spacing_mm)
    for image, name in ((fixed, names[0]), (moving, names[1])):
        if min(image.GetSize()) < 8:
            raise RegistrationError(f"{name} is too small to register: {image.GetSize()} voxels "
                                    f"on the {params.work_spacing_mm:g} mm working grid")
    # Clip HU: bone and metal would otherwise dominate a squared-difference metric.
    fixed_c = sitk.Clamp(fixed, sitk.sitkFloat32, -1000.0, 1000.0)
    moving_c = sitk.Clamp(moving, sitk.sitkFloat32, -1000.0, 1000.0)
    fixed_mask = body_mask_sitk(fixed)
    moving_mask = body_mask_sitk(moving)
    for mask, name in ((fixed_mask, names[0]), (moving_mask, names[1])):
        n_body = int(sitk.GetArrayViewFromImage(mask).sum())
        if n_body < 64:
            raise RegistrationError(f"{name}: no body found (fewer than 64 voxels above "
                                    f"{BODY_THRESHOLD_HU:g} HU on the working grid); is it a CT in HU?")
    if params.identity:
        identity = sitk.Euler3DTransform()
        overlap = _mask_dice(fixed_mask, moving_mask, identity)
        return RegistrationResult(identity, overlap, overlap, [{"stage": "identity"}])

    try:
        initial = sitk.CenteredTransformInitializer(
            fixed_mask, moving_mask, sitk.Euler3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS)
    except RuntimeError as exc:
        raise RegistrationError(f"cannot initialise the registration of {names[1]} onto "
                                f"{names[0]}: {_last_line(exc)}") from None
    dice_before = _mask_dice(fixed_mask, moving_mask, sitk.Euler3DTransform(initial))
    stages: list[dict] = []

    def run(method: Any, name: str) -> Any:
        try:
            out = method.Execute(fixed_c, moving_c)
        except RuntimeError as exc:
            raise RegistrationError(f"registration of {names[1]} onto {names[0]} failed at the "
                                    f"{name} stage: {_last_line(exc)}") from None
        stages.append({"stage": name, "metric": float(method.GetMetricValue()),
                       "iterations": int(method.GetOptimizerIteration()),
                       "stop": method.GetOptimizerStopConditionDescription()})
        return out

    # Rigid.
    shrink = _levels(fixed.GetSize(), [4, 2, 1])
    rigid_method = _configure_method(params, fixed_mask, shrink, [float(f) / 2 for f in shrink])
    rigid_method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=params.rigid_iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    rigid_method.SetOptimizerScalesFromPhysicalShift()
    rigid_method.SetInitialTransform(sitk.Euler3DTransform(initial), inPlace=False)
    rigid = run(rigid_method, "rigid")
    rigid = _flatten(rigid)

    # Affine, started from the rigid result (same centre, matrix and translation).
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    shrink = _levels(fixed.GetSize(), [2, 1])
    affine_method = _configure_method(params, fixed_mask, shrink, [float(f) / 2 for f in shrink])
    affine_method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=params.affine_iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    affine_method.SetOptimizerScalesFromPhysicalShift()
    affine_method.SetInitialTransform(affine, inPlace=False)
    affine = _flatten(run(affine_method, "affine"))
    transform: Any = affine

    if params.deformable:
        physical = [sz * sp for sz, sp in zip(fixed.GetSize(), fixed.GetSpacing())]
        mesh = [max(1, int(round(p / params.bspline_grid_mm))) for p in physical]
        bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
        bs_method = _configure_method(params, fixed_mask, [1], [0.0])
        bs_method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5,
                                       numberOfIterations=params.bspline_iterations,
                                       maximumNumberOfCorrections=5,
                                       maximumNumberOfFunctionEvaluations=4 * params.bspline_iterations)
        bs_method.SetMovingInitialTransform(affine)
        bs_method.SetInitialTransform(bspline, inPlace=True)
        run(bs_method, "bspline")
        # Follow-up point -> BSpline -> affine -> baseline point (composite applies last first).
        transform = sitk.CompositeTransform([affine, bspline])

    dice_after = _mask_dice(fixed_mask, moving_mask, transform)
    if dice_after < params.min_body_dice:
        raise RegistrationError(
            f"{names[1]} cannot be registered onto {names[0]}: after registration the bodies "
            f"overlap with Dice {dice_after:.2f} (< {params.min_body_dice:g}); the scans may not "
            "show the same body region")
    return RegistrationResult(transform, dice_before, dice_after, stages)


def _flatten(transform: Any) -> Any:
    """A registration output is a CompositeTransform holding one transform: unwrap it."""
    sitk = _sitk()
    if isinstance(transform, sitk.CompositeTransform) or transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() == 1:
            inner = composite.GetNthTransform(0)
            return inner.Downcast() if hasattr(inner, "Downcast") else inner
    return transform.Downcast() if hasattr(transform, "Downcast") else transform


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1].strip() if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Carrying baseline data into the follow-up grid.

def resample_to_followup(array: np.ndarray, geometry: Geometry, followup_geometry: Geometry,
                         transform: Any, nearest: bool, default: float = 0.0) -> np.ndarray:
    """Resample a baseline array ``[i, j, k]`` onto the follow-up grid through ``transform``.

    ``nearest=True`` for label maps (labels are kept, never blended); linear otherwise."""
    sitk = _sitk()
    moving = to_sitk(array, geometry)
    reference = sitk.Image([int(s) for s in followup_geometry.shape], sitk.sitkUInt8)
    followup_geometry.apply_to_sitk(reference)
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(moving, reference, transform, interpolator, float(default),
                        moving.GetPixelID())
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def carry_points(points: Mapping[Any, Any], baseline_geometry: Geometry,
                 followup_geometry: Geometry, transform: Any,
                 iterations: int = 30, tol_mm: float = 0.01) -> dict[Any, np.ndarray]:
    """Carry baseline points (continuous indices ``[i, j, k]`` of the baseline grid) to
    continuous indices of the follow-up grid.

    ``transform`` maps follow-up -> baseline; its inverse is found per point by fixed-point
    iteration ``y <- y + (x - T(y))`` started from the affine part's exact inverse, which works
    for any smooth, invertible transform (BSpline included)."""
    out: dict[Any, np.ndarray] = {}
    for key, point in points.items():
        target = baseline_geometry.index_to_physical(np.asarray(point, dtype=float))
        guess = _inverse_guess(transform, target)
        for _ in range(iterations):
            mapped = np.asarray(transform.TransformPoint(tuple(float(v) for v in guess)))
            step = target - mapped
            guess = guess + step
            if np.linalg.norm(step) < tol_mm:
                break
        out[key] = followup_geometry.physical_to_index(guess)
    return out


def _inverse_guess(transform: Any, point: np.ndarray) -> np.ndarray:
    sitk = _sitk()
    candidate = transform
    if transform.GetName() == "CompositeTransform":
        candidate = sitk.CompositeTransform(transform).GetNthTransform(0)
    try:
        inverse = candidate.GetInverse()
        return np.asarray(inverse.TransformPoint(tuple(float(v) for v in point)))
    except RuntimeError:
        return np.asarray(point, dtype=float)


def transform_to_dict(result: RegistrationResult) -> dict:
    """JSON-able summary (for logs and reports); the transform itself is not serialised."""
    return {"transform": result.transform.GetName(), "body_dice_before": result.body_dice_before,
            "body_dice_after": result.body_dice_after, "stages": result.stages}


def refine_locally(followup_ct: Any, baseline_ct: Any, transform: Any, followup_point: Sequence[float],
                   half_size_mm: float = 30.0, max_shift_mm: float = 8.0, seed: int = 0,
                   baseline_exclude: Any = None, min_improvement: float = 0.03) -> Any:
    """Refine ``transform`` around one lesion with a translation, found by registering a box of
    the follow-up CT (``half_size_mm`` around ``followup_point``, a continuous voxel index)
    onto the baseline CT through ``transform``.

    Captures the local (non-affine) motion at a lesion for a fraction of the cost of a
    deformable registration. Returns ``CompositeTransform([transform, translation])`` (maps
    follow-up -> baseline), or ``transform`` unchanged when the box is too small, the optimiser
    fails or the translation exceeds ``max_shift_mm``."""
    sitk = _sitk()
    size = np.asarray(followup_ct.GetSize())
    spacing = np.asarray(followup_ct.GetSpacing())
    half = np.ceil(half_size_mm / spacing).astype(int)
    centre = np.round(np.asarray(followup_point, dtype=float)).astype(int)
    lo = np.clip(centre - half, 0, size - 1)
    hi = np.clip(centre + half + 1, 1, size)
    extent = hi - lo
    if np.any(extent < 4):
        return transform
    fixed = sitk.RegionOfInterest(followup_ct, [int(e) for e in extent], [int(v) for v in lo])
    fixed = sitk.Clamp(sitk.Cast(fixed, sitk.sitkFloat32), sitk.sitkFloat32, -1000.0, 1000.0)
    # Only the part of the baseline that the box can reach: ITK would otherwise build its
    # image pyramid from the whole (e.g. 512 x 512 x 300) baseline at every call.
    moving_region = _moving_region(baseline_ct, transform, fixed, margin_mm=max_shift_mm + 10.0)
    if moving_region is None:
        return transform
    moving = sitk.Clamp(sitk.Cast(sitk.RegionOfInterest(baseline_ct, *moving_region), sitk.sitkFloat32),
                        sitk.sitkFloat32, -1000.0, 1000.0)
    if baseline_exclude is not None:
        baseline_exclude = sitk.RegionOfInterest(baseline_exclude, *moving_region)
    n_voxels = int(np.prod(fixed.GetSize()))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    if baseline_exclude is not None:
        method.SetMetricMovingMask(baseline_exclude)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(min(0.5, 40000.0 / n_voxels), sampling_seed(seed))
    method.SetInterpolator(sitk.sitkLinear)
    # Work at >= ~1.5 mm: finer grids cost time and do not change a translation estimate.
    coarse = max(1, int(round(1.5 / float(spacing.min()))))
    shrink = [f for f in (2 * coarse, coarse) if int(extent.min()) // f >= 4] or [1]
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel([float(f) / 2 for f in shrink])
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=float(spacing.max()), minStep=1e-3, numberOfIterations=100,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetMovingInitialTransform(transform)
    translation = sitk.TranslationTransform(3)
    method.SetInitialTransform(translation, inPlace=True)
    try:
        before = method.MetricEvaluate(fixed, moving)
        method.Execute(fixed, moving)
        after = method.MetricEvaluate(fixed, moving)
    except RuntimeError:
        return transform
    offset = np.asarray(translation.GetOffset())
    if not np.all(np.isfinite(offset)) or np.linalg.norm(offset) > max_shift_mm:
        return transform
    # In featureless tissue the optimum is noise: keep a shift only if it clearly helps.
    if not after < (1.0 - min_improvement) * before:
        return transform
    # Follow-up point -> translation -> global -> baseline point.
    return sitk.CompositeTransform([transform, translation])


def _moving_region(baseline_ct: Any, transform: Any, fixed: Any, margin_mm: float):
    """(size, index) of the baseline box that ``fixed`` maps into through ``transform``, grown
    by ``margin_mm``; None when it misses the baseline."""
    size = np.asarray(fixed.GetSize())
    corners = [fixed.TransformIndexToPhysicalPoint([int(c) for c in (np.array(bits) * (size - 1))])
               for bits in np.ndindex(2, 2, 2)]
    mapped = np.array([transform.TransformPoint(c) for c in corners])
    lo_mm, hi_mm = mapped.min(axis=0) - margin_mm, mapped.max(axis=0) + margin_mm
    idx = np.array([baseline_ct.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in c))
                    for c in [(x, y, z) for x in (lo_mm[0], hi_mm[0]) for y in (lo_mm[1], hi_mm[1])
                              for z in (lo_mm[2], hi_mm[2])]])
    full = np.asarray(baseline_ct.GetSize())
    lo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, full - 1)
    hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 1, full)
    if np.any(hi - lo < 4):
        return None
    return [int(v) for v in hi - lo], [int(v) for v in lo]


def resample_region(array: np.ndarray, geometry: Geometry, followup_geometry: Geometry,
                    region: tuple[slice, ...], transform: Any, nearest: bool = True,
                    default: float = 0.0) -> np.ndarray:
    """Like :func:`resample_to_followup`, but only onto the sub-grid ``region`` (slices of the
    follow-up grid): cheap per-lesion carrying at full resolution."""
    return resample_image_region(to_sitk(array, geometry), followup_geometry, region, transform, nearest, default)


def resample_image_region(moving: Any, followup_geometry: Geometry, region: tuple[slice, ...], transform: Any,
                          nearest: bool = True, default: float = 0.0) -> np.ndarray:
    """:func:`resample_region` for a SimpleITK image made once (a whole baseline CT is not
    copied again for every lesion); returns ``[i, j, k]`` in the image's pixel type."""
    sitk = _sitk()
    grid = followup_geometry.sub_grid(region)
    reference = sitk.Image(list(grid.shape), sitk.sitkUInt8)
    grid.apply_to_sitk(reference)
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(moving, reference, transform, interpolator, float(default), moving.GetPixelID())
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)
