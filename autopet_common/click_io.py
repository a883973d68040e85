"""The challenge's click JSON formats and interaction-step selection.

Conventions (see ``../shared/challenge-facts.md``):

- A click point is a voxel index ``[i, j, k]`` in ITK / NIfTI order (x fastest), the order of
  the arrays returned by :func:`autopet_common.image_io.read_image`.
- Simulator format: ``{"tumor": [[i, j, k], ...], "background": [[i, j, k], ...]}``.
- Grand Challenge "Multiple points" format (Task 1 ``lesion-clicks.json``):
  ``{"version": {"major": 1, "minor": 0}, "type": "Multiple points",
  "points": [{"point": [i, j, k], "name": "tumor" | "background"}, ...]}``, tumor points first,
  then background points, each in simulator order.
- Task 2 "Points of interest": ``{"name": "Points of interest", "points": [{"name": "3",
  "point": [x, y, z]}, ...]}`` with float voxel indices (a lesion's centre of gravity); the id
  may also be written ``"Lesion 3"``.

Every reader raises :class:`~autopet_common.errors.ClickFormatError` naming the file for
malformed input, and for a file of more than ``MAX_FILE_BYTES`` or ``MAX_POINTS`` points.
Nothing happens at import time.
"""
from __future__ import annotations

import json
import math
import os
import re
from numbers import Real
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import ClickFormatError
from .image_io import atomic_write_json

CLICK_KINDS = ("tumor", "background")
GC_VERSION = {"major": 1, "minor": 0}
GC_TYPE = "Multiple points"
TASK2_NAME = "Points of interest"

# Bounds on a click file, so that a huge one is refused in milliseconds instead of being worked
# through point by point (every method does work per click). The protocol gives at most 10 + 10
# Task 1 clicks and one Task 2 point per lesion: these are far above any real file.
MAX_POINTS = 1000
MAX_FILE_BYTES = 4 * 2 ** 20

_LESION_ID = re.compile(r"^\s*(?:lesion[\s_-]*)?(\d+)\s*$", re.IGNORECASE)


def empty_clicks() -> dict[str, list]:
    """A click dictionary with no points: ``{"tumor": [], "background": []}``."""
    return {"tumor": [], "background": []}


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 400-digit number or a deeply nested list
    must not flood the message)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _plain(value: Any) -> Any:
    """NumPy scalars -> Python numbers (JSON-serialisable), everything else unchanged."""
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (list, tuple, dict, str)):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def _plain_point(point: Any) -> list:
    return [_plain(v) for v in list(point)]


def _check_point(point: Any, where: str) -> list:
    """A 3-element list of finite numbers, or :class:`ClickFormatError` naming ``where``."""
    if not isinstance(point, (list, tuple)) or len(point) != 3:
        raise ClickFormatError(f"{where}: a point must be a list of 3 numbers, got {_short(point)}")
    out = []
    for value in point:
        value = _plain(value)
        try:
            finite = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
        except OverflowError:  # an integer too large for a float (hundreds of digits)
            finite = False
        if not finite:
            raise ClickFormatError(f"{where}: a point must be a list of 3 finite numbers, "
                                   f"got {_short(point)}")
        out.append(value)
    return out


def clicks_to_gc_format(clicks: dict) -> dict:
    """Simulator dict -> Grand Challenge "Multiple points" dict (tumor points first)."""
    points = [{"point": _plain_point(p), "name": "tumor"} for p in clicks.get("tumor", [])]
    points += [{"point": _plain_point(p), "name": "background"} for p in clicks.get("background", [])]
    return {"version": dict(GC_VERSION), "type": GC_TYPE, "points": points}


def _check_count(points: list, where: str, what: str = "points") -> None:
    if len(points) > MAX_POINTS:
        raise ClickFormatError(f"{where}: {len(points)} {what}; at most {MAX_POINTS} are read (the challenge's "
                               "protocol gives at most 10 tumor + 10 background clicks, Task 2 one point per lesion)")


