"""Exceptions raised for bad input. Every message names the offending file or input."""


class InputError(ValueError):
    """Bad input the user can fix (missing file, corrupt image, mismatched grids, NaN, bad JSON)."""


class ImageReadError(InputError):
    """An image file is missing, unreadable, truncated or not an image."""


class GridMismatchError(InputError):
    """Two images that must share a voxel grid do not."""


class NonFiniteError(InputError):
    """An image contains NaN or infinite values."""


class ClickFormatError(InputError):
    """A click JSON file is malformed or has unknown point names."""
