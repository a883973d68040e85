"""Training-time click simulation on nnU-Net patches, and the click channels appended to them.

The challenge's click rules (see ``shared/challenge-facts.md``) are applied to one augmented
patch, in the network's voxel grid:

- tumor: 26-connected components of the patch's label; ``min(s, n)`` components are sampled
  without replacement; each gets a click at the first arg-max of its Euclidean distance
  transform (unit voxel spacing, distance to the nearest voxel outside the component); while
  fewer than ``s`` clicks exist, the sampled components are visited again and a random voxel
  of their surface (smallest positive distance) is clicked.
- background: threshold = 99.75th percentile of PET over the non-tumor voxels of the patch;
  region = PET above it and outside the label; same component sampling and centre clicks;
  fill-up clicks pick a random voxel of the component. With ``background_fill_quirk`` (default,
  as the test-set clicks were made) a component whose voxels all have the same distance value
  yields a click on any non-tumor voxel outside it, as the reference does.

The percentile rule is invariant to nnU-Net's z-score normalisation (an increasing affine map),
so it runs on the normalised PET channel of the patch.

Speed: connected components are labelled once per patch (cc3d) and each distance transform
runs on the component's bounding box grown by one voxel (edt), which gives the same distances
as a full-volume transform (the margin voxels are all outside the component) at a fraction of
the cost.

Arrays here are patches in nnU-Net's array order (whatever axis order the plans use); click
points are voxel indices of that array. Randomness comes from the ``rng`` argument; the
transform draws its generator from NumPy's global state, which nnU-Net's data-loader workers
seed independently.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

MAX_INTERACTION_STEP = 10
BACKGROUND_PERCENTILE = 99.75


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel of ``mask`` (None when empty)."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int, "_ComponentBoxes | list", np.ndarray]:
    """26-connected components of ``mask``, labelled on the mask's bounding box only (masks are
    small parts of a patch): (labels of the box, count, per-label boxes in box coordinates,
    offset of the box in the patch)."""
    import cc3d

    box = _bounding_box(mask)
    if box is None:
        return np.zeros((0, 0, 0), np.uint32), 0, [], np.zeros(3, np.int64)
    # one voxel of margin (inside the patch), so each component's distance transform sees the
    # background around it exactly as on the whole patch
    box = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, mask.shape))
    offset = np.asarray([b.start for b in box], dtype=np.int64)
    labels, count = cc3d.connected_components(np.ascontiguousarray(mask[box], dtype=np.uint8), connectivity=26,
                                              return_N=True)
    return labels, int(count), _ComponentBoxes(labels), offset


class _ComponentBoxes:
    """Bounding boxes of components, computed only for the labels asked for.

    Why: a noisy PET patch has thousands of one-voxel uptake components and only up to 10 are
    sampled; cc3d.statistics / scipy's find_objects compute every box and cost more than the
    labelling itself. Here the labelled voxels are grouped by label once (they are few) and a
    box is the min/max of its group's coordinates.
    """

    def __init__(self, labels: np.ndarray):
        self.shape = labels.shape
        self.flat = np.flatnonzero(labels)
        values = labels.ravel()[self.flat]
        order = np.argsort(values, kind="stable")
        self.flat = self.flat[order]
        self.values = values[order]

    def __getitem__(self, label: int) -> tuple[slice, ...]:
        start, stop = np.searchsorted(self.values, [label, label + 1])
        coords = np.unravel_index(self.flat[start:stop], self.shape)
        return tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)


def _component_distance(labels: np.ndarray, label: int, box: Sequence[slice]) -> tuple[np.ndarray, tuple]:
    """Distance transform of one component on its bounding box grown by one voxel.

    Returns (distance array of the crop, crop offset). Voxels outside the component have 0.
    """
    import edt

    lo = [max(0, s.start - 1) for s in box]
    hi = [min(n, s.stop + 1) for s, n in zip(box, labels.shape)]
    crop = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == label
    # black_border=False: the array edge is not "outside", exactly as a full-volume transform
    # (scipy/edt) treats it in the published simulation.
    dist = edt.edt(np.ascontiguousarray(crop), black_border=False)
    return dist, tuple(lo)


def _centre(dist: np.ndarray, offset: tuple) -> np.ndarray:
    local = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.asarray(local, dtype=np.int64) + np.asarray(offset, dtype=np.int64)


def _perturb(point: np.ndarray, max_offset: int, region: np.ndarray, rng: Any) -> np.ndarray:
    """Move ``point`` by a random integer offset in [-max_offset, max_offset] per axis; keep
    the move only if the new point stays inside ``region`` (as the published simulator does)."""
    if max_offset <= 0:
        return point
    moved = point + rng.integers(-max_offset, max_offset + 1, size=3) if hasattr(rng, "integers") \
        else point + rng.randint(-max_offset, max_offset + 1, size=3)
    if np.all(moved >= 0) and np.all(moved < region.shape) and region[tuple(moved)]:
        return moved
    return point


def _choice(rng: Any, n: int, size: int | None = None, replace: bool = True):
    return rng.choice(n, size=size, replace=replace)


def _uniform_outside_pick(shape, labels: np.ndarray, lab: int, box_offset: np.ndarray, tumor, allowed,
                          rng: Any) -> np.ndarray:
    """A voxel drawn uniformly from the patch's voxels that are not tumor, not padding and not in
    component ``lab``; by rejection sampling (the excluded set is a small part of a patch), with an
    exact fallback when rejections keep happening."""
    def acceptable(point) -> bool:
        if tumor is not None and tumor[point]:
            return False
        if allowed is not None and not allowed[point]:
            return False
        local = tuple(int(p - o) for p, o in zip(point, box_offset))
        inside_box = all(0 <= q < n for q, n in zip(local, labels.shape))
        return not (inside_box and labels[local] == lab)

    size = int(np.prod(shape))
    for _ in range(64):
        point = tuple(int(v) for v in np.unravel_index(int(_choice(rng, size)), shape))
        if acceptable(point):
            return np.asarray(point)
    outside = np.ones(shape, dtype=bool)
    if tumor is not None:
        outside &= ~tumor
    if allowed is not None:
        outside &= allowed
    box = tuple(slice(int(o), int(o) + n) for o, n in zip(box_offset, labels.shape))
    outside[box] &= labels != lab
    flat = np.flatnonzero(outside)
    if flat.size == 0:
        return np.asarray(np.unravel_index(0, shape))
    return np.asarray(np.unravel_index(int(flat[_choice(rng, flat.size)]), shape))


def high_percentile(values: np.ndarray, candidates: np.ndarray | None, q: float = BACKGROUND_PERCENTILE) -> float | None:
    """``np.percentile(values[candidates], q)`` (linear interpolation), exactly, for high ``q``.

    Why not np.percentile: it partitions every candidate voxel. Here a 1/8 subsample gives a
    lower bound below the wanted order statistics; only the voxels above it (a small part) are
    partitioned. Falls back to np.percentile when the bound is not low enough.
    """
    n = int(values.size if candidates is None else np.count_nonzero(candidates))
    if n == 0:
        return None
    position = (n - 1) * q / 100.0
    lo = int(np.floor(position))
    hi = min(lo + 1, n - 1)
    sub_values = values[::2, ::2, ::2]
    sub = sub_values if candidates is None else sub_values[candidates[::2, ::2, ::2]]
    if sub.size >= 64:
        bound = np.percentile(sub, max(0.0, q - 1.0))
        above = values >= bound
        if candidates is not None:
            above &= candidates
        top = values[above]
        below = n - top.size
        if below <= lo:
            part = np.partition(top, (lo - below, hi - below))
            v_lo, v_hi = float(part[lo - below]), float(part[hi - below])
            return v_lo + (position - lo) * (v_hi - v_lo)
    pool = values.ravel() if candidates is None else values[candidates]
    return float(np.percentile(pool, q))


def _sample_component_clicks(mask: np.ndarray, n_clicks: int, rng: Any, center_offset: int,
                             edge_offset: int, kind: str, tumor: np.ndarray | None,
                             allowed: np.ndarray | None, background_fill_quirk: bool) -> list[list[int]]:
    """Centre clicks on sampled components of ``mask``, then fill-up clicks, up to ``n_clicks``."""
    if n_clicks <= 0 or not mask.any():
        return []
    labels, count, boxes, box_offset = _components(mask)
    if count == 0:
        return []
    sampled = np.asarray(rng.choice(np.arange(1, count + 1), size=min(n_clicks, count), replace=False))
    clicks: list[list[int]] = []
    cache: dict[int, tuple[np.ndarray, tuple]] = {}
    for lab in sampled:
        lab = int(lab)
        dist, offset = _component_distance(labels, lab, boxes[lab])
        offset = tuple(int(o) for o in np.asarray(offset) + box_offset)  # patch coordinates
        cache[lab] = (dist, offset)
        point = _perturb(_centre(dist, offset), center_offset, mask, rng)
        clicks.append([int(v) for v in point])
    while len(clicks) < n_clicks:
        for lab in sampled:
            lab = int(lab)
            dist, offset = cache[lab]
            inside = dist > 0
            if kind == "tumor":
                # surface of the component: its voxels with the smallest positive distance
                surface = inside & (dist == dist[inside].min())
                local = np.argwhere(surface)
                point = local[_choice(rng, len(local))] + np.asarray(offset)
            else:
                values = dist[inside]
                degenerate = values.min() == values.max()
                if degenerate and background_fill_quirk:
                    # the reference's quirk: the pick falls on any voxel outside the component
                    # (never on tumor, where the reference would abort: draw again there)
                    point = _uniform_outside_pick(mask.shape, labels, lab, box_offset, tumor, allowed, rng)
                else:
                    local = np.argwhere(inside)
                    point = local[_choice(rng, len(local))] + np.asarray(offset)
            point = _perturb(np.asarray(point, dtype=np.int64), edge_offset, mask, rng)
            clicks.append([int(v) for v in point])
            if len(clicks) >= n_clicks:
                break
    return clicks


def simulate_patch_clicks(label: np.ndarray, pet: np.ndarray, n_clicks: int, rng: Any,
                          valid: np.ndarray | None = None, center_offset: int = 0, edge_offset: int = 0,
                          background_fill_quirk: bool = True) -> dict[str, list[list[int]]]:
    """Simulate ``n_clicks`` tumor and ``n_clicks`` background clicks on one patch.

    ``label``: tumor mask of the patch (anything > 0 is tumor). ``pet``: PET of the patch (SUV or
    z-score normalised: the percentile rule gives the same region). ``valid``: voxels that belong
    to the image (nnU-Net marks padding with label -1); background clicks and the percentile use
    only those. ``rng``: ``np.random.Generator`` or ``RandomState``. Returns
    ``{"tumor": [[a, b, c], ...], "background": [...]}`` in voxel indices of the patch; fewer
    clicks than asked when the patch has no tumor or no high-uptake region.
    """
    tumor = np.asarray(label) > 0
    pet = np.asarray(pet)
    if tumor.shape != pet.shape:
        raise ValueError(f"label shape {tumor.shape} and PET shape {pet.shape} differ")
    clicks = {"tumor": _sample_component_clicks(tumor, n_clicks, rng, center_offset, edge_offset,
                                                "tumor", None, valid, background_fill_quirk),
              "background": []}
    if n_clicks <= 0:
        return clicks
    candidates = ~tumor if valid is None else (~tumor & valid)
    threshold = high_percentile(pet, candidates)
    if threshold is None:
        return clicks
    region = (pet > threshold) & candidates
    clicks["background"] = _sample_component_clicks(region, n_clicks, rng, center_offset, edge_offset,
                                                     "background", tumor, valid, background_fill_quirk)
    return clicks


def click_channels(shape: Sequence[int], clicks: dict[str, list], encoding: str = "edt",
                   size: float | None = None) -> np.ndarray:
    """The two click channels (tumor, background) as float32 ``(2, *shape)``.

    Built with :func:`clicks.encodings.encode_clicks` so training and prediction use one
    definition. ``encoding`` "edt" (distance-transform ball) or "gaussian"; ``size`` is the ball
    radius or Gaussian sigma in voxels (None: the encodings module's default).
    """
    from clicks.encodings import encode_clicks

    tumor_map, background_map = encode_clicks(tuple(int(s) for s in shape), clicks, encoding=encoding,
                                              size=size)
    return np.stack((tumor_map, background_map)).astype(np.float32, copy=False)


class AppendClickChannelsTransform:
    """nnU-Net (batchgeneratorsv2) transform: draw a step, simulate clicks on the patch, append
    the tumor and background click channels to the image.

    Must run while the segmentation still holds -1 for padding (before ``RemoveLabelTansform``)
    so padded voxels are excluded; it leaves the segmentation unchanged.
    Parameters are plain attributes so trainer variants can change one of them.
    """

    def __init__(self, pet_channel: int = 1, max_step: int = MAX_INTERACTION_STEP, encoding: str = "edt",
                 encoding_size: float | None = None, center_offset: int = 0, edge_offset: int = 0,
                 background_fill_quirk: bool = True, fixed_step: int | None = None):
        self.pet_channel = pet_channel
        self.max_step = max_step
        self.encoding = encoding
        self.encoding_size = encoding_size
        self.center_offset = center_offset
        self.edge_offset = edge_offset
        self.background_fill_quirk = background_fill_quirk
        self.fixed_step = fixed_step

    def __call__(self, **data_dict):
        import torch

        image = data_dict["image"]
        seg = data_dict["segmentation"]
        seg0 = seg[0].numpy() if hasattr(seg, "numpy") else np.asarray(seg[0])
        pet = image[self.pet_channel]
        pet = pet.numpy() if hasattr(pet, "numpy") else np.asarray(pet)
        # a generator per sample, seeded from NumPy's global state (seeded per worker by nnU-Net)
        rng = np.random.default_rng(np.random.randint(0, 2 ** 31 - 1))
        step = self.fixed_step if self.fixed_step is not None else int(rng.integers(0, self.max_step + 1))
        clicks = simulate_patch_clicks(seg0 > 0, pet, step, rng, valid=seg0 >= 0,
                                       center_offset=self.center_offset, edge_offset=self.edge_offset,
                                       background_fill_quirk=self.background_fill_quirk)
        from clicks.encodings import encode_clicks

        maps = encode_clicks(seg0.shape, clicks, encoding=self.encoding, size=self.encoding_size)
        n = image.shape[0]
        if isinstance(image, torch.Tensor):
            # one allocation, each channel written once (a torch.cat of new arrays costs twice)
            out = torch.empty((n + 2, *image.shape[1:]), dtype=image.dtype)
            out[:n] = image
            for c, click_map in enumerate(maps):
                out[n + c] = torch.from_numpy(click_map)
        else:
            out = np.concatenate((np.asarray(image), np.stack(maps).astype(np.asarray(image).dtype)), axis=0)
        data_dict["image"] = out
        return data_dict

    def __repr__(self) -> str:
        return (f"AppendClickChannelsTransform(pet_channel={self.pet_channel}, max_step={self.max_step}, "
                f"encoding={self.encoding!r}, encoding_size={self.encoding_size}, "
                f"center_offset={self.center_offset}, edge_offset={self.edge_offset})")
