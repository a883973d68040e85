"""Grand Challenge socket values: the one reader (and writer) of the value lists the platform
writes for a job.

Where they appear: ``/input/inputs.json`` of an algorithm job, and each job's ``inputs`` and
``outputs`` in the evaluation method's ``/input/predictions.json``. One value (the platform's
shape as of 2026, ``shared/challenge-facts.md``)::

    {"socket": {"slug": "ct-image", "relative_path": "images/ct",
                "is_image_kind": true, "is_panimg_kind": true, "is_dicom_image_kind": false,
                "is_json_kind": false, "is_file_kind": false, "example_value": ...},
     "file": null | "<url>" | {"name": ...}, "image": {"name": "<name>.mha"} | null,
     "value": <inline JSON> | null}

Older files (and grand-challenge-forge 0.7.5's templates) put the same descriptor under the key
``interface`` (with a ``kind`` string instead of the ``is_*_kind`` flags); both are read. Anything
else (not a list, an entry that is not an object, no descriptor or two that disagree, a slug that
is not a non-empty string, a relative path that is absolute or climbs out with ``..``, one slug
twice) is refused with an :class:`InputError` naming the file and the entry.

JSON content: in ``inputs.json`` a JSON socket's content is the file at ``/input/<relative_path>``
(``value`` may be null); in ``predictions.json`` it is the inline ``value`` when present
(:attr:`SocketValue.has_value`), else the platform gave only a ``file`` reference.

Pure functions on parsed JSON; :func:`read_inputs_json` and :func:`write_inputs_json` are the file
edges.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from .cli import ArgumentParser, entrypoint
from .errors import InputError

log = logging.getLogger("inference")  # the entrypoint's log: which task, and from what

DESCRIPTOR_KEYS = ("socket", "interface")  # today's key first, then the legacy one
KIND_FLAGS = ("is_image_kind", "is_panimg_kind", "is_dicom_image_kind", "is_json_kind", "is_file_kind")
# Legacy ``kind`` strings that name image sockets (the rest of the legacy kinds hold JSON or files).
_LEGACY_IMAGE_KINDS = {"image", "segmentation", "heat map", "displacement field"}


@dataclass(frozen=True)
class SocketValue:
    """One socket value, whichever shape it came in.

    ``kind``: "image", "json" or "file" (from the ``is_*_kind`` flags, the legacy ``kind``
    string, or, failing both, from which of ``image`` / ``value`` is given). ``relative_path``:
    as the descriptor gives it, or None. ``has_value``: JSON content given inline in ``value``.
    ``descriptor_key``: "socket" (today's shape) or "interface" (legacy)."""

    slug: str
    kind: str
    relative_path: str | None = None
    image_name: str | None = None
    file: Any = None
    value: Any = None
    has_value: bool = False
    descriptor_key: str = "socket"


def _check_relative_path(path: Any, where: str) -> str | None:
    if path is None:
        return None
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{where}: relative_path must be a non-empty string, got {path!r}")
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (len(path) > 1 and path[1] == ":"):
        raise InputError(f"{where}: relative_path {path!r} must stay inside the job's folder "
                         "(no absolute path, no '..')")
    return posix.as_posix()


def _kind_of(descriptor: dict, entry: dict) -> str:
    if any(flag in descriptor for flag in KIND_FLAGS):
        if descriptor.get("is_image_kind") or descriptor.get("is_panimg_kind") or descriptor.get("is_dicom_image_kind"):
            return "image"
        if descriptor.get("is_json_kind"):
            return "json"
        return "file"
    legacy = descriptor.get("kind")
    if isinstance(legacy, str) and legacy.strip():
        return "image" if legacy.strip().lower() in _LEGACY_IMAGE_KINDS else "json"
    if isinstance(entry.get("image"), dict):
        return "image"
    return "json" if entry.get("value") is not None else "file"


def parse_socket_value(entry: Any, where: str) -> SocketValue:
    """One value (see the module docstring); ``where`` names it in errors ("<file>: entry 3")."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a socket value (an object with 'socket'), got {type(entry).__name__}")
    present = [key for key in DESCRIPTOR_KEYS if entry.get(key) is not None]
    if not present:
        raise InputError(f"{where}: no socket descriptor (expected the key 'socket', or the legacy 'interface'); "
                         f"keys: {sorted(entry)[:8]}")
    descriptors = [entry[key] for key in present]
    for key, descriptor in zip(present, descriptors):
        if not isinstance(descriptor, dict):
            raise InputError(f"{where}: '{key}' must be an object with a 'slug', got {type(descriptor).__name__}")
    slugs = [d.get("slug") for d in descriptors]
    slug = slugs[0]
    if not isinstance(slug, str) or not slug.strip():
        raise InputError(f"{where}: '{present[0]}.slug' must be a non-empty string, got {slug!r}")
    if len(set(map(str, slugs))) > 1:
        raise InputError(f"{where}: 'socket' and 'interface' name different slugs ({slugs[0]!r}, {slugs[1]!r})")
    descriptor = descriptors[0]
    where = f"{where} ({slug})"
    image = entry.get("image")
    if image is not None and not isinstance(image, dict):
        raise InputError(f"{where}: 'image' must be an object with a 'name' or null, got {type(image).__name__}")
    image_name = (image or {}).get("name")
    if image_name is not None and not isinstance(image_name, str):
        raise InputError(f"{where}: image.name must be a string, got {image_name!r}")
    return SocketValue(slug=slug, kind=_kind_of(descriptor, entry),
                       relative_path=_check_relative_path(descriptor.get("relative_path"), where),
                       image_name=image_name, file=entry.get("file"), value=entry.get("value"),
                       has_value=entry.get("value") is not None, descriptor_key=present[0])


def parse_socket_values(values: Any, source: str) -> list[SocketValue]:
    """A list of socket values (``inputs.json``, a job's ``inputs`` / ``outputs``); ``source``
    names where it came from in every error. An empty list is refused: a job has inputs."""
    if not isinstance(values, list):
        raise InputError(f"{source}: expected a list of socket values, got {type(values).__name__}")
    if not values:
        raise InputError(f"{source}: the list of socket values is empty")
    parsed, seen = [], {}
    for index, entry in enumerate(values):
        value = parse_socket_value(entry, f"{source}: entry {index}")
        if value.slug in seen:
            raise InputError(f"{source}: entry {index}: socket {value.slug!r} given twice (entries {seen[value.slug]} "
                             f"and {index})")
        seen[value.slug] = index
        parsed.append(value)
    return parsed


def slugs_of(values: Iterable[SocketValue]) -> tuple[str, ...]:
    """The sorted slugs: the interface key, as the platform's templates build it."""
    return tuple(sorted(v.slug for v in values))


def value_for(values: Iterable[SocketValue], slug: str) -> SocketValue | None:
    """The value of socket ``slug``, or None."""
    return next((v for v in values if v.slug == slug), None)


def read_inputs_json(path: str | os.PathLike) -> list[SocketValue]:
    """``inputs.json`` of an algorithm job, parsed and checked (errors name the file)."""
    from .image_io import read_json

    path = Path(path)
    return parse_socket_values(read_json(path, "inputs.json"), str(path))


# ----------------------------------------------------------------------------- a job's task
def detect_task(input_dir: str | os.PathLike) -> int:
    """1 or 2: from ``/input/inputs.json`` when the platform wrote one (the interface is the
    sorted tuple of its socket slugs, as the platform's template keys it), else from the folder
    layout (the rules of :mod:`autopet_common.contract`); the log says which.
    :class:`InputError` when it is neither, or the interface is unknown."""
    from .contract import INPUTS_FILE, TASK1_SOCKETS, TASK2_SOCKETS, is_task1_input, is_task2_input, task_of_interface

    input_dir = Path(input_dir)
    if (input_dir / INPUTS_FILE).exists():  # a folder there is refused by the reader, naming it
        values = read_inputs_json(input_dir / INPUTS_FILE)
        slugs = slugs_of(values)
        task = task_of_interface(slugs)
        if task is None:
            raise InputError(f"{input_dir / INPUTS_FILE}: unknown interface {list(slugs)} (see "
                             "autopet_common/contract.py INTERFACES)")
        shape = "legacy 'interface'" if any(v.descriptor_key == "interface" for v in values) else "'socket'"
        log.info("task %d from %s (%s shape; interface %s)", task, INPUTS_FILE, shape, ", ".join(slugs))
        # the inputs are read where the contract puts them; a platform that says otherwise is named
        for text in mismatched_relative_paths(values, TASK1_SOCKETS if task == 1 else TASK2_SOCKETS):
            log.warning("%s gives another place for socket %s; this entrypoint reads the contract's path",
                        INPUTS_FILE, text)
        return task
    if not input_dir.is_dir():
        raise InputError(f"input folder not found: {input_dir}")
    if is_task2_input(input_dir):
        log.info("task 2 from the folder layout (no %s)", INPUTS_FILE)
        return 2
    if is_task1_input(input_dir):
        log.info("task 1 from the folder layout (no %s)", INPUTS_FILE)
        return 1
    found = sorted(p.relative_to(input_dir).as_posix() for p in input_dir.glob("*/*"))[:10]
    raise InputError(f"cannot tell the task from {input_dir}: expected images/ct + images/pet "
                     f"(Task 1) or images/primary-followup-ct (Task 2); found {found or 'nothing'}")


# ----------------------------------------------------------------------------- writing
def socket_value(slug: str, spec: dict, *, legacy: bool = False, image_name: str | None = None,
                 value: Any = None, file: Any = None) -> dict:
    """One socket value for ``slug`` described by ``spec`` (an entry of the socket tables of
    :mod:`autopet_common.contract`: ``relative_path`` and ``kind``), in today's shape (every
    descriptor field) or, with ``legacy``, the older ``interface`` shape."""
    kind = spec["kind"]
    if legacy:
        descriptor = {"slug": slug, "relative_path": spec["relative_path"],
                      "kind": {"image": "Image", "json": "Anything"}.get(kind, "File")}
        content: dict[str, Any] = {}
        if image_name is not None:
            content["image"] = {"name": image_name}
        if value is not None:
            content["value"] = value
        if file is not None:
            content["file"] = file
        return {"interface": descriptor, **content}
    descriptor = {"slug": slug, "relative_path": spec["relative_path"],
                  "is_image_kind": kind == "image", "is_panimg_kind": kind == "image",
                  "is_dicom_image_kind": False, "is_json_kind": kind == "json", "is_file_kind": kind == "file"}
    if kind == "json":
        descriptor["example_value"] = _example_value(slug)
    return {"socket": descriptor, "file": file, "image": {"name": image_name} if image_name is not None else None,
            "value": value}


def _example_value(slug: str) -> Any:
    """An empty value of the JSON socket's format (the platform shows it as the example)."""
    from .click_io import clicks_to_gc_format, empty_clicks, task2_points_to_json

    return clicks_to_gc_format(empty_clicks()) if slug == "lesion-clicks" else task2_points_to_json({})


def inputs_json_for(input_dir: str | os.PathLike, *, legacy: bool = False) -> list[dict]:
    """The ``inputs.json`` the platform would write for a Task 1 or Task 2 input folder laid out
    as the contract says: one value per socket found (an image folder with one image, a JSON
    file); JSON values are null (their content is the file), as on the platform."""
    from .contract import TASK1_SOCKETS, TASK2_SOCKETS, is_task2_input, task_of_interface
    from .image_io import list_images

    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder not found: {input_dir}")
    table = TASK2_SOCKETS if is_task2_input(input_dir) else TASK1_SOCKETS
    values = []
    for slug, spec in table.items():
        if spec["role"].endswith("prediction"):
            continue
        path = input_dir / spec["relative_path"]
        if spec["kind"] == "image":
            images = list_images(path) if path.is_dir() else []
            if len(images) == 1:
                values.append(socket_value(slug, spec, legacy=legacy, image_name=images[0].name))
        elif path.is_file():
            values.append(socket_value(slug, spec, legacy=legacy))
    slugs = sorted(v["interface" if legacy else "socket"]["slug"] for v in values)
    if task_of_interface(slugs) is None:
        raise InputError(f"{input_dir}: its sockets {slugs} make no interface of this challenge "
                         "(autopet_common/contract.py INTERFACES)")
    return values


def write_inputs_json(input_dir: str | os.PathLike, *, legacy: bool = False) -> Path:
    """Write ``inputs.json`` into ``input_dir`` (atomically), as the platform does for a job."""
    from .contract import INPUTS_FILE
    from .image_io import atomic_write_json

    return atomic_write_json(Path(input_dir) / INPUTS_FILE, inputs_json_for(input_dir, legacy=legacy))


def relative_path_of(value: SocketValue | None, slug: str, table: dict) -> str:
    """Where a socket's content lies under the job's folder: the descriptor's ``relative_path``
    when given, else the contract's."""
    if value is not None and value.relative_path:
        return value.relative_path
    return table[slug]["relative_path"]


def mismatched_relative_paths(values: Sequence[SocketValue], table: dict) -> list[str]:
    """Sockets whose given ``relative_path`` differs from the contract's (for a warning)."""
    return [f"{v.slug}: {v.relative_path} (the contract says {table[v.slug]['relative_path']})"
            for v in values if v.slug in table and v.relative_path and v.relative_path != table[v.slug]["relative_path"]]


# ----------------------------------------------------------------------------- command line
@entrypoint("python -m autopet_common.socket_values")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m autopet_common.socket_values INPUT_DIR [--legacy]``: write the folder's
    ``inputs.json`` as the platform would (do_test_run.sh, local trials)."""
    parser = ArgumentParser(prog="python -m autopet_common.socket_values",
                            description="Write inputs.json for a Task 1 or Task 2 input folder laid out as the "
                                        "challenge's contract says, in the platform's shape of today (socket values "
                                        "with every descriptor field; a JSON socket's content stays in its file).")
    parser.add_argument("input_dir", type=Path, help="the job's input folder (images/..., *.json)")
    parser.add_argument("--legacy", action="store_true", help="write the older 'interface' shape instead")
    args = parser.parse_args(argv)
    print(f"wrote {write_inputs_json(args.input_dir, legacy=args.legacy)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
