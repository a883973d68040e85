"""Opt-in work-around for a torchvision whose C extension cannot load (``PYTHONPATH=Task1/compat``).

Why: nnU-Net's trainer search (``nnUNetv2_train -tr NAME`` for any trainer outside nnU-Net)
imports every trainer module of nnU-Net, among them the Primus trainers, which import timm,
which imports torchvision. On a machine with a CPU build of torch and PyPI's CUDA build of
torchvision, torchvision's ``_C`` extension cannot load and ``import torchvision`` then fails on
``register_fake("torchvision::nms")`` ("operator torchvision::nms does not exist"), so the stock
command dies before it reaches ``nnUNet_extTrainer``. nnU-Net never runs a torchvision operator.

What: when (and only when) torchvision's extension fails to load, declare the two operator
schemas torchvision registers fake kernels for, so ``import torchvision`` succeeds; calling
them would still fail. A working torchvision is left untouched. Python runs this file at start-up
only when its folder is on ``PYTHONPATH``.
"""


def _declare_missing_torchvision_ops() -> None:
    import importlib.util
    import os

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = list(spec.submodule_search_locations)[0]
    extension = [f for f in os.listdir(folder) if f.startswith("_C.") and f.endswith((".so", ".pyd"))]
    import torch

    if extension:
        try:
            torch.ops.load_library(os.path.join(folder, extension[0]))
            return  # a working torchvision: nothing to do
        except (OSError, RuntimeError):
            pass
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_torchvision_library"] = library  # keep the definitions alive


try:
    _declare_missing_torchvision_ops()
except Exception:  # never break interpreter start-up
    pass
