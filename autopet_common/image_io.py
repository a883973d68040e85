"""Image I/O with geometry, in the challenge's coordinate convention.

Conventions (see ``../shared/challenge-facts.md``):

- Every array returned or accepted here is indexed ``[i, j, k]`` in ITK / NIfTI order
  (x fastest), the order ``nibabel`` uses and the order click points are written in.
  ``SimpleITK.GetArrayFromImage`` returns ``[k, j, i]``; :func:`read_image` transposes it
  (a view, no copy: the result is Fortran-contiguous).
- :class:`Geometry` holds spacing (mm), origin (mm) and the 3x3 direction matrix, all in
  ITK (LPS) physical space, exactly as SimpleITK reports them for ``.mha`` and ``.nii.gz``.
- Writes are atomic: a temporary file in the target folder, then ``os.replace``. A failed
  write leaves no partial output file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import GridMismatchError, ImageReadError, InputError, NonFiniteError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
# The most voxels an input image may declare (1024 x 1024 x 512): about 5x the largest real autoPET
# PET/CT grid (400 x 400 x 600) and 2x a whole-body CT at 0.8 mm slices. Checked from the header,
# before any voxel is read, so a small compressed file that inflates past memory is refused at once.
MAX_VOXELS = 2 ** 29


def image_suffix(path: str | os.PathLike) -> str:
    """Return the image suffix of ``path`` (``.nii.gz`` counts as one suffix)."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix


def strip_image_suffix(path: str | os.PathLike) -> str:
    """File name of ``path`` without its image suffix: ``a/case_0001.nii.gz`` -> ``case_0001``."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of an image: spacing, origin and direction in ITK physical space.

    ``shape`` is in NIfTI order ``(nx, ny, nz)``; ``direction`` is row-major 3x3.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    origin: tuple[float, ...] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(s) for s in self.origin))
        object.__setattr__(self, "direction", tuple(float(s) for s in self.direction))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (spacing in mm, 1 ml = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def index_to_physical(self, index: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous voxel index ``[i, j, k]`` (or an ``(n, 3)`` array) -> physical point (mm)."""
        idx = np.asarray(index, dtype=float)
        return (self.direction_matrix @ (idx * np.asarray(self.spacing)).T).T + np.asarray(self.origin)

    def physical_to_index(self, point: np.ndarray | Sequence[float]) -> np.ndarray:
        """Physical point (mm) (or an ``(n, 3)`` array) -> continuous voxel index ``[i, j, k]``."""
        p = np.asarray(point, dtype=float) - np.asarray(self.origin)
        return (np.linalg.solve(self.direction_matrix, p.T).T) / np.asarray(self.spacing)

    def with_shape(self, shape: Sequence[int]) -> "Geometry":
        return Geometry(tuple(shape), self.spacing, self.origin, self.direction)

    def sub_grid(self, region: Sequence[slice]) -> "Geometry":
        """The grid of ``array[region]`` (slices with explicit start and stop): same spacing and
        direction, origin at the region's first voxel."""
        return Geometry(tuple(s.stop - s.start for s in region), self.spacing,
                        tuple(self.index_to_physical([s.start for s in region])), self.direction)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "spacing": list(self.spacing),
                "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_sitk(cls, image: Any) -> "Geometry":
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to_sitk(self, image: Any) -> None:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)


def _sitk():
    import SimpleITK as sitk  # imported lazily: importing this module does no work

    return sitk


def read_sitk_image(path: str | os.PathLike, what: str = "image") -> Any:
    """Read ``path`` with SimpleITK; a missing, corrupt or truncated file raises
    :class:`ImageReadError` naming the file."""
    sitk = _sitk()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{what} not found: {path}")
    _check_declared_size(path, what)
    if path.name.lower().endswith(".gz"):
        # ITK's NIfTI reader zero-fills a truncated .nii.gz without raising: check the stream.
        _check_gzip_complete(path, what)
    elif path.name.lower().endswith((".mha", ".mhd")):
        # ITK's MetaImage reader only prints "Uncompress failed" for corrupt compressed data and
        # returns garbage: check the zlib stream and its length.
        _check_metaimage_data(path, what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise ImageReadError(f"cannot read {what} {path}: corrupt, truncated or not an image "
                             f"({first_line})") from None
    except MemoryError:
        raise ImageReadError(f"cannot read {what} {path}: it does not fit in memory") from None
    if image.GetDimension() != 3:
        raise ImageReadError(f"{what} {path} has {image.GetDimension()} dimensions, expected 3")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{what} {path} has {image.GetNumberOfComponentsPerPixel()} "
                             "components per voxel, expected a scalar image")
    return image


