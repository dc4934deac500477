"""Tests of the Python API (python/ctarr over libctarr): the same crops as the CLI, arrays in (nibabel's RAS affine,
SimpleITK's LPS geometry), the crop -> uncrop round trip, errors with the CLI's exit codes, threads.

The module is built by CMake into <build>/python (CTARR_BUILD_DIR, default <repo>/build); with no build folder at all
these tests are skipped, with a build folder but no module they fail.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CTARR_BUILD_DIR", REPO / "build"))
if not BUILD.is_dir():
    pytest.skip(f"no build folder {BUILD}: build ctarr with CMake first (README.md)", allow_module_level=True)
sys.path.insert(0, str(BUILD / "python"))
import ctarr  # noqa: E402  (the built package, not python/ctarr of the source tree)
from ctarr_train import classes as ctarr_classes  # noqa: E402  (share/classes.json: the one-piece classes)

CT = REPO / "examples" / "totalseg_example" / "example_ct.nii.gz"
CLI = BUILD / "bin" / "ctarr"


@pytest.fixture(scope="module")
def pipe():
    return ctarr.Pipeline(device="cpu")


@pytest.fixture(scope="module")
def cli_liver(tmp_path_factory):
    """The CLI's liver crop of the example CT: (crop image, record dict)."""
    out = tmp_path_factory.mktemp("cli")
    subprocess.run([str(CLI), "-q", "crop", "--device", "cpu", "--region", "liver", str(CT), "-o", str(out)],
                   check=True)
    record = json.loads((out / "example_ct_liver.json").read_text())
    return nib.load(str(out / record["boxes"][0]["file"])), record


@pytest.fixture(scope="module")
def py_liver(pipe):
    [liver] = pipe.crop(str(CT), ["liver"])
    return liver


def _boxes(record):
    return [(b["index_box_written"], b["atlas_box_mm"]["lower"], b["atlas_box_mm"]["upper"]) for b in record["boxes"]]


def test_the_python_crop_of_a_file_is_the_cli_crop(cli_liver, py_liver):
    cli_image, cli_record = cli_liver
    crop = py_liver["crops"][0]
    assert py_liver["region"] == "liver"
    assert crop.array.dtype == cli_image.get_data_dtype()  # the input's type, as the CLI writes it
    assert crop.array.shape == cli_image.shape
    assert np.array_equal(crop.array, np.asanyarray(cli_image.dataobj))
    np.testing.assert_allclose(crop.affine, cli_image.affine, atol=1e-4)  # the file holds float32
    assert _boxes(py_liver["record"]) == _boxes(cli_record)
    assert py_liver["record"]["transform"]["scanner_to_atlas_4x4"] == cli_record["transform"]["scanner_to_atlas_4x4"]
    assert py_liver["record"]["boxes"][0]["file"] == ""  # nothing written


def test_a_nibabel_array_with_its_ras_affine_crops_like_the_file(pipe, py_liver):
    img = nib.load(str(CT))
    [liver] = pipe.crop(np.asanyarray(img.dataobj), ["liver"], affine=img.affine)
    assert _boxes(liver["record"]) == _boxes(py_liver["record"])
    assert np.array_equal(liver["crops"][0].array, py_liver["crops"][0].array)
    np.testing.assert_allclose(liver["crops"][0].affine, py_liver["crops"][0].affine, atol=1e-4)
    # the nibabel image itself, and SimpleITK's convention (array [k, j, i], LPS geometry)
    [same] = pipe.crop(img, ["liver"])
    assert _boxes(same["record"]) == _boxes(py_liver["record"])
    sitk_like = np.asanyarray(img.dataobj).transpose(2, 1, 0)
    lps = ctarr.Image(np.asanyarray(img.dataobj), img.affine)
    [sitk] = pipe.crop(sitk_like, ["liver"], origin=lps.origin, spacing=lps.spacing, direction=lps.direction)
    assert _boxes(sitk["record"]) == _boxes(py_liver["record"])


