#!/usr/bin/python3
"""ctarr's atlas fit vs an elastix affine registration, on label maps moved by a known rigid transform.

A benchmark, not a test. Protocol (the same for both methods):
  * input: a label map of a real CT (default: the TotalSegmentator example's own segmentation) and copies of it
    moved inside the same grid by known rigid transforms T (shift, rotation about the body axis, prone = 180 deg);
  * each label map is registered to the atlas: ctarr with `ctarr crop --seg` (its fit, read from the crop record),
    elastix 5 with an affine transform (centre-of-gravity initialisation, 3 resolutions, AdvancedMeanSquares) between
    the scan's organ mask (labels of ctarr's 19 classes, 0/1; fixed, as it is the partial field of view) and the atlas'
    mask (sum of its 19 mean masks, clipped to 1; moving);
  * time: ctarr's fit stage alone (ctarr_bench --fit-only: landmarks + orientation search + Dice refinement, atlas
    already loaded), elastix's whole run (reading both images included);
  * landing error: organ centroids p of the original map land at a0 = F_0(p) in the atlas; in a moved map they are at
    T(p) and land at ak = F_k(T(p)). |ak - a0| (mm) is the registration's inconsistency under a known motion; 0 for a
    method that follows the anatomy exactly.
Prints per case and method: wall time, mean/max landing error. Needs /usr/bin/python3 with nibabel, numpy, scipy, and
elastix on PATH (apt-get install --no-install-recommends elastix).

Usage: scripts/bench_registration.py BUILD_DIR [SEG] [CT]   (BUILD_DIR/bin/ctarr_bench must be built)
"""
import json, os, re, subprocess, sys, tempfile, time

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctarr_labels import totalseg_lookup, totalseg_names  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

def rot_z(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])