def _clicks_from_obj(obj: Any, where: str) -> dict[str, list]:
    """Validate a parsed JSON object in either format and return simulator-format clicks."""
    if obj is None or obj == {} or obj == []:
        return empty_clicks()
    if not isinstance(obj, dict):
        raise ClickFormatError(f"{where}: expected a JSON object with 'points' (Grand Challenge "
                               f"format) or 'tumor'/'background' (simulator format), "
                               f"got {type(obj).__name__}")
    clicks = empty_clicks()
    if "points" in obj:
        points = obj["points"]
        if points is None:
            return clicks
        if not isinstance(points, list):
            raise ClickFormatError(f"{where}: 'points' must be a list, got {type(points).__name__}")
        _check_count(points, where)
        for n, entry in enumerate(points):
            if not isinstance(entry, dict) or "point" not in entry:
                raise ClickFormatError(f"{where}: points[{n}] must be an object with 'point' and "
                                       f"'name', got {_short(entry)}")
            name = entry.get("name")
            if name not in CLICK_KINDS:
                raise ClickFormatError(f"{where}: points[{n}] has unknown name {_short(name)} "
                                       f"(expected 'tumor' or 'background')")
            clicks[name].append(_check_point(entry["point"], f"{where}: points[{n}]"))
        return clicks
    unknown = sorted(set(obj) - set(CLICK_KINDS))
    if unknown:
        raise ClickFormatError(f"{where}: unknown key(s) {unknown} (expected 'points', or "
                               f"'tumor' and 'background')")
    for kind in CLICK_KINDS:
        points = obj.get(kind, [])
        if points is None:
            continue
        if not isinstance(points, list):
            raise ClickFormatError(f"{where}: '{kind}' must be a list of points, "
                                   f"got {type(points).__name__}")
        _check_count(points, where, f"'{kind}' points")
        clicks[kind] = [_check_point(p, f"{where}: {kind}[{n}]") for n, p in enumerate(points)]
    return clicks


def gc_format_to_clicks(obj: dict, source: str = "clicks") -> dict[str, list]:
    """Grand Challenge "Multiple points" dict (or a simulator dict) -> simulator dict.

    ``source`` names the input in error messages.
    """
    return _clicks_from_obj(obj, source)


