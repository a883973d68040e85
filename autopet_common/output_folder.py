"""The toolkit's output-folder policy: one home for how tools create, replace and tidy folders.

- Folders a tool builds as a whole (an nnU-Net dataset, a phantom cohort) are built in a
  temporary folder next to the target and renamed into place only when complete
  (:func:`staged_folder`): a failure leaves neither a partial folder nor a stale mix of old
  and new cases, and a rerun with fewer cases leaves no stale ones.
- Names that become folder names (dataset names) are plain names (:func:`check_folder_name`):
  nothing like ``../../x`` that would write outside the output folder.
- A folder a tool owns (the entrypoint's mask folder) holds only what this run wrote: emptied of
  an earlier run's files when the run starts (:func:`clear_owned_folders`, so a run that fails
  leaves no older mask that reads as its own) and of anything else when it ends
  (:func:`remove_stale_files`), so a reader never has to choose between an old and a new file.
- Nothing is written through a symlink that leads out of the output folder (:func:`check_inside`).
- New folders get the mode a plain ``mkdir`` would (``tempfile.mkdtemp`` gives 0700).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError

log = logging.getLogger("autopet_common.output_folder")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def check_folder_name(name: str, what: str = "name") -> str:
    """``name`` if it is a plain folder name (letters, digits, ``_``, ``-``; no separators,
    no ``..``); else :class:`InputError` naming ``what``."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 200:
        raise InputError(f"{what} must be letters, digits, '_' and '-' (a plain folder name), got {name!r}")
    return name


def default_dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder (0777 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


@contextmanager
def staged_folder(target: str | os.PathLike, *, replace: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Build ``target`` in a temporary folder beside it; on success remove ``target`` and the
    folders in ``replace`` (e.g. a dataset with the same id under another name) and rename the
    temporary folder to ``target``; on any error remove the temporary folder and re-raise."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(work, default_dir_mode())
        yield work
        for old in {Path(p) for p in replace} | {target}:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def remove_stale_files(folder: str | os.PathLike, keep: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the files of ``folder`` (not recursing) other than ``keep``; returns what was
    removed, each with a warning. For folders a tool owns, such as the entrypoint's mask folder."""
    folder = Path(folder)
    keep = {Path(p).resolve() for p in keep}
    removed = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.resolve() not in keep and not path.name.startswith("."):
            log.warning("removing %s: a file this run did not write, in a folder that holds only its outputs", path)
            path.unlink()
            removed.append(path)
    return removed


@contextmanager
def staged_contents(target: str | os.PathLike, owned: Iterable[str]) -> Iterator[Path]:
    """Like :func:`staged_folder` for a folder that may hold other things too (a user's output
    folder): the entries named ``owned`` (files or folders) are built in a temporary folder and,
    on success, replace the same entries of ``target``; everything else in ``target`` stays."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(f"output folder {target} is a file, not a folder")
    target.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target))
    try:
        os.chmod(work, default_dir_mode())
        yield work
        for name in owned:
            old, new = target / name, work / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
            if new.exists():
                os.replace(new, old)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a folder a tool may write into: raise :class:`InputError` when it, or the
    first of its parents that exists, is a file (checked before any work starts)."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{what} {path}: {probe} is a file, not a folder")
    return path


def check_inside(output_dir: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """``output_dir / relative``, checked not to lead out of ``output_dir``: every part of it
    that exists (a folder, a file or a symlink) must resolve inside ``output_dir``, so a symlink
    planted in the output never makes a tool write elsewhere. :class:`InputError` names the
    part. ``output_dir`` itself may be a symlink (the user chose it)."""
    output_dir = Path(output_dir)
    root = output_dir.resolve()
    probe = output_dir
    for part in Path(relative).parts:
        probe = probe / part
        if probe.is_symlink() or probe.exists():
            resolved = probe.resolve()
            if resolved != root and root not in resolved.parents:
                raise InputError(f"{probe} leads out of the output folder {output_dir} (to {resolved}); "
                                 "refusing to write through it: remove the link")
    return output_dir / relative


def clear_owned_folders(output_dir: str | os.PathLike, relatives: Iterable[str | os.PathLike]) -> list[Path]:
    """At the start of a run: check each folder the tool owns under ``output_dir``
    (:func:`check_inside`) and remove what an earlier run left in it, so that whatever happens
    next (a failure included) no file there reads as this run's result. Returns what was removed."""
    removed = []
    for relative in relatives:
        folder = check_inside(output_dir, relative)
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if (path.is_file() or path.is_symlink()) and not path.name.startswith("."):
                    log.warning("removing %s, left by an earlier run: this run writes its own", path)
                    path.unlink()
                    removed.append(path)
    return removed
