"""Post-processing of a predicted Task 1 mask, shared by every method and every way of running.

Every method finishes its mask with a chain of the operations in :data:`OPERATIONS` (one registry,
beside their code) run by :func:`run_chain`: the command lines' flags give the chain of
:meth:`PostprocessOptions.chain`, a submission recipe its own (Task1/recipe.py), so the
entrypoint, batch prediction and the local challenge give identical masks. Pure functions on
arrays (``[i, j, k]``, NIfTI order; clicks are voxel indices ``[i, j, k]`` of the same grid).

What the clicks say (:func:`apply_click_rules`), for the model-free baseline and an nnU-Net
model alike:

1. **Background clicks cut.** A background click is, by the challenge's rules, never on tumor.
   A predicted 26-connected component that holds a background click and no tumor click is
   removed (cut, under ``"not_hotter"`` below). One that holds both (a lesion grown into a hot
   organ) is cut: its voxels nearer (in mm) to a background click than to every tumor click are
   removed, and of what is left only the parts connected to a tumor click are kept. How such a
   component is cut is ``background_cut`` (:data:`BACKGROUND_CUTS`): ``"nearest"`` as just said
   (the default); ``"nearest_not_hotter"`` removes only those nearer voxels whose PET is at most
   the PET at their nearest background click; ``"not_hotter"`` does the same, and also cuts a
   component that holds a background click and no tumor click that way instead of removing it
   whole (its voxels no hotter than their nearest background click go, the rest stays); ``"none"``
   keeps it whole. Why not always the first: the simulator's background region is PET above a percentile
   outside the label, which includes the blurred rim just outside a very hot lesion, so a
   background click can sit a few mm from a lesion's edge, and the half-way plane to a centre
   click then runs through the lesion. The lesion is hotter than that rim; a hot organ beside a
   lesion is, where it is cut, about as hot as its own click, and still goes. A lesion whose own
   tumor click has not come yet can hold such a rim click too (a prediction drawn into its rim),
   and removing its component whole loses the lesion until its click comes.
2. **Protocol knowledge: every lesion has a click once a fill-up click appears.** The
   challenge's simulator clicks the centre of each lesion (26-connected component of the
   truth, up to 10 of them, in a random order) before it clicks any lesion a second time, and
   its second round starts with the lesion it clicked first. So when a later tumor click falls
   into the predicted component of the first tumor click, every lesion has been clicked (or 10
   have), and predicted components without any tumor click are false positives: they are
   dropped. Before that moment, automatic detections stay. Components are judged on the
   prediction, so two lesions that the prediction merges with the first one can trigger the
   rule early; the cost is then a missed unclicked lesion. ``protocol_rule=False`` turns the
   rule off (for clicks that do not follow the challenge's simulator).

A tumor click "holds" a component when the component covers the click's voxel or, when no
component does (a prediction that covers a lesion but misses its clicked voxel), when the
component comes within ``CLICK_REACH_MM`` (15 mm) of the click: a learned model's mask does not
always contain the clicked voxel itself, and dropping the lesion it did find would be wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

CLICK_REACH_MM = 15.0
# how rule 1 cuts a component held by a tumor and a background click (module docstring)
BACKGROUND_CUTS = ("nearest", "nearest_not_hotter", "not_hotter", "none")
DEFAULT_BACKGROUND_CUT = BACKGROUND_CUTS[0]


def clicked_labels(labels: np.ndarray, point: Sequence[int], spacing: Sequence[float],
                   reach_mm: float = CLICK_REACH_MM) -> set[int]:
    """Labels (> 0) of ``labels`` that a click at ``point`` holds: the label at the point, or
    when that is 0, every label within ``reach_mm`` of it (see the module docstring)."""
    from Task1.model_free_baseline import _ball_box  # the one box-and-ball rule around a click

    point = tuple(int(c) for c in point)
    label = int(labels[point])
    if label:
        return {label}
    box, ball = _ball_box(point, reach_mm, spacing, labels.shape)
    return set(np.unique(labels[box][ball]).tolist()) - {0}


def all_lesions_clicked(labels: np.ndarray, tumor: Sequence[Sequence[int]],
                        spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> bool:
    """True when a tumor click after the first holds a component that the first click holds
    (``labels``: a connected-component labelling of the prediction): the challenge's second
    round of clicks has started, so every lesion has a click. See the module docstring."""
    if len(tumor) < 2:
        return False
    first = clicked_labels(labels, tumor[0], spacing)
    return bool(first) and any(clicked_labels(labels, p, spacing) & first for p in tumor[1:])


def cut_at_background_clicks(mask: np.ndarray, tumor: Sequence[Sequence[int]],
                             background: Sequence[Sequence[int]], spacing: Sequence[float], *,
                             cut: str = DEFAULT_BACKGROUND_CUT, pet: np.ndarray | None = None,
                             spare_rim: bool = False) -> np.ndarray:
    """Rule 1 of the module docstring; returns a new boolean mask. ``cut``: one of
    :data:`BACKGROUND_CUTS`; ``"nearest_not_hotter"`` and ``"not_hotter"`` need ``pet`` (same grid
    as ``mask``).

    ``spare_rim`` (only with ``"nearest_not_hotter"``): a component that no tumor click holds and
    whose background clicks all lie on its outer voxel layer (a 6-neighbour outside it) is cut as
    under ``"not_hotter"`` (its voxels no hotter than their nearest background click go) instead
    of removed whole. Why: the simulator's background region starts in the blurred rim just
    outside a hot lesion, so a prediction drawn one voxel wide holds a background click on its
    edge before the lesion's own tumor click has come, and the whole lesion vanished for those
    steps (a 72 ml validation lesion at step 1). A hot organ the network marks holds its
    background click deep inside (the simulator clicks the centre of each hot region) and is still
    removed whole."""
    import cc3d

    from Task1.model_free_baseline import _rim as rim  # the one outer-layer rule

    if cut not in BACKGROUND_CUTS:
        raise ValueError(f"background cut {cut!r}: choose one of {', '.join(BACKGROUND_CUTS)}")
    pet_aware = cut in ("nearest_not_hotter", "not_hotter")
    if pet_aware and pet is None:
        raise ValueError(f"background cut {cut!r} needs the PET")
    if spare_rim and cut != "nearest_not_hotter":
        raise ValueError(f"spare_rim: only with the background cut 'nearest_not_hotter', not {cut!r}")
    mask = np.asarray(mask, dtype=bool)
    if not background or not mask.any():
        return mask.copy()
    labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    out = mask.copy()
    spacing = np.asarray(spacing, dtype=float)
    hit = sorted({int(labels[tuple(b)]) for b in background} - {0})
    if not hit:
        return out
    stats = cc3d.statistics(labels)
    held = set().union(*(clicked_labels(labels, p, spacing) for p in tumor)) if tumor else set()
    for label in hit:
        box = stats["bounding_boxes"][label]
        component = labels[box] == label
        lo = np.asarray([s.start for s in box])
        hi = np.asarray([s.stop for s in box])
        inside = lambda p: bool(np.all(np.asarray(p) >= lo) and np.all(np.asarray(p) < hi)) and \
            bool(component[tuple(np.asarray(p) - lo)])
        own_background = [p for p in background if inside(p)]
        if label not in held and cut != "not_hotter":
            edge = rim(component) if spare_rim else None
            if edge is None or not all(edge[tuple(np.asarray(p) - lo)] for p in own_background):
                out[box][component] = False
                continue
        if cut == "none":
            continue
        # the tumor clicks that hold this component (inside it, or within reach of it)
        own_tumor = [p for p in tumor if label in clicked_labels(labels, p, spacing)]
        grid = np.stack(np.meshgrid(*[np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing)], indexing="ij"), -1)
        squared = lambda points: np.stack([np.sum((grid - np.asarray(p) * spacing) ** 2, axis=-1) for p in points])
        to_background = squared(own_background)
        # no tumor click holds it: every voxel is nearer to a background click
        cut_here = squared(own_tumor).min(axis=0) > to_background.min(axis=0) if own_tumor else component.copy()
        if pet_aware:
            click_pet = np.asarray([pet[tuple(int(c) for c in p)] for p in own_background], dtype=np.float32)
            cut_here &= np.asarray(pet[box], dtype=np.float32) <= click_pet[np.argmin(to_background, axis=0)]
        keep = component & ~cut_here
        if not own_tumor:  # what is hotter than the background clicks stays, in whatever parts
            sub = out[box]
            sub[component] = False
            sub[keep] = True
            continue
        parts = cc3d.connected_components(keep.astype(np.uint8), connectivity=26)
        wanted = set()
        for p in own_tumor:
            # a click within reach but outside the component's box is moved onto the box's face
            local = np.clip(np.asarray(p) - lo, 0, hi - lo - 1)
            wanted |= clicked_labels(parts, local, spacing)
        sub = out[box]
        sub[component] = False
        sub[np.isin(parts, list(wanted))] = True
    return out


def keep_clicked_components(mask: np.ndarray, tumor: Sequence[Sequence[int]],
                            spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The 26-connected components of ``mask`` that a tumor click holds."""
    import cc3d

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    wanted = set().union(*(clicked_labels(labels, p, spacing) for p in tumor)) if tumor else set()
    return np.isin(labels, list(wanted)) if wanted else np.zeros_like(mask)