def _load_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ClickFormatError(f"click file {path} is {size / 2 ** 20:.1f} MB; a click file is at most "
                                   f"{MAX_FILE_BYTES / 2 ** 20:.0f} MB ({MAX_POINTS} points take about 60 kB)")
        text = path.read_text()
    except UnicodeDecodeError:
        raise ClickFormatError(f"click file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ClickFormatError(f"cannot read click file {path}: {exc.strerror}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClickFormatError(f"click file {path} is not valid JSON: {exc.msg} "
                               f"(line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ClickFormatError(f"click file {path} is nested too deeply to be a click file") from None


def read_clicks_json(path: str | os.PathLike, missing_ok: bool = True) -> dict[str, list]:
    """Read a click file in the simulator or the Grand Challenge format.

    An absent file (with ``missing_ok``), an empty file, ``{}`` or an empty ``points`` list give
    empty clicks. Malformed JSON, a wrong structure, non-numeric or non-3D points and unknown
    point names raise :class:`ClickFormatError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return empty_clicks()
        raise ClickFormatError(f"click file not found: {path}")
    if path.is_dir():
        raise ClickFormatError(f"click file {path} is a folder, expected a JSON file")
    return _clicks_from_obj(_load_json(path), f"click file {path}")


def write_clicks_json(path: str | os.PathLike, clicks: dict, gc_format: bool = False) -> Path:
    """Write clicks atomically, in the Grand Challenge format when ``gc_format``."""
    if gc_format:
        obj = clicks_to_gc_format(clicks)
    else:
        obj = {kind: [_plain_point(p) for p in clicks.get(kind, [])] for kind in CLICK_KINDS}
    return atomic_write_json(path, obj)


def clicks_at_step(clicks: dict, step: int) -> dict[str, list]:
    """The clicks given at interaction step ``step``: the first ``step`` tumor and the first
    ``step`` background clicks (step 0: none). Lists shorter than ``step`` are taken whole."""
    if isinstance(step, bool) or int(step) != step or step < 0:
        raise ValueError(f"interaction step must be an integer >= 0, got {step!r}")
    step = int(step)
    return {kind: [list(p) for p in clicks.get(kind, [])[:step]] for kind in CLICK_KINDS}


def round_point(point: Sequence[float]) -> list[int]:
    """Round a (float) voxel index to the nearest integer voxel, halves rounded up."""
    return [int(math.floor(float(v) + 0.5)) for v in point]


def point_inside(point: Sequence[int], shape: Sequence[int]) -> bool:
    """True when the integer voxel index ``point`` lies inside an array of ``shape``."""
    return all(0 <= int(p) < int(s) for p, s in zip(point, shape))


def split_clicks_inside(clicks: dict, shape: Sequence[int]
                        ) -> tuple[dict[str, list], list[tuple[str, list[int]]]]:
    """Round every click to a voxel and separate those outside ``shape``.

    Returns ``(inside_clicks, outside)`` where ``inside_clicks`` is a simulator dict of rounded
    ``[i, j, k]`` points inside the image (order kept) and ``outside`` lists
    ``(kind, rounded_point)`` for points outside, so callers can warn and skip them.
    """
    inside = empty_clicks()
    outside: list[tuple[str, list[int]]] = []
    for kind in CLICK_KINDS:
        for point in clicks.get(kind, []):
            rounded = round_point(point)
            if point_inside(rounded, shape):
                inside[kind].append(rounded)
            else:
                outside.append((kind, rounded))
    return inside, outside


def _lesion_id(name: Any, where: str) -> int:
    if isinstance(name, bool):
        raise ClickFormatError(f"{where}: lesion name {_short(name)} is not a lesion id")
    if isinstance(name, int):
        return int(name)
    match = _LESION_ID.match(str(name)) if isinstance(name, str) else None
    if not match:
        raise ClickFormatError(f"{where}: lesion name {_short(name)} is not a lesion id "
                               f"(expected e.g. '3' or 'Lesion 3')")
    return int(match.group(1))


def read_task2_points(path: str | os.PathLike) -> dict[int, tuple[float, float, float]]:
    """Read a Task 2 "Points of interest" file: ``{lesion_id: (x, y, z)}`` in file order.

    Points are float voxel indices ``[i, j, k]``. An empty ``points`` list (or an empty file,
    ``{}``) gives ``{}``. A missing file, malformed JSON, bad points, names that are no lesion
    id and duplicate ids raise :class:`ClickFormatError` naming the file.
    """
    path = Path(path)
    where = f"point file {path}"
    if path.is_dir():
        raise ClickFormatError(f"point file {path} is a folder, expected a JSON file")
    if not path.is_file():
        raise ClickFormatError(f"point file not found: {path}")
    obj = _load_json(path)
    if obj is None or obj == {}:
        return {}
    if not isinstance(obj, dict) or "points" not in obj:
        raise ClickFormatError(f"{where}: expected a JSON object with a 'points' list")
    points = obj["points"]
    if points is None:
        return {}
    if not isinstance(points, list):
        raise ClickFormatError(f"{where}: 'points' must be a list, got {type(points).__name__}")
    _check_count(points, where)
    out: dict[int, tuple[float, float, float]] = {}
    for n, entry in enumerate(points):
        if not isinstance(entry, dict) or "point" not in entry or "name" not in entry:
            raise ClickFormatError(f"{where}: points[{n}] must be an object with 'name' and "
                                   f"'point', got {_short(entry)}")
        lesion = _lesion_id(entry["name"], f"{where}: points[{n}]")
        if lesion in out:
            raise ClickFormatError(f"{where}: lesion id {lesion} appears more than once")
        x, y, z = _check_point(entry["point"], f"{where}: points[{n}]")
        out[lesion] = (float(x), float(y), float(z))
    return out


def task2_points_to_json(points: dict) -> dict:
    """``{lesion_id: (x, y, z)}`` -> Task 2 "Points of interest" dict (ids sorted, as strings).

    The ``type`` and ``version`` keys match the challenge's published Task 2 files.
    """
    entries = [{"name": str(int(lesion)), "point": [float(_plain(v)) for v in points[lesion]]}
               for lesion in sorted(points, key=int)]
    return {"name": TASK2_NAME, "points": entries, "type": GC_TYPE, "version": dict(GC_VERSION)}


def write_task2_points(path: str | os.PathLike, points: dict) -> Path:
    """Write ``{lesion_id: (x, y, z)}`` as a Task 2 "Points of interest" file, atomically."""
    return atomic_write_json(path, task2_points_to_json(points))


def iter_points(clicks: dict, kinds: Iterable[str] = CLICK_KINDS):
    """Yield ``(kind, point)`` for every click, tumor first."""
    for kind in kinds:
        for point in clicks.get(kind, []):
            yield kind, point
