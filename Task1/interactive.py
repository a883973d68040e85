"""A person in the loop: one case open for clicking, answered by a Task 1 method in seconds.

    from Task1.session import open_method
    from Task1.interactive import ClickSession

    method = open_method("models/task1_phantom_organs", incremental=True)
    session = ClickSession(method, ct, pet, geometry, name="PHANTOM_FDG_0000")
    session.start()                                   # the step-0 mask: the first answer
    answer = session.click("tumor", [31, 40, 17])     # voxel index [i, j, k] of the case's grid
    session.undo(); session.reset()
    session.mask, session.clicks                      # uint8 0/1 [i, j, k]; {"tumor": [...], "background": [...]}

The case is prepared once (:meth:`Task1.session.Method.prepare`); each click predicts with every
click so far, as the entrypoint would with the same clicks in ``lesion-clicks.json``. With
``open_method(..., incremental=True)`` an nnU-Net click model predicts again only the
sliding-window tiles the click changes (:mod:`Task1.incremental`); other methods predict the
whole case. Undo has as many levels as there were clicks (each mask kept bit-packed). With the
case's label, :meth:`ClickSession.replay` puts the challenge's simulated clicks of a step in
place and scores the mask. Pure Python on arrays: the web server (:mod:`viewer.server`) is one
client of it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from autopet_common.click_io import CLICK_KINDS
from autopet_common.errors import InputError


@dataclass
class ClickAnswer:
    """What one interaction did: the mask's voxel count, the box ``[[i0, i1], [j0, j1], [k0, k1]]``
    (half-open) of the voxels whose value changed (None: none changed), the seconds the method
    took, the clicks in force and, for an incremental network, the tiles it ran again."""

    voxels: int
    changed_box: list[list[int]] | None
    seconds: float
    clicks: dict[str, list[list[int]]]
    tiles_run: int | None = None
    tiles: int | None = None
    dice: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items()}


def changed_box(before: np.ndarray | None, after: np.ndarray) -> list[list[int]] | None:
    """Half-open ``[[lo, hi], ...]`` bounds of the voxels where two masks differ (all of
    ``after`` when there is no ``before``); None when they are equal."""
    if before is None:
        return [[0, int(n)] for n in after.shape]
    differs = before != after
    if not differs.any():
        return None
    box = []
    for axis in range(differs.ndim):
        others = tuple(a for a in range(differs.ndim) if a != axis)
        hit = np.flatnonzero(differs.any(axis=others))
        box.append([int(hit[0]), int(hit[-1]) + 1])
    return box


def dice(prediction: np.ndarray, truth: np.ndarray) -> float | None:
    """The challenge's Dice (:func:`evaluation_metrics.metrics.dice_score`); None where it is
    undefined (an empty label)."""
    import math

    from evaluation_metrics.metrics import dice_score

    value = dice_score(np.asarray(truth) > 0, np.asarray(prediction) > 0)
    return None if math.isnan(value) else float(value)


class ClickSession:
    """One case open for clicking (see the module docstring). ``label`` (optional, same grid):
    enables :meth:`replay`; ``dataset_name``: the click simulator's dataset for it."""

    def __init__(self, method: Any, ct: np.ndarray, pet: np.ndarray, geometry: Any, *, name: str = "case",
                 label: np.ndarray | None = None, dataset_name: str = "FDG-PETCT"):
        self.method = method
        self.name = name
        self.geometry = geometry
        self.label = None if label is None else (np.asarray(label) > 0).astype(np.uint8)
        self.dataset_name = dataset_name
        started = time.perf_counter()
        self.case = method.prepare(ct, pet, geometry)
        self.prepare_seconds = time.perf_counter() - started
        self._clicks: list[tuple[str, list[int]]] = []
        self._history: list[tuple[list[tuple[str, list[int]]], np.ndarray]] = []
        self._step0: np.ndarray | None = None
        self._simulated: dict[str, list] | None = None
        self.mask: np.ndarray | None = None

    # ------------------------------------------------------------------ state
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.geometry.shape)

    @property
    def clicks(self) -> dict[str, list[list[int]]]:
        """The clicks in force, by kind, in the order they were given."""
        out: dict[str, list[list[int]]] = {kind: [] for kind in CLICK_KINDS}
        for kind, point in self._clicks:
            out[kind].append(list(point))
        return out

    def _pack(self, mask: np.ndarray) -> np.ndarray:
        return np.packbits(mask.ravel() > 0)

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        return np.unpackbits(packed, count=int(np.prod(self.shape))).reshape(self.shape).astype(np.uint8)

    def _predict(self) -> ClickAnswer:
        started = time.perf_counter()
        mask, report = self.method.predict(self.case, self.clicks)
        seconds = time.perf_counter() - started
        incremental = next((m.get("incremental") for m in report.models_run if m.get("incremental")), None) or {}
        answer = ClickAnswer(int(mask.sum()), changed_box(self.mask, mask), round(seconds, 3), self.clicks,
                             incremental.get("tiles_run"), incremental.get("tiles"))
        self.mask = mask
        return answer

    # ------------------------------------------------------------------ interactions
    def start(self) -> ClickAnswer:
        """The mask without clicks (step 0): the first answer after opening."""
        if self.mask is not None and not self._clicks:
            return ClickAnswer(int(self.mask.sum()), None, 0.0, self.clicks)
        self._clicks, self._history, self.mask = [], [], None
        answer = self._predict()
        self._step0 = self._pack(self.mask)
        return answer

    def check_point(self, kind: str, point: Sequence[Any]) -> list[int]:
        """``point`` as a voxel index inside the image, or :class:`InputError` naming the problem."""
        if kind not in CLICK_KINDS:
            raise InputError(f"click kind must be one of {list(CLICK_KINDS)}, got {kind!r}")
        if not isinstance(point, (list, tuple)) or len(point) != 3:
            raise InputError(f"a click is a voxel index [i, j, k], got {point!r}")
        try:
            index = [int(round(float(v))) for v in point]
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"a click is a voxel index [i, j, k] of numbers, got {point!r}") from None
        if any(not 0 <= v < n for v, n in zip(index, self.shape)):
            raise InputError(f"click {index} lies outside the image of shape {list(self.shape)}")
        return index

    def click(self, kind: str, point: Sequence[Any]) -> ClickAnswer:
        """Add one click (``"tumor"`` or ``"background"`` at voxel ``[i, j, k]``) and predict."""
        index = self.check_point(kind, point)
        if self.mask is None:
            self.start()
        self._history.append((list(self._clicks), self._pack(self.mask)))
        self._clicks.append((kind, index))
        try:
            return self._predict()
        except Exception:
            self._clicks, _ = self._history.pop()
            raise

    def undo(self) -> ClickAnswer:
        """Take the last click back: the clicks and the mask before it."""
        if not self._history:
            raise InputError("nothing to undo: no clicks")
        self._clicks, packed = self._history.pop()
        previous, self.mask = self.mask, self._unpack(packed)
        return ClickAnswer(int(self.mask.sum()), changed_box(previous, self.mask), 0.0, self.clicks)

    def reset(self) -> ClickAnswer:
        """No clicks: the step-0 mask again (kept from :meth:`start`)."""
        if self._step0 is None:
            return self.start()
        previous = self.mask
        self._clicks, self._history = [], []
        self.mask = self._unpack(self._step0)
        return ClickAnswer(int(self.mask.sum()), changed_box(previous, self.mask), 0.0, self.clicks)

    def set_clicks(self, clicks: dict[str, Sequence]) -> ClickAnswer:
        """Replace the clicks by ``clicks`` (alternating tumor / background, as the protocol adds
        them) and predict once; undo goes back to the clicks before."""
        checked = {kind: [self.check_point(kind, p) for p in (clicks.get(kind) or [])] for kind in CLICK_KINDS}
        if self.mask is None:
            self.start()
        self._history.append((list(self._clicks), self._pack(self.mask)))
        order = []
        for n in range(max(len(v) for v in checked.values()) if any(checked.values()) else 0):
            order += [(kind, checked[kind][n]) for kind in CLICK_KINDS if n < len(checked[kind])]
        previous = self._clicks
        self._clicks = order
        try:
            return self._predict()
        except Exception:
            self._clicks = previous
            self._history.pop()
            raise

    # ------------------------------------------------------------------ the challenge's clicks
    def simulated_clicks(self) -> dict[str, list]:
        """The challenge's 10 + 10 simulated clicks for the case's label (seed 42)."""
        if self.label is None:
            raise InputError(f"case {self.name} has no label: no simulated clicks to replay")
        if self._simulated is None:
            from clicks.simulate import simulate_clicks

            self._simulated = simulate_clicks(self.label, self.case.pet, self.dataset_name, case=self.name)
        return self._simulated

    def replay(self, step: int) -> ClickAnswer:
        """The challenge's clicks of ``step`` (0..10) in place of the session's, predicted and
        scored against the label (``dice``)."""
        from autopet_common.contract import TASK1_MAX_CLICKS
        from Task1.session import clicks_for_step

        if not isinstance(step, int) or not 0 <= step <= TASK1_MAX_CLICKS:
            raise InputError(f"step must be an integer 0..{TASK1_MAX_CLICKS}, got {step!r}")
        answer = self.set_clicks(clicks_for_step(self.simulated_clicks(), step, self.shape))
        score = dice(self.mask, self.label)
        answer.dice = None if score is None else round(score, 4)
        return answer

    def score(self) -> float | None:
        """Dice of the current mask against the label (None without a label or for an empty one)."""
        return None if self.label is None or self.mask is None else dice(self.mask, self.label)
