"""The networks of the MONAI backend, built from a model configuration (MONAI's own classes)."""
from __future__ import annotations

from Task1.monai_backend.config import N_CLASSES, MonaiModelConfig, MonaiModelError


def build_network(config: MonaiModelConfig):
    """``monai.networks.nets.DynUNet`` or ``SegResNetDS`` with the configuration's keyword
    arguments, ``config.in_channels`` inputs and two output classes."""
    from monai.networks.nets import DynUNet, SegResNetDS

    classes = {"dynunet": DynUNet, "segresnetds": SegResNetDS}
    try:
        return classes[config.family](spatial_dims=3, in_channels=config.in_channels, out_channels=N_CLASSES,
                                      **config.network)
    except (TypeError, ValueError, AssertionError) as exc:
        raise MonaiModelError(f"cannot build {config.family} from its network arguments {config.network}: {exc}") \
            from None
