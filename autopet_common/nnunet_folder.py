"""Where a trained nnU-Net v2 model folder is: the one rule for both tasks' model folders."""
from __future__ import annotations

import os
from pathlib import Path


def find_nnunet_model(folder: str | os.PathLike) -> Path | None:
    """The nnU-Net trained-model folder (holding plans.json, dataset.json and fold_*) at or up
    to three levels below ``folder`` (a tarball may hold nnU-Net's ``DatasetXXX/Trainer__Plans__
    Config/`` path); None if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = [folder] + sorted(p for depth in ("*", "*/*", "*/*/*") for p in folder.glob(depth) if p.is_dir())
    for candidate in candidates:
        if ((candidate / "plans.json").is_file() and (candidate / "dataset.json").is_file()
                and any(candidate.glob("fold_*"))):
            return candidate
    return None