def test_crop_then_uncrop_gives_the_scan_back_inside_the_box(py_liver):
    scan = np.asanyarray(nib.load(str(CT)).dataobj)
    back = ctarr.uncrop(py_liver["record"], py_liver["crops"])
    assert back.array.shape == scan.shape
    written = py_liver["record"]["boxes"][0]["index_box_written"]
    start, end = written["start"], written["end"]
    inside = tuple(slice(s, e) for s, e in zip(start, end))
    assert np.array_equal(back.array[inside], scan[inside])
    outside = np.ones(scan.shape, bool)
    outside[inside] = False
    assert np.all(back.array[outside] == py_liver["record"]["options"]["pad_value"])
    np.testing.assert_allclose(back.affine, nib.load(str(CT)).affine, atol=1e-4)


def test_a_bad_input_raises_ctarr_error_with_the_cli_code_naming_the_file(pipe, tmp_path):
    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(ctarr.Error) as e:
        pipe.crop(str(missing), ["liver"])
    assert e.value.code == 3 and str(missing) in str(e.value)
    not_an_image = tmp_path / "notes.nii.gz"
    not_an_image.write_text("not an image")
    with pytest.raises(ctarr.Error) as e:
        pipe.crop(str(not_an_image), ["liver"])
    assert e.value.code == 3 and str(not_an_image) in str(e.value)
    with pytest.raises(ctarr.Error) as e:
        pipe.crop(str(CT), ["no_such_region"])
    assert e.value.code == 2 and "no_such_region" in str(e.value)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(ctarr.Error) as e:
        pipe.crop(np.zeros((8, 8, 8), np.int16), ["liver"], affine=sheared)
    assert e.value.code == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.nii.gz"]  # nothing left behind


def test_two_threads_cropping_at_once_give_what_one_gives(pipe, py_liver):
    results = [None, None]

    def work(n):
        results[n] = pipe.crop(str(CT), ["liver"])[0]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert _boxes(r["record"]) == _boxes(py_liver["record"])
        assert np.array_equal(r["crops"][0].array, py_liver["crops"][0].array)


def test_segment_and_fit(pipe, py_liver):
    labels = pipe.segment(str(CT))
    assert labels.array.dtype == np.uint8
    assert 14 + 1 in np.unique(labels.array)  # liver (class 14, label 15) is in the example CT
    # by default on the scan's own grid: its shape and affine ...
    ct = nib.load(str(CT))
    assert labels.array.shape == ct.shape
    np.testing.assert_allclose(labels.affine, ct.affine, atol=1e-4)
    # ... and grid="3mm" on the canonical 3 mm grid. This CT's voxels are 3 mm, so each of its voxel centres is a
    # voxel centre of the 3 mm grid: the two maps hold the same label at every world position.
    coarse = pipe.segment(str(CT), grid="3mm")
    np.testing.assert_allclose(coarse.spacing, [3.0, 3.0, 3.0])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in ct.shape], indexing="ij"), -1).reshape(-1, 3)
    to_coarse = np.linalg.inv(coarse.affine) @ labels.affine
    at = np.rint(ijk @ to_coarse[:3, :3].T + to_coarse[:3, 3]).astype(int)
    assert np.array_equal(labels.array.reshape(-1), coarse.array[at[:, 0], at[:, 1], at[:, 2]])
    with pytest.raises(ctarr.Error) as bad:
        pipe.segment(str(CT), grid="1mm")
    assert bad.value.code == 2
    fit = pipe.fit(str(CT))
    assert fit["dice"] == pytest.approx(py_liver["record"]["fit"]["dice"])
    assert np.asarray(fit["scanner_to_atlas"]).shape == (4, 4)
    # all_components keeps every piece; the default only ever turns pieces of the one-piece classes to background
    every_piece = pipe.segment(str(CT), all_components=True).array
    changed = labels.array != every_piece
    assert np.all(labels.array[changed] == 0)
    assert set(np.unique(every_piece[changed])) <= set(ctarr_classes.ONE_PIECE)
    # mirror_pass=False runs the network once: background, liver, spleen and heart keep the first pass's order, so
    # every voxel where the two maps differ holds a class the mirrored pass votes on in one of them
    single = pipe.segment(str(CT), all_components=True, mirror_pass=False).array
    differs = single != every_piece
    assert differs.any()
    alone = set(ctarr_classes.LATERALISED) | {0}
    voted = ~np.isin(single, list(alone)) | ~np.isin(every_piece, list(alone))
    assert np.all(voted[differs])


