"""Per-class Dice of `ctarr segment` (the C++ network path, the shipped model) on real CTs with labels:

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.segment_eval [--ctarr build/bin/ctarr] [--model M] [--json OUT]

For every case, `ctarr segment CT -o labels.nii.gz` writes the 19-class map; that map is read back and looked up at
every voxel centre of the reference labels' own (native) grid through both affines, so the score is in world space
and independent of how either side resamples. "dice" scores the map as `ctarr segment` writes it by default: on the
CT's own grid (the network's 3 mm probabilities interpolated trilinearly at every voxel centre), from two network
passes (the second over the scan mirrored left-right), the one-piece classes keeping their largest connected piece.
"dice_grid_3mm" scores the map on the network's 3 mm grid (`--grid 3mm`), looked up nearest; "dice_all_components"
the default map with every piece (`--all-components`); "dice_single_pass" with one network pass (`--single-pass`);
"dice_3mm_ceiling" the best any map on that 3 mm grid can score (per 3 mm voxel the majority label of the reference
voxels whose centres fall in it, scored the same way): thin structures such as ribs cannot reach 1 at 3 mm, and the
map on the CT's own grid is not bound by it. Cases: the validation CTs of the training run (s0009, s0002, the
thoracic CTA's heart) and its training CTs (the TotalSegmentator example, s0003).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from . import classes as cl
from .sources import totalseg_masks


FIELDS = {
    "dice": "per-class Dice of the label map as `ctarr segment` writes it by default (on the CT's own grid, the 3 mm "
            "probabilities interpolated trilinearly; the network's pass combined with its pass over the scan mirrored "
            "left-right; the one-piece classes of share/classes.json keep their largest connected piece), looked up "
            "at every reference voxel centre",
    "dice_grid_3mm": "the same map on the network's 3 mm canonical grid (`ctarr segment --grid 3mm`), looked up nearest",
    "dice_all_components": "the default map with every piece (`ctarr segment --all-components`)",
    "dice_single_pass": "the default map from one network pass (`ctarr segment --single-pass`)",
    "dice_3mm_ceiling": "the best any label map on the 3 mm grid can score (per 3 mm voxel the majority of the "
                        "reference voxels whose centres fall in it)",
}


def subject_labels(subject_dir):
    """Native-grid 19-class labels [x, y, z] (nibabel order) + affine + labelled[20] of a TotalSegmentator subject."""
    labels, affine, labelled = None, None, np.zeros(cl.NUM_OUT, bool)
    for name, path in totalseg_masks(subject_dir).items():
        c = cl.label_for_totalseg_name(name)
        if c is None:
            continue
        img = nib.load(path)
        if labels is None:
            labels, affine = np.zeros(img.shape[:3], np.uint8), img.affine
        labels[np.asarray(img.dataobj) > 0] = c
        labelled[c] = True
    return labels, affine, labelled


def example_labels(data):
    folder = Path(data) / "totalseg_example"
    names = cl.totalseg_v2_names(folder / "totalseg_v2_total_labels.json")
    lut = np.array([0] + [cl.label_for_totalseg_name(n) or 0 for n in names[1:]], np.uint8)
    img = nib.load(str(folder / "example_seg_fast_force_split.nii.gz"))
    lab = lut[np.asarray(img.dataobj).astype(np.int64)]
    labelled = np.zeros(cl.NUM_OUT, bool)
    labelled[np.unique(lab)] = True
    return lab, img.affine, labelled


def thorax_labels(data):
    folder = Path(data) / "totalseg_example" / "thorax_cta"
    ct, mask = nib.load(str(folder / "ct_1p5mm.nii.gz")), nib.load(str(folder / "heart.nii.gz"))
    lab = np.where(np.asarray(mask.dataobj) > 0, cl.LABEL["heart"], 0).astype(np.uint8)
    labelled = np.zeros(cl.NUM_OUT, bool)
    labelled[[0, cl.LABEL["heart"]]] = True
    return lab, mask.affine, labelled, ct


def nearest_voxels(pred_img, ref_shape, ref_affine):
    """The prediction grid's voxel nearest to every voxel centre of the reference grid (flattened, [n, 3]), and
    whether it lies inside that grid."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in ref_shape], indexing="ij"), -1).reshape(-1, 3)
    m = np.linalg.inv(pred_img.affine) @ ref_affine
    pv = np.rint(ijk @ m[:3, :3].T + m[:3, 3]).astype(np.int64)
    return pv, np.all((pv >= 0) & (pv < np.array(pred_img.shape[:3])), 1)


def lookup(pred_img, ref_shape, ref_affine):
    """The prediction's label at every voxel centre of the reference grid (nearest; 0 outside)."""
    pv, ok = nearest_voxels(pred_img, ref_shape, ref_affine)
    pred = np.asarray(pred_img.dataobj)
    out = np.zeros(len(pv), np.uint8)
    out[ok] = pred[pv[ok, 0], pv[ok, 1], pv[ok, 2]]
    return out.reshape(ref_shape), ok.reshape(ref_shape)


