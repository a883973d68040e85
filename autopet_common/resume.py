"""Resuming a long run in the same output folder: one home for what counts as finished work.

A tool that does many units of work (a local challenge run: one per case and step; batch
prediction: one per case) records each finished unit in a ledger folder inside its output
(``.resume/``): the unit's result data and the sha256 of each output file it wrote, written
atomically after the outputs. A rerun into the same folder takes a unit as finished only when

- the ledger was made with the same configuration (``config``: the model and its files, the
  options that change outputs, the unit's inputs as the tool fingerprints them), and
- every output the record names still exists with the recorded sha256 (checked, not trusted
  by name: a file rewritten, truncated or removed since makes the unit run again).

Everything else runs again; ``overwrite`` forgets the ledger. Because every output and every
record is written under a temporary name and renamed (the toolkit's atomic writes), a SIGKILL
at any moment leaves no partial file under a final name: at worst a unit whose outputs were
written but whose record was not, and that unit runs again.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from .image_io import atomic_write_json, sha256_of

log = logging.getLogger("autopet_common.resume")
LEDGER_DIR = ".resume"
_CONFIG = "config.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def folder_fingerprint(folder: str | os.PathLike | None) -> list | None:
    """(relative path, size, mtime) of every file under ``folder``: a cheap stamp of a model
    folder that changes when any of its files is replaced. None for no folder."""
    if folder is None or not Path(folder).is_dir():
        return None
    folder = Path(folder)
    return [[p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(folder.rglob("*")) if p.is_file()]


def files_fingerprint(paths: Iterable[str | os.PathLike]) -> list[str]:
    """sha256 of each file (a unit's inputs)."""
    return [sha256_of(p) for p in paths]


CODE_PACKAGES = ("autopet_common", "clicks", "Task1", "Task2")  # what the entrypoint runs, beside it


def code_fingerprint(entrypoint: str | os.PathLike) -> list | None:
    """A stamp of the code a run executes (the entrypoint file and this project's packages beside
    it), so that a rerun after a code change does not reuse results of the old code."""
    entrypoint = Path(entrypoint)
    if not entrypoint.is_file():
        return None
    stamp = [[entrypoint.name, entrypoint.stat().st_size, entrypoint.stat().st_mtime_ns]]
    for package in CODE_PACKAGES:
        files = folder_fingerprint(entrypoint.parent / package) or []
        stamp += [[f"{package}/{name}", size, mtime] for name, size, mtime in files if name.endswith(".py")]
    return stamp


class Ledger:
    """The finished units of one output folder (see the module docstring)."""

    def __init__(self, output_dir: str | os.PathLike, config: dict[str, Any], *, overwrite: bool = False):
        self.output_dir = Path(output_dir)
        self.folder = self.output_dir / LEDGER_DIR
        self.config = json.loads(json.dumps(config, default=str))  # as it reads back from JSON
        self.resumed: list[str] = []
        previous = self._read(self.folder / _CONFIG)
        if overwrite and self.folder.exists():
            log.info("--overwrite: redoing every unit in %s", self.output_dir)
            shutil.rmtree(self.folder)
        elif previous is not None and previous != self.config:
            changed = sorted(k for k in set(previous) | set(self.config) if previous.get(k) != self.config.get(k))
            log.warning("%s holds results of another configuration (%s differ): redoing every unit",
                        self.output_dir, ", ".join(changed))
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / _CONFIG, self.config)

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _record_path(self, key: str) -> Path:
        return self.folder / f"{_UNSAFE.sub('_', key)}.json"

    def finished(self, key: str, data_check: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The recorded data of unit ``key`` when it finished and its outputs are intact (and its
        recorded ``data`` agrees with ``data_check``, e.g. the unit's input fingerprint), else None."""
        record = self._read(self._record_path(key))
        if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("outputs"), dict):
            return None
        data = record.get("data") or {}
        if any(data.get(k) != json.loads(json.dumps(v, default=str)) for k, v in (data_check or {}).items()):
            return None
        for relative, digest in record["outputs"].items():
            path = self.output_dir / relative
            if not path.is_file() or sha256_of(path) != digest:
                log.info("%s: %s changed or is gone since it was written: running it again", key, relative)
                return None
        self.resumed.append(key)
        return data

    def record(self, key: str, outputs: Iterable[str | os.PathLike], data: dict[str, Any] | None = None) -> None:
        """Record unit ``key`` as finished, after its ``outputs`` (paths in the output folder)
        were written."""
        digests = {}
        for path in outputs:
            path = Path(path)
            digests[path.relative_to(self.output_dir).as_posix()] = sha256_of(path)
        atomic_write_json(self._record_path(key), {"key": key, "outputs": digests, "data": data or {}})

    def forget(self, key: str) -> None:
        """The unit runs again next time (its outputs are not to be trusted)."""
        self._record_path(key).unlink(missing_ok=True)