def _check_declared_size(path: Path, what: str) -> None:
    """Raise :class:`ImageReadError` when the header of ``path`` declares more than
    :data:`MAX_VOXELS` voxels (a header ITK cannot read is left to the full read, which names
    the file)."""
    reader = _sitk().ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return
    size = tuple(int(s) for s in reader.GetSize())
    voxels = int(np.prod(size, dtype=np.int64)) * max(int(reader.GetNumberOfComponents()), 1)
    if voxels > MAX_VOXELS:
        raise ImageReadError(f"{what} {path}: its header declares {' x '.join(map(str, size))} = {voxels:,} voxels, "
                             f"more than the {MAX_VOXELS:,} an input may have (the autoPET grid is about "
                             "400 x 400 x 300..600); refused before reading its data")


def _check_gzip_complete(path: Path, what: str) -> None:
    """Raise :class:`ImageReadError` if the gzip file ``path`` is truncated or corrupt."""
    import zlib

    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as handle:
            while True:
                chunk = handle.read(1 << 22)
                if not chunk:
                    break
                while chunk:
                    decompressor.decompress(chunk)
                    # A file may hold several gzip members: start over on what follows one.
                    chunk = decompressor.unused_data if decompressor.eof else b""
                    if chunk:
                        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise ImageReadError(f"cannot read {what} {path}: corrupt gzip data ({exc})") from None
    if not decompressor.eof:
        raise ImageReadError(f"cannot read {what} {path}: the file is truncated "
                             "(gzip stream ends early)")


