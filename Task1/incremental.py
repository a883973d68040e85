"""Incremental sliding-window prediction: one prepared case, many click sets, only what changed.

A click changes the network's input in the click channels only, and only near the click (the
encoding is a ball or a Gaussian a few voxels wide). nnU-Net's sliding window predicts tile by
tile and blends the tiles with a Gaussian weight, so a tile whose input did not change gives the
same output as before. :class:`TileCache` keeps every tile's weighted output of the first full
pass; for a new click set it compares the click channels tile by tile, runs the network again on
the tiles whose input changed, and replaces their share of the blended logits. The result equals
a full prediction with the same clicks up to floating-point summation (nnU-Net accumulates in
half precision, this cache in single precision).

:class:`IncrementalExport` does the same for nnU-Net's export (logits resampled to the input
grid, softmax, argmax, the crop reverted, the axes transposed back): the first export is
nnU-Net's own (:func:`convert_predicted_logits_to_segmentation_with_correct_shape`); later
ones recompute only the input-grid box that the changed logits reach, with the interpolation
of nnU-Net's default resampling (scikit-image ``resize``, order 1, edge mode, no anti-aliasing:
``in = (out + 0.5) * n_in / n_out - 0.5``). Where the model resamples otherwise (separate-z,
another order, another function), every export is nnU-Net's full one.

Memory: the cache holds every tile's output, float32 (classes x patch voxels per tile), beside
the logits; for the 48^3 patches and 9 classes of the shipped model on the real autoPET grid that
is about 1 GB. Used by :class:`Task1.predict.Task1Predictor` when its ``incremental`` attribute is
set (the interactive session, :mod:`Task1.interactive`); the batch paths never pay for it.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger("Task1.incremental")
TILE_BATCH = 4  # tiles per forward pass: measured 0.165 s per 48^3 tile in batches vs 0.24 s alone (2 cores)


def _union(boxes: list[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))


class TileCache:
    """nnU-Net's sliding window over one prepared case, every tile's output kept.

    ``predictor``: a :class:`Task1.predict.Task1Predictor` (click model); ``image``: the
    preprocessed image channels ``(C, *network_shape)``. :meth:`logits` takes the click channels
    ``(K, *network_shape)`` and returns the blended logits ``(classes, *network_shape)`` and the
    network-grid box whose logits changed since the last call (None: nothing changed; the whole
    grid on the first call)."""

    def __init__(self, predictor: Any, image: np.ndarray):
        import torch
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian

        self.predictor = predictor
        self.network_shape = tuple(image.shape[1:])
        patch = tuple(int(p) for p in predictor.configuration_manager.patch_size)
        padded, self.unpad = pad_nd_image(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), patch,
                                          "constant", {"value": 0}, True, None)
        self.image = padded
        self.padded_shape = tuple(padded.shape[1:])
        self.nnunet = predictor._nnunet_predictor(padded.numel())
        self.tiles = [tuple(s[1:]) for s in self.nnunet._internal_get_sliding_window_slicers(self.padded_shape)]
        self.gaussian = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu"))
        self.networks = self._networks()
        self.outputs: list[Any] = [None] * len(self.tiles)
        self.clicks: np.ndarray | None = None   # padded click channels of the last call
        self.blended = None                      # sum of weighted tile outputs, float32
        self.weights = None                      # sum of tile weights
        self.last_tiles_run = 0
        self.last_seconds = 0.0

    def _networks(self) -> list:
        """One network per fold (the folds' outputs are averaged, as nnU-Net's predictor does)."""
        import copy

        networks = []
        for params in self.predictor.parameters:
            network = copy.deepcopy(self.predictor.network) if networks else self.predictor.network
            network.load_state_dict(params)
            networks.append(network.to(self.predictor.device).eval())
        return networks

    def _pad_clicks(self, clicks: np.ndarray) -> np.ndarray:
        padded = np.zeros((clicks.shape[0], *self.padded_shape), dtype=np.float32)
        padded[(slice(None), *self.unpad[1:])] = clicks
        return padded

    def _run(self, indices: list[int], clicks: np.ndarray) -> dict[int, Any]:
        """The weighted outputs of the tiles ``indices`` (nothing kept until all are done, so an
        interrupted call leaves the cache as it was)."""
        import torch

        amp = torch.autocast(self.predictor.device.type) if self.predictor.device.type == "cuda" else _Null()
        click_tensor = torch.from_numpy(clicks)
        outputs = {}
        with torch.inference_mode(), amp:
            for start in range(0, len(indices), TILE_BATCH):
                batch = indices[start:start + TILE_BATCH]
                x = torch.stack([torch.cat((self.image[(slice(None), *self.tiles[t])],
                                            click_tensor[(slice(None), *self.tiles[t])])) for t in batch])
                x = x.to(self.predictor.device)
                out = None
                for network in self.networks:
                    self.nnunet.network = network
                    fold = self.nnunet._internal_maybe_mirror_and_predict(x).to("cpu", torch.float32)
                    out = fold if out is None else out + fold
                out = out / len(self.networks) * self.gaussian
                for n, t in enumerate(batch):
                    outputs[t] = out[n].clone()
        return outputs

    def logits(self, clicks: np.ndarray) -> tuple[Any, tuple[slice, ...] | None]:
        import torch

        started = time.perf_counter()
        padded = self._pad_clicks(np.asarray(clicks, dtype=np.float32))
        if self.clicks is None:
            todo = list(range(len(self.tiles)))
        else:  # the tiles whose input changed: a click's ball or Gaussian lies (partly) inside them
            differs = np.any(self.clicks != padded, axis=0)
            todo = [t for t, tile in enumerate(self.tiles) if differs[tile].any()]
        new = self._run(todo, padded)
        old = {t: self.outputs[t] for t in todo}
        for t, output in new.items():
            self.outputs[t] = output
        if self.blended is None:
            classes = self.outputs[0].shape[0]
            self.blended = torch.zeros((classes, *self.padded_shape), dtype=torch.float32)
            self.weights = torch.zeros(self.padded_shape, dtype=torch.float32)
            for t in todo:
                self.blended[(slice(None), *self.tiles[t])] += self.outputs[t]
                self.weights[self.tiles[t]] += self.gaussian
            box = tuple(slice(0, n) for n in self.network_shape)
        elif todo:
            for t in todo:
                self.blended[(slice(None), *self.tiles[t])] += self.outputs[t] - old[t]
            box = self._unpadded(_union([self.tiles[t] for t in todo]))
        else:
            box = None
        self.clicks = padded
        self.last_tiles_run, self.last_seconds = len(todo), time.perf_counter() - started
        return self.current(), box

    def current(self) -> "BlendedLogits":
        """The blended logits ``(classes, *network_shape)``, divided by the weights where read."""
        return BlendedLogits(self)

    def _unpadded(self, box: tuple[slice, ...]) -> tuple[slice, ...] | None:
        out = []
        for b, u, n in zip(box, self.unpad[1:], self.network_shape):
            lo, hi = max(b.start - u.start, 0), min(b.stop - u.start, n)
            if lo >= hi:
                return None
            out.append(slice(lo, hi))
        return tuple(out)


class BlendedLogits:
    """The logits of a :class:`TileCache` as an array that is computed where it is read:
    ``shape``, ``logits[(slice(None), *box)]`` (a float32 NumPy array) and :meth:`full` (a tensor)."""

    def __init__(self, cache: TileCache):
        self.cache = cache
        self.shape = (int(cache.blended.shape[0]), *cache.network_shape)

    def __getitem__(self, key: tuple) -> np.ndarray:
        box = tuple(slice(u.start + (k.start or 0), u.start + (n if k.stop is None else k.stop))
                    for k, u, n in zip(key[1:], self.cache.unpad[1:], self.cache.network_shape))
        return (self.cache.blended[(key[0], *box)] / self.cache.weights[box]).numpy()

    def full(self):
        return self.cache.blended[(slice(None), *self.cache.unpad[1:])] / self.cache.weights[self.cache.unpad[1:]]

    def __array__(self, dtype=None, copy=None):
        array = self.full().numpy()
        return array if dtype is None else array.astype(dtype)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def linear_resize_box(data: Any, out_shape: tuple[int, ...], box: tuple[slice, ...]) -> np.ndarray:
    """The part ``box`` of scikit-image's ``resize(data[c], out_shape, order=1, mode="edge",
    anti_aliasing=False)`` for every channel of ``data`` ``(C, *in_shape)`` (an array, or anything
    with ``shape`` and slicing): linear interpolation at ``in = (out + 0.5) * n_in / n_out - 0.5``,
    clamped to the edge, in float64 as nnU-Net resamples. Trilinear interpolation is a product of
    1D ones, so it is done one axis after the other, reading only the input slab the box needs."""
    in_shape = tuple(int(n) for n in data.shape[1:])
    positions = [np.clip((np.arange(b.start, b.stop) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
                 for b, n_in, n_out in zip(box, in_shape, out_shape)]
    lows = [np.floor(p).astype(int) for p in positions]
    starts = [int(low.min()) for low in lows]
    stops = [min(int(low.max()) + 2, n) for low, n in zip(lows, in_shape)]
    part = np.asarray(data[(slice(None), *[slice(a, b) for a, b in zip(starts, stops)])], dtype=np.float64)
    for axis, (position, low, first) in enumerate(zip(positions, lows, starts)):
        size = part.shape[axis + 1]
        below = low - first
        above = np.minimum(below + 1, size - 1)
        weight = (position - low).reshape([-1 if a == axis else 1 for a in range(part.ndim - 1)])
        lower = np.take(part, below, axis=axis + 1)
        upper = np.take(part, above, axis=axis + 1)
        upper -= lower          # in place: lower + (upper - lower) * weight
        upper *= weight
        lower += upper
        part = lower
    return part


class IncrementalExport:
    """nnU-Net's export of the blended logits to the input grid, kept and updated by box.

    Holds the lesion probability (float32) and the class map (uint8), both ``[i, j, k]`` on the
    input grid. :meth:`update` takes the full logits and the network-grid box that changed
    (None: nothing) and returns the input-grid box ``[i, j, k]`` it rewrote."""

    def __init__(self, predictor: Any, properties: dict, lesion_label: int):
        self.predictor = predictor
        self.properties = properties
        self.lesion_label = lesion_label
        self.probability: np.ndarray | None = None
        self.classes: np.ndarray | None = None
        self.by_box = self._linear_resampling()

    def _linear_resampling(self) -> bool:
        """True when the model's probability resampling is nnU-Net's default linear one without
        separate-z handling for this case (then a box can be recomputed exactly)."""
        from nnunetv2.preprocessing.resampling.default_resampling import (determine_do_sep_z_and_axis,
                                                                         resample_data_or_seg_to_shape)

        fn = self.predictor.configuration_manager.resampling_fn_probabilities
        if not isinstance(fn, functools.partial) or fn.func is not resample_data_or_seg_to_shape:
            return False
        kwargs = dict(fn.keywords)
        if kwargs.get("order", 3) != 1 or kwargs.get("is_seg", False):
            return False
        separate, _ = determine_do_sep_z_and_axis(kwargs.get("force_separate_z", False), self._network_spacing(),
                                                  self._input_spacing(),
                                                  kwargs.get("separate_z_anisotropy_threshold", 3))
        return not separate

    def _input_spacing(self) -> list[float]:
        return [self.properties["spacing"][i] for i in self.predictor.plans_manager.transpose_forward]

    def _network_spacing(self) -> list[float]:
        return list(self.predictor.configuration_manager.spacing)

    def _to_ijk(self, array: np.ndarray) -> np.ndarray:
        """Transposed reader order -> reader order ``[k, j, i]`` -> ``[i, j, k]``."""
        backward = self.predictor.plans_manager.transpose_backward
        return array.transpose(backward).transpose(2, 1, 0)

    def _box_to_ijk(self, box: tuple[slice, ...]) -> tuple[slice, ...]:
        """A box in the transposed, uncropped grid -> the same voxels as ``[i, j, k]`` slices."""
        forward = self.predictor.plans_manager.transpose_forward
        ijk: list[slice | None] = [None, None, None]
        for t, sl in enumerate(box):
            ijk[2 - forward[t]] = sl
        return tuple(ijk)

    def update(self, logits: Any, changed: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        if self.probability is None and self.by_box:
            return self._export_all_in_slabs(logits)
        if self.probability is None or (changed is not None and not self.by_box):
            classes, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits.full(), self.predictor.plans_manager, self.predictor.configuration_manager,
                self.predictor.label_manager, self.properties, return_probabilities=True)
            self.classes = np.ascontiguousarray(np.asarray(classes).transpose(2, 1, 0).astype(np.uint8))
            self.probability = np.ascontiguousarray(
                np.asarray(probabilities[self.lesion_label], dtype=np.float32).transpose(2, 1, 0))
            return tuple(slice(0, n) for n in self.classes.shape)
        if changed is None:
            return None
        cropped = tuple(int(n) for n in self.properties["shape_after_cropping_and_before_resampling"])
        network = tuple(logits.shape[1:])
        out_box = []
        for sl, n_in, n_out in zip(changed, network, cropped):
            scale = n_in / n_out
            lo = int(np.floor((sl.start - 1 + 0.5) / scale - 0.5)) - 1
            hi = int(np.ceil((sl.stop + 0.5) / scale - 0.5)) + 2
            out_box.append(slice(max(lo, 0), min(hi, n_out)))
        return self._export_box(logits, tuple(out_box))

    def _export_all_in_slabs(self, logits: Any, slab: int = 16) -> tuple[slice, ...]:
        """The first export, box by box along the first axis: the same values as nnU-Net's export of
        the whole grid, without its full-size float64 copies of every class (about 4 GB on the real
        autoPET grid with 9 classes)."""
        shape = tuple(int(n) for n in self.properties["shape_before_cropping"])
        backward = self.predictor.plans_manager.transpose_backward
        self.classes = np.ascontiguousarray(np.zeros(shape, dtype=np.uint8).transpose(backward).transpose(2, 1, 0))
        self.probability = np.zeros_like(self.classes, dtype=np.float32)
        cropped = tuple(int(n) for n in self.properties["shape_after_cropping_and_before_resampling"])
        for start in range(0, cropped[0], slab):
            self._export_box(logits, (slice(start, min(start + slab, cropped[0])), slice(0, cropped[1]),
                                      slice(0, cropped[2])))
        return tuple(slice(0, n) for n in self.classes.shape)

    def _export_box(self, logits: Any, out_box: tuple[slice, ...]) -> tuple[slice, ...]:
        """Export the part ``out_box`` (of the cropped grid before resampling, transposed order)."""
        import torch

        cropped = tuple(int(n) for n in self.properties["shape_after_cropping_and_before_resampling"])
        network = tuple(logits.shape[1:])
        if network == cropped:
            part = np.asarray(logits[(slice(None), *out_box)], dtype=np.float64)
        else:
            part = linear_resize_box(logits, cropped, out_box)
        part_t = torch.from_numpy(part)  # float64, as nnU-Net's resampling returns
        probabilities = self.predictor.label_manager.apply_inference_nonlin(part_t)
        classes = self.predictor.label_manager.convert_probabilities_to_segmentation(probabilities)
        bbox = self.properties["bbox_used_for_cropping"]
        placed = tuple(slice(b.start + int(c[0]), b.stop + int(c[0])) for b, c in zip(out_box, bbox))
        target = self._box_to_ijk(placed)
        self.classes[target] = self._to_ijk(np.asarray(classes).astype(np.uint8))
        self.probability[target] = self._to_ijk(np.asarray(probabilities[self.lesion_label], dtype=np.float32))
        return target