def apply_click_rules(mask: np.ndarray, clicks: Mapping[str, Sequence] | None, spacing: Sequence[float],
                      *, protocol_rule: bool = True, background_cut: str = DEFAULT_BACKGROUND_CUT,
                      pet: np.ndarray | None = None, spare_rim: bool = False) -> tuple[np.ndarray, dict[str, int]]:
    """Both rules of the module docstring; returns (uint8 0/1 mask, what was done: voxel counts
    removed by each rule and whether the protocol rule fired). ``background_cut``, ``pet`` and
    ``spare_rim``: see :func:`cut_at_background_clicks`."""
    import cc3d

    mask = np.asarray(mask) > 0
    from Task1.model_free_baseline import _points_inside  # the one rounding + bounds rule for clicks

    tumor = _points_inside((clicks or {}).get("tumor"), mask.shape)
    background = _points_inside((clicks or {}).get("background"), mask.shape)
    before = int(mask.sum())
    mask = cut_at_background_clicks(mask, tumor, background, spacing, cut=background_cut, pet=pet,
                                    spare_rim=spare_rim)
    after_cut = int(mask.sum())
    fired = False
    if protocol_rule and len(tumor) >= 2 and mask.any():
        labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
        fired = all_lesions_clicked(labels, tumor, spacing)
        if fired:
            mask = keep_clicked_components(mask, tumor, spacing)
    report = {"background_cut_voxels": before - after_cut, "protocol_rule_fired": int(fired),
              "protocol_removed_voxels": after_cut - int(mask.sum())}
    return mask.astype(np.uint8), report