def rot_x(deg):
    a = np.deg2rad(deg)
    return np.array([[1.0, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])

CASES = [  # name, rotation (LPS), shift mm (LPS)
    ("identity", np.eye(3), [0, 0, 0]),
    ("shift 20,-15,30 mm", np.eye(3), [20, -15, 30]),
    ("rot z 15 deg + shift", rot_z(15), [10, 5, -10]),
    ("tilt x 10 deg", rot_x(10), [0, 0, 0]),
    ("prone (rot z 180 deg)", rot_z(180), [0, 0, 0]),
]

def moved_labels(lab, aff_lps, R, t, centre):
    """Label map whose content is moved by x -> R (x - c) + c + t (LPS mm), same grid (nearest neighbour)."""
    # output voxel v -> world w = A v; source world = T^-1(w) = R^T (w - c - t) + c; source index = A^-1 (...)
    A = aff_lps[:3, :3]; b = aff_lps[:3, 3]
    Ai = np.linalg.inv(A)
    M = Ai @ R.T @ A
    off = Ai @ (R.T @ (b - centre - t) + centre - b)
    return ndimage.affine_transform(lab, M, offset=off, order=0, mode="constant", cval=0)

def elastix_params(path):
    with open(path, "w") as f:
        f.write("""(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(Registration "MultiResolutionRegistration")
(Interpolator "BSplineInterpolator")
(ResampleInterpolator "FinalBSplineInterpolator")
(Resampler "DefaultResampler")
(FixedImagePyramid "FixedSmoothingImagePyramid")
(MovingImagePyramid "MovingSmoothingImagePyramid")
(Optimizer "AdaptiveStochasticGradientDescent")
(Transform "AffineTransform")
(Metric "AdvancedMeanSquares")
(AutomaticScalesEstimation "true")
(AutomaticTransformInitialization "true")
(AutomaticTransformInitializationMethod "CenterOfGravity")
(NumberOfResolutions 3)
(MaximumNumberOfIterations 500)
(NumberOfSpatialSamples 4096)
(NewSamplesEveryIteration "true")
(ImageSampler "RandomCoordinate")
(BSplineInterpolationOrder 1)
(FinalBSplineInterpolationOrder 1)
(DefaultPixelValue 0)
(WriteResultImage "false")
(ResultImageFormat "nii.gz")
""")

def read_elastix_affine(path):
    """Fixed -> moving map of an elastix AffineTransform file (here scan -> atlas), LPS mm, as a 4x4."""
    vals = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("(") and line.endswith(")"):
            parts = line[1:-1].split()
            vals[parts[0]] = parts[1:]
    p = np.array([float(v) for v in vals["TransformParameters"]])
    c = np.array([float(v) for v in vals["CenterOfRotationPoint"]])
    A = p[:9].reshape(3, 3); t = p[9:12]
    m = np.eye(4); m[:3, :3] = A; m[:3, 3] = t + c - A @ c
    return m

def centroids_lps(lab, aff_lps, ids):
    out = []
    for i in ids:
        idx = np.argwhere(lab == i)
        if len(idx) < 50:
            continue
        out.append(aff_lps[:3, :3] @ idx.mean(0) + aff_lps[:3, 3])
    return np.array(out)

def main():
    build = sys.argv[1]
    data = os.path.join(REPO, "..", "shared", "data", "totalseg_example")
    seg_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(data, "example_seg_fast_force_split.nii.gz")
    ct_path = sys.argv[3] if len(sys.argv) > 3 else os.path.join(data, "example_ct.nii.gz")
    bench = os.path.join(build, "bin", "ctarr_bench")  # its --fit-only prints the fit (the crop record's is not it)
    tmp = tempfile.mkdtemp(prefix="ctarr_regbench_")
    img = nib.load(seg_path)
    lab = np.asarray(img.dataobj).astype(np.int32)
    aff_lps = LPS @ img.affine
    lut = np.array(totalseg_lookup(totalseg_names(2 if lab.max() > 104 else 1)) + [0] * 200)
    ctarr19 = lut[lab]  # ctarr classes 1..19
    ids = [i for i in range(1, 20) if (ctarr19 == i).sum() >= 50]
    centre = aff_lps[:3, :3] @ ((np.array(lab.shape) - 1) / 2.0) + aff_lps[:3, 3]
    p0 = centroids_lps(ctarr19, aff_lps, ids)

    # atlas mask for elastix (fixed), in the atlas' own header
    atlas = nib.load(os.path.join(REPO, "atlas", "atlas.nii.gz"))
    amask = np.clip(np.asarray(atlas.dataobj, dtype=np.float32).sum(-1), 0, 1)
    fixed = os.path.join(tmp, "atlas_mask.nii.gz")
    nib.save(nib.Nifti1Image(amask, atlas.affine), fixed)
    params = os.path.join(tmp, "affine.txt")
    elastix_params(params)

    results = []
    first = {}
    for name, R, t in CASES:
        t = np.array(t, dtype=float)
        moved = moved_labels(lab, aff_lps, R, t, centre) if name != "identity" else lab
        case_seg = os.path.join(tmp, "seg_%d.nii.gz" % len(results))
        nib.save(nib.Nifti1Image(moved.astype(np.int16), img.affine), case_seg)
        p = (R @ (p0 - centre).T).T + centre + t  # where the centroids are now

        # ctarr
        out = os.path.join(tmp, "out_%d" % len(results))
        t0 = time.time()
        r = subprocess.run([bench, ct_path, "--seg", case_seg, "--fit-only", "--out", out], capture_output=True, text=True)
        t_ctarr = time.time() - t0
        line = [l for l in r.stdout.splitlines() if l.startswith("scanner_to_atlas_4x4:")]
        fit_s = [float(m.group(1)) for m in re.finditer(r"^fit \(.*?\)\s+([\d.]+) s", r.stdout, re.M)]
        if r.returncode != 0 or not line:
            print(name, "ctarr failed:", (r.stdout + r.stderr).strip()[-300:]); land_c = None
        else:
            s2a = np.array(json.loads(line[0].split(":", 1)[1]))
            land_c = (s2a[:3, :3] @ p.T).T + s2a[:3, 3]
            t_ctarr = fit_s[0] if fit_s else t_ctarr

        # elastix: scan organ mask -> atlas mask
        moving = os.path.join(tmp, "mask_%d.nii.gz" % len(results))
        nib.save(nib.Nifti1Image((lut[moved] > 0).astype(np.float32), img.affine), moving)
        eout = os.path.join(tmp, "el_%d" % len(results)); os.makedirs(eout, exist_ok=True)
        t0 = time.time()
        # fixed = the scan (a partial field of view), moving = the atlas (whole body): every scan sample maps into
        # the atlas, and the result maps scanner -> atlas points directly
        r = subprocess.run(["elastix", "-f", moving, "-m", fixed, "-p", params, "-out", eout],
                           capture_output=True, text=True)
        t_el = time.time() - t0
        if r.returncode != 0:
            print(name, "elastix failed:", (r.stdout + r.stderr).strip()[-400:]); land_e = None
        else:
            s2a = read_elastix_affine(os.path.join(eout, "TransformParameters.0.txt"))
            land_e = (s2a[:3, :3] @ p.T).T + s2a[:3, 3]
        if name == "identity":
            first = {"ctarr": land_c, "elastix": land_e}
        row = [name]
        for method, land, tt in (("ctarr", land_c, t_ctarr), ("elastix", land_e, t_el)):
            if land is None or first.get(method) is None:
                row.append("%s: failed" % method); continue
            err = np.linalg.norm(land - first[method], axis=1)
            row.append("%s %.1f s, landing error mean %.1f mm, max %.1f mm" % (method, tt, err.mean(), err.max()))
        results.append(row)
        print(" | ".join(row), flush=True)
    print("organs used (ctarr classes):", ids)
    print("load:", open("/proc/loadavg").read().strip())

if __name__ == "__main__":
    main()
