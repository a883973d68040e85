"""Load pre-trained nnU-Net weights into a network with more input channels.

A model trained on CT + PET has a first convolution with 2 input channels; the click trainers'
network has 4. :func:`extend_input_channels` gives every weight tensor whose input-channel
dimension (dim 1) is short by the extra channels new zero-initialised input channels, so the
pre-trained network's output is unchanged at the start and the click weights are learnt.
Zero weights still get gradients (the click channels are non-zero), so they do train.

:func:`install_pretrained_weights_adapter` makes the stock ``nnUNetv2_train ...
-pretrained_weights FILE`` do this: nnU-Net's loader (``load_pretrained_weights``) insists on
identical shapes, so the adapter, installed by the click trainers' ``initialize()`` (which the
stock command calls right before loading), writes an extended copy of the checkpoint to a
temporary file and hands that to nnU-Net's own loader. Checkpoints that already fit are passed
through untouched.
"""
from __future__ import annotations

import os
import tempfile
from typing import Mapping

_ADAPTER_FLAG = "_autopet_extends_input_channels"


def extend_input_channels(pretrained: Mapping, target: Mapping, fill: float = 0.0) -> tuple[dict, list[str]]:
    """Extend ``pretrained`` state-dict tensors to the input-channel count of ``target``.

    A tensor is extended when both dicts have the key, both are >= 3-D, and they differ only in
    dimension 1 with the target larger (the first convolution, wherever the architecture
    registers it, e.g. PlainConvUNet's ``conv`` and ``all_modules.0`` aliases, ResEnc's stem).
    New channels are filled with ``fill``. Returns (new state dict, extended keys).
    """
    import torch

    out = dict(pretrained)
    extended = []
    for key, source in pretrained.items():
        goal = target.get(key)
        if goal is None or not hasattr(source, "shape") or source.ndim < 3 or source.ndim != goal.ndim:
            continue
        if source.shape == goal.shape:
            continue
        same_elsewhere = source.shape[0] == goal.shape[0] and source.shape[2:] == goal.shape[2:]
        if same_elsewhere and goal.shape[1] > source.shape[1]:
            extra = torch.full((source.shape[0], goal.shape[1] - source.shape[1], *source.shape[2:]), fill,
                               dtype=source.dtype, device=source.device)
            out[key] = torch.cat((source, extra), dim=1)
            extended.append(key)
    return out, extended


def _network_state_dict(network) -> dict:
    from torch._dynamo import OptimizedModule
    from torch.nn.parallel import DistributedDataParallel

    module = network.module if isinstance(network, DistributedDataParallel) else network
    if isinstance(module, OptimizedModule):
        module = module._orig_mod
    return module.state_dict()


def load_pretrained_weights_extending(network, fname: str, verbose: bool = False, _stock=None):
    """nnU-Net's ``load_pretrained_weights`` for a checkpoint whose first layer has fewer input
    channels than ``network``: extends it (zeros) and delegates to the stock loader."""
    import torch
    from nnunetv2.run import load_pretrained_weights as stock_module

    stock = _stock or stock_module.load_pretrained_weights
    checkpoint = torch.load(fname, map_location="cpu", weights_only=False)
    weights, extended = extend_input_channels(checkpoint["network_weights"], _network_state_dict(network))
    if not extended:
        return stock(network, fname, verbose=verbose)
    print(f"Extending the input layer of the pre-trained weights {fname} with zero-initialised channels "
          f"for the click inputs: {', '.join(extended)}")
    checkpoint["network_weights"] = weights
    fd, tmp = tempfile.mkstemp(prefix="pretrained_extended_", suffix=".pth")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        return stock(network, tmp, verbose=verbose)
    finally:
        os.unlink(tmp)


def install_pretrained_weights_adapter() -> None:
    """Route the stock ``nnUNetv2_train -pretrained_weights`` through
    :func:`load_pretrained_weights_extending` (idempotent; affects this process only)."""
    from nnunetv2.run import run_training

    current = run_training.load_pretrained_weights
    if getattr(current, _ADAPTER_FLAG, False):
        return

    def adapter(network, fname, verbose=False):
        return load_pretrained_weights_extending(network, fname, verbose=verbose, _stock=current)

    setattr(adapter, _ADAPTER_FLAG, True)
    run_training.load_pretrained_weights = adapter