# bytes per element of MetaImage element types (MetaIO's MET_*; MET_LONG is 4 bytes there)
_MET_ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
                      "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
                      "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _metaimage_header(path: Path, what: str) -> tuple[dict[str, str], int]:
    """The ``key = value`` header of a MetaImage file and the offset of its first data byte."""
    header: dict[str, str] = {}
    with open(path, "rb") as handle:
        offset = 0
        for _ in range(200):  # a header has a few dozen lines
            line = handle.readline(4096)
            if not line:
                break
            offset += len(line)
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                raise ImageReadError(f"cannot read {what} {path}: not a MetaImage header line: {line[:60]!r}")
            header[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                return header, offset
    raise ImageReadError(f"cannot read {what} {path}: MetaImage header without ElementDataFile")


def _check_metaimage_data(path: Path, what: str) -> None:
    """Raise :class:`ImageReadError` when the compressed data of a MetaImage file (``.mha``, or
    ``.mhd`` with its data file) is corrupt or has the wrong length. Uncompressed files are left
    to ITK, which reports short data itself."""
    import zlib

    header, offset = _metaimage_header(path, what)
    if header.get("CompressedData", "False").lower() != "true":
        return
    data_file = header["ElementDataFile"]
    if data_file.upper() != "LOCAL":
        if data_file.upper().startswith("LIST") or "%" in data_file:
            return  # multi-file layouts: left to ITK
        path, offset = path.parent / data_file, 0
        if not path.is_file():
            raise ImageReadError(f"cannot read {what}: its data file {path} is missing")
    try:
        dims = [int(v) for v in header.get("DimSize", "").split()]
        channels = int(header.get("ElementNumberOfChannels", "1"))
    except ValueError:
        raise ImageReadError(f"cannot read {what} {path}: bad DimSize in the MetaImage header") from None
    element = _MET_ELEMENT_BYTES.get(header.get("ElementType", ""))
    expected = int(np.prod(dims, dtype=np.int64)) * channels * element if element and dims else None
    produced = 0
    decompressor = zlib.decompressobj()
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            while True:
                chunk = handle.read(1 << 22)
                if not chunk:
                    break
                while chunk:
                    produced += len(decompressor.decompress(chunk))
                    # MetaIO may write several zlib streams one after the other
                    chunk = decompressor.unused_data if decompressor.eof else b""
                    if chunk:
                        decompressor = zlib.decompressobj()
    except zlib.error as exc:
        raise ImageReadError(f"cannot read {what} {path}: corrupt compressed image data ({exc})") from None
    if not decompressor.eof:
        raise ImageReadError(f"cannot read {what} {path}: the compressed image data is truncated")
    if expected is not None and produced != expected:
        raise ImageReadError(f"cannot read {what} {path}: the compressed data holds {produced} bytes, the header "
                             f"({header.get('DimSize')} {header.get('ElementType')}) needs {expected}")


def _nifti_has_non_finite(path: Path) -> int:
    """Count NaN/inf voxels in a NIfTI file as stored (SimpleITK's reader turns them into 0)."""
    import nibabel

    data = np.asanyarray(nibabel.load(str(path)).dataobj)
    return int(np.count_nonzero(~np.isfinite(data))) if np.issubdtype(data.dtype, np.floating) else 0


def read_image(path: str | os.PathLike, dtype: Any = None, check_finite: bool = True,
               what: str = "image") -> tuple[np.ndarray, Geometry]:
    """Read a 3D image as ``(array[i, j, k], Geometry)``: the one checked reader.

    Missing, truncated or corrupt files (including corrupt compressed data that ITK reads
    without an error) raise :class:`ImageReadError` naming the file. ``dtype`` casts the array.
    ``check_finite`` (default on: images and masks alike) raises :class:`NonFiniteError`
    (naming the file) when the image holds NaN or infinite values; SimpleITK reads NaN/inf in
    NIfTI files as 0, so for floating-point NIfTI the check reads the stored values again with
    nibabel. ``what`` names the input in error messages.
    """
    sitk = _sitk()
    image = read_sitk_image(path, what)
    try:
        array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
    except MemoryError:
        raise ImageReadError(f"cannot read {what} {path}: it does not fit in memory") from None
    if check_finite:
        require_finite(array, f"{what} {path}")
        if image_suffix(path) in (".nii", ".nii.gz") and np.issubdtype(array.dtype, np.floating):
            n_bad = _nifti_has_non_finite(Path(path))
            if n_bad:
                raise NonFiniteError(f"{what} {path} contains {n_bad} NaN or infinite voxel(s)")
    return array, Geometry.from_sitk(image)


def read_geometry(path: str | os.PathLike, what: str = "image") -> Geometry:
    """Geometry of an image file, read from its header only."""
    sitk = _sitk()
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{what} not found: {path}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise ImageReadError(f"cannot read the header of {what} {path}: corrupt or not an image") from None
    return Geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def require_finite(array: np.ndarray, name: str) -> None:
    """Raise :class:`NonFiniteError` naming ``name`` if ``array`` has NaN or infinite values."""
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            raise NonFiniteError(f"{name} contains {n_bad} NaN or infinite voxel(s)")


def neighbour_correlation(array: np.ndarray, max_slices: int = 16) -> float:
    """Pearson correlation of each voxel with its neighbour along the first axis, on up to
    ``max_slices`` evenly spaced slices of the last axis: near 1 for an image of a body (smooth
    tissue, sharp only at edges), near 0 for noise. NaN for a constant image."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[0] < 2:
        return float("nan")
    step = max(1, array.shape[2] // max_slices)
    sample = array[:, :, ::step].astype(np.float64)
    a, b = sample[1:].ravel(), sample[:-1].ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


# Below this neighbour correlation a CT is taken for noise (phantoms and real CTs: above 0.8).
MIN_CT_STRUCTURE = 0.3


def degenerate_image_problem(array: np.ndarray, modality: str) -> str | None:
    """Why an image that reads fine cannot be the ``modality`` ("CT" or "PET") it is given as, or
    None: all zero; a PET with no positive value (SUV is never negative); a CT without
    structure (its voxels do not correlate with their neighbours: noise, or a wrong file). For a
    warning: such input is legal, and the method still answers."""
    array = np.asarray(array)
    if not np.any(array):
        return "is all zero: a wrong or empty input? The mask will say little"
    if modality.upper() == "PET":
        peak = float(np.max(array))
        if peak <= 0:
            return (f"has no positive value (max {peak:.3g}): a PET in SUV has uptake above 0; "
                    "a sign flip or a wrong file? The mask will say little")
    elif modality.upper() == "CT":
        correlation = neighbour_correlation(array)
        if correlation != correlation:  # NaN: no variation at all
            return f"is constant ({float(array.flat[0]):.6g} everywhere): a wrong file? The mask will say little"
        if correlation < MIN_CT_STRUCTURE:
            return (f"shows no anatomy: neighbouring voxels correlate at r = {correlation:.2f} (a CT of a body: "
                    "above 0.8); noise or a wrong file? The mask will say little")
    return None


def same_grid(a: Geometry, b: Geometry, atol: float = 1e-3) -> bool:
    """True when two geometries describe the same voxel grid (shape exact, the rest to ``atol``)."""
    return (a.shape == b.shape
            and np.allclose(a.spacing, b.spacing, atol=atol, rtol=0)
            and np.allclose(a.origin, b.origin, atol=atol, rtol=0)
            and np.allclose(a.direction, b.direction, atol=atol, rtol=0))


def check_same_grid(a: Geometry, b: Geometry, name_a: str, name_b: str, atol: float = 1e-3) -> None:
    """Raise :class:`GridMismatchError` naming both inputs when their grids differ."""
    if same_grid(a, b, atol):
        return
    diffs = []
    for attr in ("shape", "spacing", "origin", "direction"):
        va, vb = getattr(a, attr), getattr(b, attr)
        if attr == "shape":
            differ = va != vb
        else:
            differ = not np.allclose(va, vb, atol=atol, rtol=0)
        if differ:
            fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ")"
            diffs.append(f"{attr} {fmt(va)} vs {fmt(vb)}")
    raise GridMismatchError(f"{name_a} and {name_b} are not on the same grid: " + "; ".join(diffs))


def to_sitk(array: np.ndarray, geometry: Geometry | None = None) -> Any:
    """NumPy array ``[i, j, k]`` (+ geometry) -> SimpleITK image."""
    sitk = _sitk()
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    if geometry is not None:
        if tuple(geometry.shape) != tuple(array.shape):
            raise GridMismatchError(f"array of shape {array.shape} does not fit a geometry of "
                                    f"shape {geometry.shape}")
        geometry.apply_to_sitk(image)
    return image


def _default_file_mode() -> int:
    """Mode a plain ``open()`` would give a new file (0666 less the umask).

    ``tempfile.mkstemp`` creates files readable by the owner only; renamed into place they
    would stay so, and a container running as another user could not read its own outputs.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_target(path: Path) -> Path:
    """A temporary path next to ``path`` that keeps its suffix (SimpleITK picks the writer by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = image_suffix(path) or path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{strip_image_suffix(path)}.", suffix=f".tmp{suffix}",
                               dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_sitk_image(image: Any, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a SimpleITK image atomically (temporary file, then rename)."""
    sitk = _sitk()
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_image(array: np.ndarray, geometry: Geometry, path: str | os.PathLike,
                dtype: Any = None, compress: bool = True) -> Path:
    """Write ``array[i, j, k]`` with ``geometry`` to ``path`` (.nii.gz, .mha, ...), atomically."""
    array = np.asarray(array)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return write_sitk_image(to_sitk(array, geometry), path, compress)


def write_mask(mask: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write a binary mask (anything > 0 is foreground) as uint8 0/1 with ``geometry``."""
    return write_image((np.asarray(mask) > 0).astype(np.uint8), geometry, path)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MB blocks (checkpoint checksums)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_replace(path: str | os.PathLike, fill) -> Path:
    """Write ``path`` atomically: ``fill(temporary path)`` writes a temporary file in the target
    folder, which is then renamed over ``path``; on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically (temporary file in the target folder, then rename)."""
    return _atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy a file atomically (a temporary copy in the target folder, then rename)."""
    import shutil

    return _atomic_replace(path, lambda tmp: shutil.copyfile(source, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (NumPy scalars and arrays are converted)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file", *, error: type[Exception] = InputError) -> Any:
    """Read a JSON input file: a missing file, a folder, non-UTF-8 text, malformed JSON and
    absurdly nested JSON raise ``error`` (an :class:`InputError` by default) naming ``what`` and
    the path, never a raw decoder traceback."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}")
    if path.is_dir():
        raise error(f"{what} {path} is a folder, expected a JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise error(f"{what} {path} is nested too deeply") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def find_single_image(folder: str | os.PathLike, what: str) -> Path:
    """The one image file in ``folder``; a clear error if there is none or more than one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{what}: folder not found: {folder}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and image_suffix(p) in IMAGE_SUFFIXES)
    if not files:
        raise ImageReadError(f"{what}: no image (.mha, .nii.gz, ...) in {folder}")
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise ImageReadError(f"{what}: expected exactly one image in {folder}, found {len(files)}: {names}")
    return files[0]


def list_images(folder: str | os.PathLike, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden and temporary files skipped)."""
    suffixes = tuple(suffixes)
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and image_suffix(p) in suffixes)