class CropRegiond:
    """docs/PYTHON.md's MONAI-style dictionary transform, as written there."""

    def __init__(self, pipe, region, image_key="image", label_keys=("label",), affine_key="affine"):
        self.pipe, self.region, self.image_key, self.label_keys, self.affine_key = pipe, region, image_key, label_keys, affine_key

    def __call__(self, data):
        d = dict(data)
        [r] = self.pipe.crop(d[self.image_key], [self.region], affine=d[self.affine_key])
        box = r["record"]["boxes"][0]["index_box_in_scan"]
        sl = tuple(slice(s, e) for s, e in zip(box["start"], box["end"]))
        d[self.image_key], d[self.affine_key] = r["crops"][0].array, r["crops"][0].affine
        for k in self.label_keys:
            d[k] = np.asarray(d[k])[sl]
        d[f"{self.region}_record"] = r["record"]
        return d


def test_the_monai_style_transform_of_the_docs_crops_image_and_label_alike(pipe, py_liver):
    img = nib.load(str(CT))
    image = np.asanyarray(img.dataobj)
    label = (image > 100).astype(np.uint8)  # any label map on the scan's grid
    out = CropRegiond(pipe, "liver")({"image": image, "label": label, "affine": img.affine})
    assert np.array_equal(out["image"], py_liver["crops"][0].array)
    assert out["label"].shape == out["image"].shape
    assert np.array_equal(out["label"], (out["image"] > 100).astype(np.uint8))
    assert out["liver_record"]["region"]["name"] == "liver"


def test_ctrl_c_stops_a_long_call_with_keyboard_interrupt(tmp_path):
    script = tmp_path / "loop.py"
    # A process started in the background by a non-interactive shell (CI, nohup ... &) inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler; a terminal's Python has it. Install it as Python would.
    script.write_text(
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys; sys.path.insert(0, %r)\n"
        "import ctarr\n"
        "pipe = ctarr.Pipeline(device='cpu')\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    pipe.crop(%r, ['liver'])\n" % (str(BUILD / "python"), str(CT)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    import signal
    import time
    time.sleep(2.0)  # inside a crop
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Ctrl-C did not stop the crop within 120 s")
    assert "KeyboardInterrupt" in err, err[-2000:]


def test_a_label_map_instead_of_the_network_crops_as_the_cli_with_seg(pipe, tmp_path):
    labels = pipe.segment(str(CT))  # a 19-class label map on the scan's grid
    seg = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(labels.array, labels.affine), str(seg))
    out = tmp_path / "cli"
    subprocess.run([str(CLI), "-q", "crop", "--device", "cpu", "--region", "liver", "--seg", str(seg), str(CT),
                    "-o", str(out)], check=True)
    cli_record = json.loads((out / "example_ct_liver.json").read_text())
    [by_path] = pipe.crop(str(CT), ["liver"], seg=str(seg))
    assert _boxes(by_path["record"]) == _boxes(cli_record)
    assert by_path["record"]["model"] == "none (--seg)"
    cli_crop = np.asanyarray(nib.load(str(out / cli_record["boxes"][0]["file"])).dataobj)
    assert np.array_equal(by_path["crops"][0].array, cli_crop)
    # the label map as a nibabel image in memory: the same fit up to the file's float32 geometry
    [in_memory] = pipe.crop(str(CT), ["liver"], seg=nib.load(str(seg)))
    for a, b in zip(in_memory["record"]["boxes"], by_path["record"]["boxes"]):
        for key in ("start", "end"):
            assert np.max(np.abs(np.subtract(a["index_box_written"][key], b["index_box_written"][key]))) <= 1
    fit = pipe.fit(seg=str(seg))
    assert fit["dice"] == pytest.approx(by_path["record"]["fit"]["dice"])
    with pytest.raises(ctarr.Error) as e:
        pipe.crop(str(CT), ["liver"], seg=ctarr.Image(labels.array.astype(np.float32) + 0.5, labels.affine))
    assert e.value.code == 3 and "not an integer label" in str(e.value)
