"""Custom nnU-Net v2 preprocessors, found by the stock ``-preprocessor_name`` option.

    nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres -preprocessor_name autoPETOrganPreprocessor

:class:`autoPETOrganPreprocessor` stores one training target per case: the lesion (label 1) from
``labelsTr`` and, elsewhere, the grouped organ classes (2, 3, ...) from the folder that
``Task1.convert_dataset --organs`` wrote (``labelsTr_organs``, named in ``dataset.json`` under
``autopet_organs``). Images are preprocessed exactly as by nnU-Net's ``DefaultPreprocessor``; at
prediction time (no segmentation) it *is* the default preprocessor.

How nnU-Net finds it. nnU-Net 2.8.1 looks preprocessors up only inside its own package folder
``nnunetv2/preprocessing`` (there is no ``nnUNet_extTrainer``-like variable for them). ``setup.sh``
therefore runs ``python -m Task1.preprocessors --install``, which writes one small re-export
module, ``nnunetv2/preprocessing/preprocessors/autopet_preprocessors.py``, into the installed
nnU-Net: the class itself lives here, in the repository, and the plans record only its name.
``--check`` reports whether the hook is in place, ``--uninstall`` removes it. The project's own
predictor (:class:`Task1.predict.Task1Predictor`) resolves these names without the hook
(:func:`preprocessor_class`), so a container image needs nothing in nnU-Net's folder.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.errors import InputError

__all__ = ["autoPETOrganPreprocessor"]
HOOK_MODULE = "autopet_preprocessors"
HOOK_MARKER = "# installed by python -m Task1.preprocessors --install"


class autoPETOrganPreprocessor(DefaultPreprocessor):
    """``DefaultPreprocessor`` whose training target is lesion + organ classes (module docstring)."""

    def run_case(self, image_files, seg_file, plans_manager, configuration_manager, dataset_json):
        if seg_file is None:  # inference: nothing to merge
            return super().run_case(image_files, seg_file, plans_manager, configuration_manager, dataset_json)
        if isinstance(dataset_json, str):
            from autopet_common.image_io import read_json

            dataset_json = read_json(dataset_json, "dataset.json")
        from Task1.organs import merge_lesions_and_organs

        reader = plans_manager.image_reader_writer_class()
        data, properties = reader.read_images(image_files)
        lesion, _ = reader.read_seg(seg_file)
        organs, _ = reader.read_seg(str(organ_file_for(seg_file, dataset_json)))
        seg = merge_lesions_and_organs(lesion, organs)
        return self.run_case_npy(data, seg, properties, plans_manager, configuration_manager, dataset_json)


def organ_file_for(seg_file: str | os.PathLike, dataset_json: dict) -> Path:
    """The grouped organ map that belongs to the lesion label ``seg_file`` (``labelsTr/<case>``
    -> ``<folder>/<case>``, the folder named in ``dataset.json``). Raises :class:`InputError`."""
    from Task1.organs import ORGANS_DATASET_KEY

    record = dataset_json.get(ORGANS_DATASET_KEY)
    if not isinstance(record, dict) or "folder" not in record:
        raise InputError(f"dataset.json has no '{ORGANS_DATASET_KEY}' entry: autoPETOrganPreprocessor needs a "
                         "dataset converted with 'python -m Task1.convert_dataset ... --organs DIR'")
    seg_file = Path(seg_file)
    path = seg_file.parent.parent / str(record["folder"]) / seg_file.name
    if not path.is_file():
        raise InputError(f"organ map {path} not found for the label {seg_file}")
    return path


def preprocessor_class(name: str):
    """The preprocessor class called ``name``: this module's, else nnU-Net's own lookup."""
    if name in __all__:
        return globals()[name]
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "preprocessing"), name,
                                        current_module="nnunetv2.preprocessing")
    if found is None:
        raise InputError(f"preprocessor {name!r} (named in plans.json) is neither nnU-Net's nor this project's")
    return found


def hook_path() -> Path:
    """Where the re-export module goes in the installed nnU-Net."""
    import nnunetv2.preprocessing.preprocessors as package

    return Path(package.__path__[0]) / f"{HOOK_MODULE}.py"


def install_hook() -> Path:
    """Write the re-export module (idempotent, atomic); returns its path."""
    from autopet_common.image_io import atomic_write_bytes

    text = (f"{HOOK_MARKER}\n# Makes the autoPET preprocessors ({', '.join(__all__)}) visible to nnU-Net's "
            "-preprocessor_name lookup;\n# the code lives in the autoPET toolkit's Task1/preprocessors.py. "
            "Safe to delete.\ntry:\n    from Task1.preprocessors import *  # noqa: F401,F403\n"
            "except ImportError:  # the toolkit is not importable here: nnU-Net's own preprocessors still work\n"
            "    pass\n")
    path = hook_path()
    if not path.is_file() or path.read_text() != text:
        atomic_write_bytes(path, text.encode())
    return path


def uninstall_hook() -> bool:
    """Remove the re-export module if this project wrote it; True when removed."""
    path = hook_path()
    if path.is_file() and path.read_text().startswith(HOOK_MARKER):
        path.unlink()
        return True
    return False


def hook_installed() -> bool:
    path = hook_path()
    return path.is_file() and path.read_text().startswith(HOOK_MARKER)


@entrypoint("python -m Task1.preprocessors")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m Task1.preprocessors",
                            description="Make the autoPET preprocessors (autoPETOrganPreprocessor) visible to "
                                        "nnU-Net's stock -preprocessor_name option (see the module docstring).")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--install", action="store_true", help="write the re-export module into nnU-Net")
    action.add_argument("--uninstall", action="store_true", help="remove it")
    action.add_argument("--check", action="store_true", help="exit 0 when installed, 1 when not")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.install:
        path = install_hook()
        if not args.quiet:
            print(f"installed {path}")
        return 0
    if args.uninstall:
        removed = uninstall_hook()
        if not args.quiet:
            print(f"removed {hook_path()}" if removed else "nothing to remove")
        return 0
    installed = hook_installed()
    if not args.quiet:
        print(f"{hook_path()}: {'installed' if installed else 'not installed'}")
    return 0 if installed else 1


if __name__ == "__main__":
    sys.exit(main())