def best_on_grid(pred_img, ref, ref_affine):
    """The label map on pred_img's grid that scores best against `ref`: per voxel the majority label of the reference
    voxels whose centres fall in it (nearest voxel, as `lookup` reads it back); 0 where none does."""
    shape = np.array(pred_img.shape[:3])
    pv, ok = nearest_voxels(pred_img, ref.shape, ref_affine)
    votes = np.zeros((int(np.prod(shape)), cl.NUM_OUT), np.int32)
    np.add.at(votes, (np.ravel_multi_index(pv[ok].T, shape), ref.reshape(-1)[ok].astype(np.int64)), 1)
    return nib.Nifti1Image(votes.argmax(1).astype(np.uint8).reshape(shape), pred_img.affine)


def dice(pred, ref, labelled, within=None):
    out = {}
    for c in range(1, cl.NUM_OUT):
        if not labelled[c]:
            continue
        r = ref == c
        if within is not None:
            r = r & within
        if r.sum() == 0:
            continue
        p = pred == c
        if within is not None:
            p = p & within
        out[cl.CLASSES[c - 1]] = round(2.0 * float((p & r).sum()) / float(p.sum() + r.sum()), 4)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ctarr", default=str(cl.REPO / "build" / "bin" / "ctarr"))
    ap.add_argument("--model", default=None, help="a .safetensors (default: the ctarr binary's shipped model)")
    ap.add_argument("--data", default=str(cl.REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    data = Path(args.data)
    subjects = data / "totalseg_subjects"
    cases = [("totalseg_s0009", "validation", subjects / "s0009" / "ct.nii.gz", lambda: subject_labels(subjects / "s0009")),
             ("totalseg_s0002", "validation", subjects / "s0002" / "ct.nii.gz", lambda: subject_labels(subjects / "s0002")),
             ("thorax_cta", "validation", data / "totalseg_example" / "thorax_cta" / "ct_1p5mm.nii.gz",
              lambda: thorax_labels(data)[:3]),
             ("totalseg_example", "training", data / "totalseg_example" / "example_ct.nii.gz", lambda: example_labels(data)),
             ("totalseg_s0003", "training", subjects / "s0003" / "ct.nii.gz", lambda: subject_labels(subjects / "s0003"))]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, split, ct, labels in cases:
            result = {"split": split, "ct": str(ct)}
            ref = None
            for key, extra in (("dice", []), ("dice_grid_3mm", ["--grid", "3mm"]),
                               ("dice_all_components", ["--all-components"]), ("dice_single_pass", ["--single-pass"])):
                out = os.path.join(tmp, f"{name}_{key}.nii.gz")
                cmd = [args.ctarr, "segment", str(ct), "-o", out] + extra + (["--model", args.model] if args.model else [])
                t0 = time.time()
                run = subprocess.run(cmd, capture_output=True, text=True)
                seconds = time.time() - t0
                if run.returncode != 0:
                    result = {"split": split, "error": f"exit {run.returncode}: {run.stderr.strip()[-400:]}"}
                    print(name, result["error"])
                    break
                result["seconds" if key == "dice" else f"seconds_{key[5:]}"] = round(seconds, 1)
                if ref is None:
                    ref, affine, labelled = labels()
                pred, inside = lookup(nib.load(out), ref.shape, affine)
                # the thoracic CTA's heart mask lies on a larger grid than its CT: score inside the CT's field of view
                within = inside if name == "thorax_cta" else None
                result[key] = dice(pred, ref, labelled, within)
            if "error" not in result:
                coarse = nib.load(os.path.join(tmp, f"{name}_dice_grid_3mm.nii.gz"))
                best, _ = lookup(best_on_grid(coarse, ref, affine), ref.shape, affine)
                result["dice_3mm_ceiling"] = dice(best, ref, labelled, within)
            results[name] = result
            if "error" not in result:
                d, a, b = result["dice"], result["dice_all_components"], result["dice_3mm_ceiling"]
                one, g3 = result["dice_single_pass"], result["dice_grid_3mm"]
                print(f"{name} ({split}, {result['seconds']:.1f} s, single pass {result['seconds_single_pass']:.1f} s): " +
                      " ".join(f"{c}={v:.3f}" + f" (3 mm grid {g3[c]:.3f})" +
                               (f" (all pieces {a[c]:.3f})" if a[c] != v else "") +
                               f" (single pass {one[c]:.3f})" + f" [3 mm ceiling {b[c]:.3f}]" for c, v in d.items()),
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "PYTHONPATH=python /usr/bin/python3 -m ctarr_train.segment_eval", "fields": FIELDS,
                       "cases": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