@dataclass(frozen=True)
class PostprocessOptions:
    """The post-processing flags of the command lines (``inference.py --no_click_rules``,
    ``--no_protocol_rule``, ``--remove_below_suv``): ``click_rules``: rules 1 and 2 above;
    ``protocol_rule``: rule 2 (needs ``click_rules``); ``remove_below_suv``: drop predicted voxels
    with PET below this SUV (the challenge's data-centric baseline used 1.0; BIRTH 1.5 for FDG),
    None = keep. :meth:`chain` is the one mapping from these flags to a chain."""

    click_rules: bool = True
    protocol_rule: bool = True
    remove_below_suv: float | None = None

    def chain(self) -> list[dict[str, Any]]:
        """The flags as a post-processing chain (:func:`run_chain`): the click rules, then the SUV floor."""
        chain: list[dict[str, Any]] = []
        if self.click_rules:
            chain.append({"op": "click_rules", "protocol_rule": self.protocol_rule})
        if self.remove_below_suv is not None:
            chain.append({"op": "suv_floor", "floor": self.remove_below_suv})
        return chain


def postprocess_task1(mask: np.ndarray, pet: np.ndarray, clicks: Mapping[str, Sequence] | None,
                      spacing: Sequence[float], options: PostprocessOptions = PostprocessOptions()
                      ) -> tuple[np.ndarray, list[dict]]:
    """``options``' chain on ``mask``; returns (uint8 0/1 mask, what each operation did)."""
    context = ChainContext(pet=np.asarray(pet), clicks=clicks or {}, spacing=spacing)
    return run_chain(mask, options.chain(), context)


# --------------------------------------------------------------------------- more operations
# The operations a submission recipe (Task1/recipe.py) chains besides the click rules. Each takes
# and returns a boolean mask; a component that a tumor click holds is never removed, since the
# click says it is a lesion.

