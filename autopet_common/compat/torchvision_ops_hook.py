"""Lazy work-around for a torchvision whose C extension cannot load.

Why: nnU-Net's trainer search (``nnUNetv2_train -tr NAME`` for any trainer outside nnU-Net)
imports every trainer module of nnU-Net, among them the Primus trainers, which import timm,
which imports torchvision. With a CPU build of torch and PyPI's CUDA build of torchvision,
torchvision's ``_C`` extension cannot load and ``import torchvision`` fails on
``register_fake("torchvision::nms")`` ("operator torchvision::nms does not exist"), so the stock
command dies before it reaches ``nnUNet_extTrainer``. nnU-Net never runs a torchvision operator.

What: :func:`install` puts a finder on ``sys.meta_path`` that does nothing until something
imports ``torchvision``. Then, once, and only if torchvision's extension fails to load, it
declares the two operator schemas torchvision registers fake kernels for, so the import
succeeds (calling those operators would still fail). A working torchvision is left untouched,
and interpreters that never import torchvision never import torch because of this file.

How it is activated: ``setup.sh`` installs it into the virtual environment (a ``.pth`` file)
only when ``import torchvision`` fails there; alternatively put this folder on ``PYTHONPATH``
(``sitecustomize.py`` beside it installs the hook).
"""
from __future__ import annotations

import importlib.abc
import sys


def declare_missing_torchvision_ops() -> bool:
    """Declare ``torchvision::nms`` / ``qnms`` if torchvision's extension cannot load.

    Returns True when the schemas were declared, False when torchvision is absent or works.
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = list(spec.submodule_search_locations)[0]
    extension = [f for f in os.listdir(folder) if f.startswith("_C.") and f.endswith((".so", ".pyd"))]
    import torch

    if extension:
        try:
            torch.ops.load_library(os.path.join(folder, extension[0]))
            return False  # a working torchvision: nothing to do
        except (OSError, RuntimeError):
            pass
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_torchvision_library"] = library  # keep the definitions alive
    return True


class _TorchvisionImportFinder(importlib.abc.MetaPathFinder):
    """Runs :func:`declare_missing_torchvision_ops` just before the first ``import torchvision``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            uninstall()  # once; the regular finders then import torchvision
            try:
                declare_missing_torchvision_ops()
            except Exception:  # never break the import that triggered us
                pass
        return None


def install() -> None:
    if not any(isinstance(f, _TorchvisionImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionImportFinder())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionImportFinder)]
