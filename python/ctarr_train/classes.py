"""The segmentation contract (share/classes.json, also compiled into the C++) and mappings onto the 19 classes.

Label values are 1..19 in CLASSES order; 0 is background. Left/right are the patient's.
"""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTRACT_PATH = REPO / "share" / "classes.json"

with open(CONTRACT_PATH) as _f:
    _contract = json.load(_f)

CLASSES = list(_contract["classes"])
WINDOWS_HU = [list(map(float, w)) for w in _contract["windows_hu"]]
SPACING_MM = float(_contract["spacing_mm"])
NUM_CLASSES = len(CLASSES)
NUM_OUT = NUM_CLASSES + 1  # background + classes
IN_CHANNELS = len(WINDOWS_HU)
LABEL = {name: i + 1 for i, name in enumerate(CLASSES)}
# label values of the classes that are one piece of tissue: `ctarr segment` keeps their largest connected piece
ONE_PIECE = [LABEL[name] for name in _contract["one_piece"]]
# label values of the classes that lie on one side of every body: `ctarr segment`'s mirrored pass does not vote on them
LATERALISED = [LABEL[name] for name in _contract["lateralised"]]

_HEART_PARTS = {"heart", "heart_myocardium", "heart_atrium_left", "heart_atrium_right", "heart_ventricle_left",
                "heart_ventricle_right", "atrial_appendage_left"}


def label_for_totalseg_name(name):
    """ctarr label 1..19 of a TotalSegmentator (v1 or v2) structure name, or None (the rules of src/classes.cpp)."""
    if name in LABEL:
        return LABEL[name]
    m = re.fullmatch(r"vertebrae_([CTL])(\d{1,2})", name)
    if m:
        level, n = m.group(1), int(m.group(2))
        limits = {"C": (7, "vertebrae_cervical"), "T": (12, "vertebrae_thoracic"), "L": (6, "vertebrae_lumbar")}
        top, cls = limits[level]
        return LABEL[cls] if 1 <= n <= top else None
    if name in ("sacrum", "vertebrae_S1"):
        return LABEL["sacrum"]
    for side in ("left", "right"):
        m = re.fullmatch(rf"rib_{side}_(\d{{1,2}})", name)
        if (m and 1 <= int(m.group(1)) <= 13) or name in (f"scapula_{side}", f"clavicula_{side}"):
            return LABEL[f"ribs_{side}"]
    if name.startswith("lung_") and name.endswith("_left"):
        return LABEL["lung_left"]
    if name.startswith("lung_") and name.endswith("_right"):
        return LABEL["lung_right"]
    if name in _HEART_PARTS:
        return LABEL["heart"]
    if name in ("kidney_cyst_left",):
        return LABEL["kidney_left"]
    if name in ("kidney_cyst_right",):
        return LABEL["kidney_right"]
    return None


def totalseg_v2_names(labels_json):
    """Name table (index = label value) from TotalSegmentator's own label file (totalseg_v2_total_labels.json)."""
    with open(labels_json) as f:
        raw = json.load(f)
    table = raw.get("labels", raw) if isinstance(raw, dict) else raw
    if isinstance(table, dict):
        items = sorted((int(k), v) for k, v in table.items())
        names = ["background"] * (items[-1][0] + 1)
        for k, v in items:
            names[k] = v
        return names
    return list(table)