def component_sizes_and_suvmax(mask: np.ndarray, pet: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """26-connected components of ``mask``: (labels, voxels per label, SUVmax per label), the
    per-label arrays indexed by label (entry 0 is the background)."""
    import cc3d
    from scipy.ndimage import maximum

    labels = cc3d.connected_components(np.asarray(mask, dtype=np.uint8), connectivity=26)
    n = int(labels.max())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    suvmax = np.full(n + 1, -np.inf)
    if n:
        suvmax[1:] = maximum(np.asarray(pet, dtype=np.float64), labels, np.arange(1, n + 1))
    return labels, sizes, suvmax


def suv_floor(mask: np.ndarray, pet: np.ndarray, floor: float | None) -> np.ndarray:
    """Drop predicted voxels with PET below ``floor`` SUV (BIRTH: 1.5 FDG, 1.0 PSMA); None keeps all."""
    mask = np.asarray(mask, dtype=bool)
    return mask.copy() if floor is None else mask & (np.asarray(pet) >= floor)


def remove_components(mask: np.ndarray, pet: np.ndarray, tumor: Sequence[Sequence[int]], spacing: Sequence[float],
                      *, min_voxels: int = 0, min_volume_ml: float = 0.0, min_suvmax: float = 0.0) -> np.ndarray:
    """Drop 26-connected components under ``min_voxels`` voxels or ``min_volume_ml`` ml, or whose
    SUVmax is under ``min_suvmax`` (Zhack: 10 voxels, SUVmax 4), unless a tumor click holds them."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    labels, sizes, suvmax = component_sizes_and_suvmax(mask, pet)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    drop = (sizes < min_voxels) | (sizes * voxel_ml < min_volume_ml) | (suvmax < min_suvmax)
    drop[0] = False
    held = set().union(*(clicked_labels(labels, p, spacing) for p in tumor)) if tumor else set()
    drop[list(held)] = False
    return mask & ~drop[labels]


def close_gaps(mask: np.ndarray, pet: np.ndarray, spacing: Sequence[float], *, distance_mm: float,
               min_suv: float = 0.0) -> np.ndarray:
    """Merge components closer than ``distance_mm``: a morphological closing with a ball of
    radius ``distance_mm / 2`` (in mm, so anisotropic voxels are handled), adding only voxels
    with PET of at least ``min_suv``. Never removes a voxel."""
    from scipy.ndimage import binary_closing

    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or distance_mm <= 0:
        return mask.copy()
    radius = [max(int(np.floor(distance_mm / 2.0 / float(s))), 0) for s in spacing]
    grids = np.meshgrid(*[np.arange(-r, r + 1) * float(s) for r, s in zip(radius, spacing)], indexing="ij")
    ball = sum(g ** 2 for g in grids) <= (distance_mm / 2.0) ** 2
    pad = [(r, r) for r in radius]
    closed = binary_closing(np.pad(mask, pad), structure=ball)[tuple(slice(r, r + n) for r, n in zip(radius, mask.shape))]
    return mask | (closed & (np.asarray(pet) >= min_suv))


def add_candidates(mask: np.ndarray, probability: np.ndarray, pet: np.ndarray,
                   background: Sequence[Sequence[int]], spacing: Sequence[float], *, min_probability: float,
                   min_suvmax: float, min_volume_ml: float = 0.0) -> np.ndarray:
    """Add the components of ``probability >= min_probability`` (a threshold below the decision
    threshold) whose SUVmax reaches ``min_suvmax`` and volume ``min_volume_ml``, unless a
    background click lies in them: hot, fairly likely lesions that the decision threshold missed."""
    mask = np.asarray(mask, dtype=bool)
    candidate = np.asarray(probability) >= min_probability
    if not candidate.any():
        return mask.copy()
    labels, sizes, suvmax = component_sizes_and_suvmax(candidate, pet)
    add = (suvmax >= min_suvmax) & (sizes * float(np.prod(spacing)) / 1000.0 >= min_volume_ml)
    add[0] = False
    for point in background:
        add[int(labels[tuple(int(c) for c in point)])] = False
    return mask | add[labels]


def grow_from_clicks(mask: np.ndarray, probability: np.ndarray, tumor: Sequence[Sequence[int]],
                     spacing: Sequence[float], *, min_probability: float) -> np.ndarray:
    """Add the components of ``probability >= min_probability`` that a tumor click holds
    (hysteresis thresholding seeded by the clicks): a click says "lesion here", so around it a
    lower probability is enough. Unclicked regions keep the decision threshold, so the mask
    without clicks (step 0) is unchanged. Run it before ``click_rules``, which then cuts what
    grew at background clicks. Never removes a voxel."""
    mask = np.asarray(mask, dtype=bool)
    candidate = np.asarray(probability) >= min_probability
    if not tumor or not candidate.any():
        return mask.copy()
    import cc3d

    labels = cc3d.connected_components(candidate.astype(np.uint8), connectivity=26)
    held = set().union(*(clicked_labels(labels, p, spacing) for p in tumor))
    if not held:
        return mask.copy()
    return mask | np.isin(labels, sorted(held))


def refine_edges(mask: np.ndarray, pet: np.ndarray, spacing: Sequence[float], *, fraction: float,
                 reach_mm: float = 4.0, shell_mm: float = 8.0, peak_mm: float | None = None,
                 probability: np.ndarray | None = None, min_probability: float = 0.0) -> np.ndarray:
    """Move each predicted component's edge to its PET iso-contour, within ``reach_mm`` of the edge.

    Per 26-connected component: its peak is its highest PET, its surroundings' PET the median PET
    of the unpredicted voxels ``reach_mm`` to ``reach_mm + shell_mm`` outside it, and its contour
    the PET ``surroundings + fraction * (peak - surroundings)`` (the adaptive threshold of PET
    delineation; 0.5 is the half-maximum edge of a blurred uniform lesion). Within ``reach_mm``
    inside the component, voxels under the contour are removed; within ``reach_mm`` outside, free
    voxels at or above it are added (only where ``probability >= min_probability``, when a
    probability is given: a hot organ the network calls organ stays out). Of the result, the parts
    holding a kept voxel of the component stay. Why: a network on a grid coarser than the image
    (the CPU recipe's 4 mm on the 2.04 mm autoPET grid) can place an edge no finer than its own
    voxel; the PET can. A component whose surroundings are at least as hot as its peak is kept as is.

    ``peak_mm``: when given, the peak is local, per voxel the highest PET of the component within
    ``peak_mm`` along each axis (a box), and so is the contour. Why: one peak per component draws
    the edge of a heterogeneous lesion, or of a cool lesion merged with a hot one, at a PET its cool
    parts never reach, and cuts their whole outer layer away; a local peak measures each stretch of
    edge against its own part of the lesion. Voxels whose local peak is no hotter than the
    surroundings stay as they are.

    Distances are between voxel centres (``edt`` with the spacing): the first layer outside a
    component, and its own outer layer, are one spacing away. So on the autoPET grid a 4 mm reach
    moves the edge by one voxel (2.04 mm in-plane, 3 mm across slices), and on a grid whose
    spacing exceeds ``reach_mm`` in every direction nothing moves (there the network's grid is
    the finer one).
    """
    import cc3d
    import edt

    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    if not mask.any():
        return out
    pet = np.asarray(pet)
    spacing = tuple(float(s) for s in spacing)
    margin = [int(np.ceil((reach_mm + shell_mm) / s)) + 1 for s in spacing]
    if peak_mm is not None:
        from scipy import ndimage

        window = [2 * int(round(peak_mm / s)) + 1 for s in spacing]  # odd: centred on the voxel
    labels, n = cc3d.connected_components(mask.astype(np.uint8), connectivity=26, return_N=True)
    boxes = cc3d.statistics(labels)["bounding_boxes"]
    for label in range(1, n + 1):
        box = tuple(slice(max(b.start - m, 0), min(b.stop + m, size))
                    for b, m, size in zip(boxes[label], margin, mask.shape))
        component = labels[box] == label
        others = mask[box] & ~component
        values = pet[box]
        outside = edt.edt(~component, anisotropy=spacing, black_border=False)
        inside = edt.edt(component, anisotropy=spacing, black_border=False)
        shell = (outside > reach_mm) & (outside <= reach_mm + shell_mm) & ~others
        if not shell.any():
            continue
        surroundings = float(np.median(values[shell]))
        if peak_mm is None:
            peak = float(values[component].max())
        else:  # a separable box maximum of the component's PET: the local peak at every voxel
            peak = ndimage.maximum_filter(np.where(component, values, -np.inf), size=window, mode="nearest")
        hotter = peak > surroundings
        if not np.any(hotter):
            continue
        contour = surroundings + fraction * (peak - surroundings)
        removed = component & (inside <= reach_mm) & (values < contour) & hotter
        added = ~component & ~others & (outside <= reach_mm) & (values >= contour) & hotter
        if probability is not None:
            added &= np.asarray(probability[box]) >= min_probability
        refined = (component & ~removed) | added
        parts = cc3d.connected_components(refined.astype(np.uint8), connectivity=26)
        kept = np.unique(parts[component & refined])
        refined = np.isin(parts, kept[kept > 0])
        view = out[box]
        view[component] = False
        view |= refined
    return out


def add_pet_regions_at_clicks(mask: np.ndarray, pet: np.ndarray, tumor: Sequence[Sequence[int]],
                              spacing: Sequence[float], *, fraction: float, radius_mm: float,
                              peak_mm: float = 6.0) -> np.ndarray:
    """Add, at each tumor click, the lesion its PET shows there, when that lesion fits in a ball of
    ``radius_mm`` around the click.

    Per click: the peak is the highest PET within ``peak_mm`` of the click; the surroundings' PET
    the median PET on the ball's outer shell (the voxels between ``radius_mm`` minus two of the
    largest spacing and ``radius_mm``); the contour ``surroundings + fraction * (peak -
    surroundings)``. The region is the voxels inside the shell at or above the contour that are
    26-connected to the click. It is added only when it stays one more voxel clear of the shell:
    a region that reaches it is not a lesion the ball holds (a hot organ, a hot background, a
    lesion larger than the ball) and is left alone. So is a click whose own voxel is under the
    contour (a cool lesion whose peak within ``peak_mm`` is a hotter neighbour's: on validation
    phantoms a region grown from that neighbour was all false positive), and a click whose peak
    is no hotter than its surroundings.

    Why: a click says "lesion here", and the network does not always follow it. At the real grid
    it leaves large lesions mostly empty around their click (a 51 ml lesion at recall 0.22 in
    validation), where a contour from the click's own peak finds the whole lesion; the edge move of
    :func:`refine_edges` reaches only a few mm. Never removes a voxel; without tumor clicks (step 0)
    the mask is unchanged. Run it before ``click_rules``. Distances are in mm between voxel centres.
    """
    from Task1.model_free_baseline import _box_squared_distances, _connected_to

    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    if not tumor:
        return out
    pet = np.asarray(pet)
    largest_spacing = max(float(s) for s in spacing)
    shell_mm = 2.0 * largest_spacing
    for point in tumor:
        point = tuple(int(c) for c in point)
        box, squared = _box_squared_distances(point, radius_mm, spacing, mask.shape)
        distance = np.sqrt(squared)
        values = pet[box]
        shell = (distance > radius_mm - shell_mm) & (distance <= radius_mm)
        if not shell.any():
            continue
        near = distance <= peak_mm
        peak = float(values[near].max())
        surroundings = float(np.median(values[shell]))
        if peak <= surroundings:
            continue
        candidate = (values >= surroundings + fraction * (peak - surroundings)) & (distance <= radius_mm - shell_mm)
        click = tuple(c - b.start for c, b in zip(point, box))
        if not candidate[click]:
            continue
        region = _connected_to(candidate, [click])
        if np.any(region & (distance > radius_mm - shell_mm - largest_spacing)):
            continue
        out[box] |= region
    return out


# --------------------------------------------------------------------------- the chain
# One registry of every operation a post-processing chain may hold: the flag set of the command
# lines (PostprocessOptions.chain) and a submission recipe's "postprocessing" list (Task1/recipe.py
# checks a file's chain against it) run through the same run_chain.

@dataclass(frozen=True)
class ChainContext:
    """What the operations read besides the mask: the PET (SUV), the clicks (voxel indices inside
    the image), the voxel spacing (mm) and, for a network, the lesion probability."""

    pet: np.ndarray
    clicks: Mapping[str, Sequence]
    spacing: Sequence[float]
    probability: np.ndarray | None = None


@dataclass(frozen=True)
class Operation:
    """One chain operation: ``run(mask, context, **params) -> (mask, details)``; ``defaults``: the
    parameters it takes (a recipe file may give no others); ``per_tracer``: those a recipe may give
    per tracer (``{"FDG": .., "PSMA": .., "unknown": ..}``); ``needs_probability``: only for a
    method with a lesion probability (a network or a recipe)."""

    run: Callable[..., tuple[np.ndarray, dict]]
    defaults: dict[str, Any]
    per_tracer: tuple[str, ...] = ()
    needs_probability: bool = False


def _click_rules(mask, context, *, protocol_rule=True, background_cut=DEFAULT_BACKGROUND_CUT, spare_rim=False):
    out, details = apply_click_rules(mask, context.clicks, context.spacing, protocol_rule=protocol_rule,
                                     background_cut=background_cut, pet=context.pet, spare_rim=spare_rim)
    return out > 0, details


def _suv_floor(mask, context, *, floor=None):
    return suv_floor(mask, context.pet, floor), {}


OPERATIONS: dict[str, Operation] = {
    "click_rules": Operation(_click_rules, {"protocol_rule": True, "background_cut": DEFAULT_BACKGROUND_CUT,
                                            "spare_rim": False}),
    # a recipe gives the floor per tracer ({"FDG": 1.5, "PSMA": 1.0}); its plan resolves it to "floor"
    "suv_floor": Operation(_suv_floor, {"FDG": None, "PSMA": None, "unknown": None}),
    "remove_components": Operation(
        lambda mask, c, **p: (remove_components(mask, c.pet, c.clicks.get("tumor") or [], c.spacing, **p), {}),
        {"min_voxels": 0, "min_volume_ml": 0.0, "min_suvmax": 0.0}, ("min_voxels", "min_volume_ml", "min_suvmax")),
    "close_gaps": Operation(lambda mask, c, **p: (close_gaps(mask, c.pet, c.spacing, **p), {}),
                            {"distance_mm": 0.0, "min_suv": 0.0}, ("distance_mm", "min_suv")),
    "add_candidates": Operation(
        lambda mask, c, **p: (add_candidates(mask, c.probability, c.pet, c.clicks.get("background") or [],
                                             c.spacing, **p), {}),
        {"min_probability": None, "min_suvmax": None, "min_volume_ml": 0.0},
        ("min_probability", "min_suvmax", "min_volume_ml"), needs_probability=True),
    "grow_from_clicks": Operation(
        lambda mask, c, **p: (grow_from_clicks(mask, c.probability, c.clicks.get("tumor") or [], c.spacing, **p), {}),
        {"min_probability": None}, ("min_probability",), needs_probability=True),
    "refine_edges": Operation(
        lambda mask, c, **p: (refine_edges(mask, c.pet, c.spacing, probability=c.probability, **p), {}),
        {"fraction": None, "reach_mm": 4.0, "shell_mm": 8.0, "peak_mm": None, "min_probability": 0.0},
        ("fraction",)),
    "add_pet_regions_at_clicks": Operation(
        lambda mask, c, **p: (add_pet_regions_at_clicks(mask, c.pet, c.clicks.get("tumor") or [], c.spacing, **p), {}),
        {"fraction": None, "radius_mm": None, "peak_mm": 6.0}, ("fraction", "radius_mm")),
}


def run_chain(mask: np.ndarray, chain: Sequence[Mapping[str, Any]], context: ChainContext
              ) -> tuple[np.ndarray, list[dict]]:
    """Run ``chain`` (``[{"op": name, **params}, ...]``, operations of :data:`OPERATIONS`, in
    order) on ``mask``; returns (uint8 0/1 mask, per operation: name, voxels before and after,
    and what it reports)."""
    mask = np.asarray(mask) > 0
    report = []
    for item in chain:
        name = item["op"]
        operation = OPERATIONS.get(name)
        if operation is None:
            raise ValueError(f"unknown post-processing operation {name!r}; known: {sorted(OPERATIONS)}")
        if operation.needs_probability and context.probability is None:
            raise ValueError(f"post-processing operation {name!r} needs a lesion probability (a network's)")
        before = int(mask.sum())
        mask, details = operation.run(mask, context, **{k: v for k, v in item.items() if k != "op"})
        mask = np.asarray(mask, dtype=bool)
        report.append({"op": name, "voxels_before": before, "voxels_after": int(mask.sum()), **details})
    return mask.astype(np.uint8), report
