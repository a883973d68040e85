"""Check a Task 1 model folder before uploading it, and write its tarball.

    python -m Task1.check_model DIR [--tar model.tar.gz]

Grand Challenge extracts the team's model tarball to ``/opt/ml/model`` (read-only). This loads
DIR exactly as the entrypoint will (:func:`Task1.session.open_method`: a recipe and every model
it names, a MONAI folder, or an nnU-Net folder at or up to three levels below: trainer class,
click configuration, every fold's weights into the network the trainer builds), checks
``checkpoint.sha256`` where present, and with ``--tar`` writes the tarball to upload (members
relative to DIR, so DIR's content appears under ``/opt/ml/model``; links stored as files).
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Sequence

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.errors import InputError
from autopet_common.image_io import sha256_of


def _folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder``, following symbolic links (what a tarball holds)."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, files in os.walk(folder, followlinks=True) for name in files)


def check_model_folder(folder: str | os.PathLike) -> dict:
    """Load the model as the entrypoint will; :class:`InputError` names what is wrong. Returns
    what was found (model folder, trainer, configuration, folds, click config version, size).
    A folder with a submission recipe (``autopet_recipe.json``, :mod:`Task1.recipe`) is checked
    as a recipe: the file, and every model folder it names."""
    from autopet_common.contract import MODEL_FREE
    from Task1.recipe import find_recipe, load_recipe

    folder = Path(folder)
    recipe_path = find_recipe(folder)
    if recipe_path is not None:
        recipe = load_recipe(recipe_path)
        names = sorted({m.folder for r in recipe.routes for m in r.models} - {MODEL_FREE})
        models = {name: _check_model(folder / name, folder / name) for name in names}
        size = _folder_size(folder)
        return {"recipe": str(recipe_path), "routes": len(recipe.routes),
                **{f"model {name}": f"{m['trainer']} {m['configuration']} folds {m['folds']}"
                   for name, m in models.items()}, "size_mb": round(size / 2 ** 20, 1)}
    return _check_model(folder, folder)


def _check_model(folder: Path, measured: Path) -> dict:
    """Find the model at ``folder`` (MONAI or nnU-Net), check ``checkpoint.sha256`` where present,
    load it with the entrypoint's predictor, and say what it is."""
    from Task1.model_folder import find_task1_model, load_predictor

    model = find_task1_model(folder)
    if model is None:
        raise InputError(f"{folder}: no nnU-Net model folder (plans.json, dataset.json, fold_X/) at or up to three "
                         "levels below it, and no MONAI model folder (monai_model.json)")
    sums = model / "checkpoint.sha256"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            expected, _, name = line.partition("  ")
            if name and sha256_of(model / name.strip()) != expected.strip():
                raise InputError(f"{model / name.strip()}: sha256 differs from {sums} (a damaged or replaced file)")
    described = load_predictor(model, device="cpu").describe()
    return {"model_dir": str(model), "trainer": described["trainer"], "configuration": described["configuration"],
            "folds": described["folds"], "input_kind": described["input_kind"],
            "click_config_version": described.get("click_config_version"),
            "size_mb": round(_folder_size(measured) / 2 ** 20, 1)}


def write_model_tarball(folder: str | os.PathLike, tar: str | os.PathLike) -> Path:
    """The tarball to upload: DIR's content, members relative to DIR (atomic write)."""
    folder, tar = Path(folder), Path(tar)
    if tar.resolve().is_relative_to(folder.resolve()):
        raise InputError(f"write the tarball {tar} outside the model folder {folder}")
    tmp = tar.with_name(f".{tar.name}.tmp")
    items = []
    # symbolic links are followed and stored as what they point to (a recipe folder may link its
    # models): the platform extracts plain files
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        items += [Path(root) / name for name in dirs + sorted(files)]
    with tarfile.open(tmp, "w:gz", dereference=True) as archive:
        for item in sorted(items):
            archive.add(item, arcname=item.relative_to(folder).as_posix(), recursive=False)
    os.replace(tmp, tar)
    return tar


@entrypoint("python -m Task1.check_model")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m Task1.check_model",
                            description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n", 1)[1])
    parser.add_argument("folder", help="the model folder to upload (becomes /opt/ml/model)")
    parser.add_argument("--tar", default=None, help="also write the tarball to upload (.tar.gz)")
    args = parser.parse_args(argv)
    report = check_model_folder(args.folder)
    for key, value in report.items():
        print(f"{key}: {value}")
    if args.tar:
        print(f"wrote {write_model_tarball(args.folder, args.tar)}")
    print("ok: the entrypoint will load this model")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
