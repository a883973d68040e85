"""Opt-in: ``PYTHONPATH=autopet_common/compat`` installs the lazy torchvision work-around at start-up.

See ``torchvision_ops_hook.py`` beside this file; ``setup.sh`` installs the same hook into the
virtual environment when ``import torchvision`` fails there, so this is only needed elsewhere.
"""
try:
    import torchvision_ops_hook

    torchvision_ops_hook.install()
except Exception:  # never break interpreter start-up
    pass
