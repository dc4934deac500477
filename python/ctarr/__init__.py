"""ctarr from Python: find and crop anatomical regions in CT scans, with the model and atlas loaded once.

    import ctarr, nibabel as nib
    pipe = ctarr.Pipeline()                       # the shipped model, atlas and regions
    img = nib.load("scan.nii.gz")
    [liver] = pipe.crop(img, ["liver"])           # or pipe.crop("scan.nii.gz", ["liver"]), or a DICOM folder
    crop = liver["crops"][0]                      # a ctarr.Image: .array (i, j, k) and .affine (RAS, as nibabel)
    nib.save(nib.Nifti1Image(crop.array, crop.affine), "liver.nii.gz")
    back = ctarr.uncrop(liver["record"], [crop])  # the crop pasted onto the scan's grid

Conventions (docs/PYTHON.md):
- Arrays are indexed [i, j, k] like nibabel's, with a 4x4 `affine` mapping (i, j, k, 1) to RAS millimetres (nibabel's
  `img.affine`). SimpleITK's convention is accepted too: an array from `sitk.GetArrayFromImage` ([k, j, i]) with
  `origin`, `spacing`, `direction` (LPS, `img.GetOrigin()`, `img.GetSpacing()`, `img.GetDirection()`).
- Results are `ctarr.Image` objects (array [i, j, k], RAS affine, and LPS origin/spacing/direction) and the same
  record the CLI writes, as a dict (its box file names are empty: nothing is written).
- Errors raise `ctarr.Error`, whose `.code` is the CLI's exit code (docs/CLI.md). Ctrl-C stops a call between its
  steps (KeyboardInterrupt). The GIL is released while libctarr works.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import _ctarr

__all__ = ["Error", "Image", "Pipeline", "uncrop", "__version__"]
__version__: str = _ctarr.__version__

#: Raised for every libctarr failure; ``.code`` is the CLI's exit code (2 usage, 3 unreadable input, 4 unsupported
#: geometry, 5 model failure, 6 fit failed, ...).
Error = _ctarr.Error

_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])
_DTYPES = {
    "uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16,
    "uint32": np.uint32, "int32": np.int32, "float32": np.float32, "float64": np.float64,
}


def _error(code: int, message: str) -> Error:
    e = Error(message)
    e.code = code
    return e


@dataclass
class Image:
    """A 3D image: ``array`` indexed [i, j, k] and ``affine`` (4x4, voxel index -> RAS mm, nibabel's convention).

    ``origin``, ``spacing`` and ``direction`` give the same geometry in LPS millimetres (ITK's and SimpleITK's
    convention; ``direction`` columns are the i, j, k axes).
    """

    array: np.ndarray
    affine: np.ndarray

    @property
    def origin(self) -> np.ndarray:
        return _RAS_FROM_LPS @ self.affine[:3, 3]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        return (_RAS_FROM_LPS @ self.affine[:3, :3]) / self.spacing

    @staticmethod
    def from_lps(array_ijk: np.ndarray, origin: Sequence[float], spacing: Sequence[float],
                 direction: Sequence[float]) -> "Image":
        """An image from an [i, j, k] array and its LPS geometry (direction: 9 numbers, row-major, or 3x3)."""
        d = np.asarray(direction, dtype=float).reshape(3, 3)
        affine = np.eye(4)
        affine[:3, :3] = _RAS_FROM_LPS @ d @ np.diag(np.asarray(spacing, dtype=float))
        affine[:3, 3] = _RAS_FROM_LPS @ np.asarray(origin, dtype=float)
        return Image(array_ijk, affine)


def _from_module(d: dict, dtype: Any = np.float32) -> Image:
    """The module's {"voxels": (nk, nj, ni), origin, spacing, direction} as an Image with an [i, j, k] array."""
    array = np.asarray(d["voxels"]).transpose(2, 1, 0)
    if np.dtype(dtype) != np.float32:
        array = array.astype(dtype)
    return Image.from_lps(array, d["origin"], d["spacing"], d["direction"])


def _scan(image: Any, affine: Any = None, origin: Any = None, spacing: Any = None, direction: Any = None):
    """Anything `image` may be -> the module's Scan."""
    if isinstance(image, (str, os.PathLike)):
        return _ctarr.read_scan(os.fspath(image))
    if isinstance(image, Image):
        array, affine = image.array, image.affine
    elif hasattr(image, "affine") and hasattr(image, "dataobj"):  # a nibabel image
        array, affine = np.asanyarray(image.dataobj), image.affine
    else:
        array = np.asarray(image)
    if array.ndim != 3:
        raise _error(4, f"the image array has {array.ndim} dimensions; ctarr needs a 3D volume")
    stored = array.dtype.name if array.dtype.name in _DTYPES else "float32"
    if affine is not None:
        if origin is not None or spacing is not None or direction is not None:
            raise _error(2, "give either affine (nibabel, RAS, array [i, j, k]) or origin/spacing/direction "
                            "(SimpleITK, LPS, array [k, j, i]), not both")
        a = np.asarray(affine, dtype=float)
        if a.shape != (4, 4) or not np.all(np.isfinite(a)):
            raise _error(2, "affine must be a finite 4x4 matrix (voxel index -> RAS mm)")
        m = _RAS_FROM_LPS @ a[:3, :3]
        s = np.linalg.norm(m, axis=0)
        if np.any(s == 0):
            raise _error(4, "the affine has a zero-length axis (zero spacing)")
        voxels_kji = np.ascontiguousarray(array.transpose(2, 1, 0), dtype=np.float32)
        return _ctarr.scan_from_array(voxels_kji, list(_RAS_FROM_LPS @ a[:3, 3]), list(s), list((m / s).ravel()),
                                      stored)
    if origin is None or spacing is None or direction is None:
        raise _error(2, "an array needs its geometry: affine= (nibabel, RAS) or origin=, spacing=, direction= "
                        "(SimpleITK, LPS)")
    voxels_kji = np.ascontiguousarray(array, dtype=np.float32)  # SimpleITK arrays are [k, j, i] already
    return _ctarr.scan_from_array(voxels_kji, [float(v) for v in origin], [float(v) for v in spacing],
                                  [float(v) for v in np.asarray(direction, dtype=float).ravel()], stored)


def _installed_data_dir() -> Optional[str]:
    """<prefix>/share/ctarr when this package is installed under <prefix> (cmake --install) and CTARR_DATA_DIR is
    unset; None in a build tree (libctarr then finds the source tree, as the CLI does)."""
    if os.environ.get("CTARR_DATA_DIR"):
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    for _ in range(5):
        here = os.path.dirname(here)
        candidate = os.path.join(here, "share", "ctarr")
        if os.path.isdir(os.path.join(candidate, "atlas")):
            return candidate
    return None


def _segmentation(seg: Any, affine: Any, origin: Any, spacing: Any, direction: Any):
    """`seg` -> (path, None), (None, Scan) or (None, None). A bare array is taken on the image's grid (the same
    affine or origin/spacing/direction as the image)."""
    if seg is None:
        return None, None
    if isinstance(seg, (str, os.PathLike)):
        return os.fspath(seg), None
    return None, _scan(seg, affine, origin, spacing, direction)


class Pipeline:
    """The model, atlas and regions, loaded once; then crop, segment and fit as many scans as you like.

    Args:
        model: the .safetensors file (its .json card beside it); default: the shipped model.
        atlas: the atlas folder; default: the shipped atlas.
        regions_dir: the folder of region files; default: the shipped regions.
        device: "auto", "cpu", "cuda" or "cuda:N", as the CLI's --device.

    Safe to share between threads: calls on one Pipeline take turns on the network.
    """

    def __init__(self, model: Optional[str] = None, atlas: Optional[str] = None,
                 regions_dir: Optional[str] = None, device: str = "auto") -> None:
        data = _installed_data_dir()
        if data:
            model = model or os.path.join(data, "models", "ctarr-unet.safetensors")
            atlas = atlas or os.path.join(data, "atlas")
            regions_dir = regions_dir or os.path.join(data, "regions")
        self._p = _ctarr.Pipeline(model or "", atlas or "", regions_dir or "", device)

    @property
    def model_id(self) -> str:
        return self._p.model_id

    @property
    def atlas_id(self) -> str:
        return self._p.atlas_id

    @property
    def regions_dir(self) -> str:
        """The folder region names are looked up in."""
        return self._p.regions_dir

    def crop(self, image: Any, regions: Union[str, Sequence[str]], *, seg: Any = None,
             margin: Optional[float] = None, pad: Union[None, float, str] = None,
             target_spacing: Optional[Sequence[float]] = None, z_only: bool = False,
             affine: Any = None, origin: Any = None, spacing: Any = None, direction: Any = None,
             case_id: str = "") -> list[dict]:
        """Crops `regions` out of `image`, as ``ctarr crop`` does.

        Args:
            image: a path (NIfTI, NRRD, MetaImage, a DICOM file or folder), a nibabel image, a ctarr.Image, or an
                array with ``affine`` (nibabel convention) or ``origin``/``spacing``/``direction`` (SimpleITK's).
            regions: region names (``ctarr regions`` lists them) or paths to region files.
            seg: a label map to fit instead of running the network (``--seg``): a file or a folder of
                TotalSegmentator masks, a nibabel image, a ctarr.Image, or an array on the image's grid (taken with
                the image's affine or origin/spacing/direction). ctarr's 19 classes or TotalSegmentator v1/v2 labels.
            margin: mm on every side (default: each region's own); pad: a value or "min" to pad boxes that
                leave the scan (default: clip); target_spacing: resample the crops (mm, 3 numbers);
                z_only: crop along the superior-inferior axis only.

        Returns:
            One dict per region: ``region``, ``crops`` (a ctarr.Image per box that meets the scan, voxels unchanged
            and in the input's type unless resampled), ``record`` (the crop record as a dict).
        """
        scan = _scan(image, affine, origin, spacing, direction)
        seg_path, seg_scan = _segmentation(seg, affine, origin, spacing, direction)
        options = _ctarr.CropOptions()
        if margin is not None:
            options.margin_mm = float(margin)
        if pad is not None:
            options.pad = True
            if pad != "min":
                options.pad_value = float(pad)
        if target_spacing is not None:
            options.target_spacing_mm = [float(v) for v in target_spacing]
        options.z_only = bool(z_only)
        names = [regions] if isinstance(regions, str) else list(regions)
        result = self._p.crop(scan, names, options, seg_path, seg_scan, case_id)
        dtype = np.float32 if target_spacing is not None else _DTYPES.get(scan.stored_type, np.float32)
        out = []
        for r in result["regions"]:
            out.append({"region": r["region"], "crops": [_from_module(c, dtype) for c in r["crops"]],
                        "record": json.loads(r["record"])})
        return out

    def segment(self, image: Any, *, affine: Any = None, origin: Any = None, spacing: Any = None,
                direction: Any = None, all_components: bool = False, mirror_pass: bool = True,
                grid: str = "scan") -> Image:
        """The 19-class label map (uint8; 0 background, classes in ctarr's order), as ``ctarr segment`` writes it:
        on the scan's own grid (``grid="scan"``: the network's 3 mm probabilities interpolated trilinearly at every
        voxel centre, so the map has the scan's shape and geometry) or on the scan's canonical 3 mm grid that the
        network ran on (``grid="3mm"``). The network's pass is combined with its pass over the scan mirrored
        left-right (for every class but the heart, liver and spleen), unless not ``mirror_pass`` (``ctarr segment
        --single-pass``: half the time); the one-piece organs (share/classes.json) keep their largest connected
        piece only, unless ``all_components``."""
        if grid not in ("scan", "3mm"):
            raise _error(2, f'segment: grid must be "scan" or "3mm", not {grid!r}')
        scan = _scan(image, affine, origin, spacing, direction)
        return _from_module(self._p.segment(scan, bool(all_components), bool(mirror_pass), grid), np.uint8)

    def fit(self, image: Any = None, *, seg: Any = None, affine: Any = None, origin: Any = None,
            spacing: Any = None, direction: Any = None) -> dict:
        """The fit of a scan (through the network) or of a label map (`seg`, as for crop) to the atlas: fit Dice,
        orientation found, classes used and the scanner -> atlas transform (4x4, LPS mm)."""
        if image is None and seg is None:
            raise _error(2, "fit needs an image or seg=")
        scan = None if image is None else _scan(image, affine, origin, spacing, direction)
        seg_path, seg_scan = _segmentation(seg, affine, origin, spacing, direction)
        return self._p.fit(scan, seg_path, seg_scan)


def uncrop(record: Union[dict, str, os.PathLike], crops: Sequence[Any], *, labels: Optional[bool] = None,
           fill: Optional[float] = None) -> Image:
    """Pastes crops back onto the grid of the scan they came from, as ``ctarr uncrop`` does.

    Args:
        record: the record (a dict from Pipeline.crop, its JSON text, or a path to a record file).
        crops: one per box that met the scan, in the record's order: ctarr.Image objects or [i, j, k] arrays.
        labels: nearest neighbour and fill 0 (default when the crops hold integers of another type than the
            input's); else linear, filled with the record's pad value.
        fill: the value outside the boxes.
    """
    if isinstance(record, dict):
        text = json.dumps(record)
    elif isinstance(record, os.PathLike) or (isinstance(record, str) and not record.lstrip().startswith("{")):
        with open(record, encoding="utf-8") as f:
            text = f.read()
    else:
        text = record
    rec = json.loads(text)
    arrays = [c.array if isinstance(c, Image) else np.asarray(c) for c in crops]
    stored = rec.get("input", {}).get("stored_type", "float32")
    if labels is None:
        labels = bool(arrays) and np.issubdtype(arrays[0].dtype, np.integer) and arrays[0].dtype.name != stored
    if fill is None:
        fill = 0.0 if labels else float(rec.get("options", {}).get("pad_value") or 0.0)
    kji = [np.ascontiguousarray(a.transpose(2, 1, 0), dtype=np.float32) for a in arrays]
    out = _ctarr.uncrop(text, kji, bool(labels), float(fill))
    dtype = arrays[0].dtype if arrays and arrays[0].dtype.name in _DTYPES else np.float32
    return _from_module(out, dtype)
