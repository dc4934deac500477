"""ctarr's 19 anatomical classes and the mappings onto them, for the Python scripts.

Class names from share/classes.json (the contract src/classes.cpp compiles in); mirrors src/classes.cpp ( TotalSegmentator v1/v2 name tables and
the name rules); tests compare the C++ tables with TotalSegmentator's own label file. Also maps the organs of
the ICRP Publication 110 reference phantoms onto the 19 classes.

Label values are 1..19 in CLASS_NAMES order; 0 is background. Left/right are the patient's.
"""

import json
import os
import re
import sys

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "share", "classes.json")) as _f:
    CLASS_NAMES = json.load(_f)["classes"]  # the contract shared with the C++ and python/ctarr_train
NUM_CLASSES = len(CLASS_NAMES)
LABEL = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}  # name -> label value

# TotalSegmentator v1 "total" task, index = label value (0 = background).
TOTALSEG_V1_NAMES = (
    ["background", "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
     "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
     "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
     "lung_middle_lobe_right", "lung_lower_lobe_right"]
    + [f"vertebrae_L{i}" for i in range(5, 0, -1)]       # 18-22
    + [f"vertebrae_T{i}" for i in range(12, 0, -1)]      # 23-34
    + [f"vertebrae_C{i}" for i in range(7, 0, -1)]       # 35-41
    + ["esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
       "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain", "iliac_artery_left",
       "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "small_bowel", "duodenum", "colon"]
    + [f"rib_left_{i}" for i in range(1, 13)]            # 58-69
    + [f"rib_right_{i}" for i in range(1, 13)]           # 70-81
    + ["humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left", "clavicula_right",
       "femur_left", "femur_right", "hip_left", "hip_right", "sacrum", "face", "gluteus_maximus_left",
       "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right", "gluteus_minimus_left",
       "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right",
       "urinary_bladder"]
)

# TotalSegmentator v2 "total" task, index = label value (0 = background).
TOTALSEG_V2_NAMES = (
    ["background", "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
     "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
     "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea",
     "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left",
     "kidney_cyst_right", "sacrum", "vertebrae_S1"]
    + [f"vertebrae_L{i}" for i in range(5, 0, -1)]       # 27-31
    + [f"vertebrae_T{i}" for i in range(12, 0, -1)]      # 32-43
    + [f"vertebrae_C{i}" for i in range(7, 0, -1)]       # 44-50
    + ["heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
       "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
       "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left",
       "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left",
       "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right",
       "scapula_left", "scapula_right", "clavicula_left", "clavicula_right", "femur_left", "femur_right",
       "hip_left", "hip_right", "spinal_cord", "gluteus_maximus_left", "gluteus_maximus_right",
       "gluteus_medius_left", "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right",
       "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right", "brain", "skull"]
    + [f"rib_left_{i}" for i in range(1, 13)]            # 92-103
    + [f"rib_right_{i}" for i in range(1, 13)]           # 104-115
    + ["sternum", "costal_cartilages"]                   # 116-117
)
assert len(TOTALSEG_V1_NAMES) == 105 and len(TOTALSEG_V2_NAMES) == 118

_HEART_PARTS = {"heart", "heart_myocardium", "heart_atrium_left", "heart_atrium_right", "heart_ventricle_left",
                "heart_ventricle_right", "atrial_appendage_left"}


def label_for_totalseg_name(name):
    """ctarr label 1..19 of a TotalSegmentator (v1 or v2) structure name, or None (same rules as the C++)."""
    if name in LABEL:
        return LABEL[name]
    if name == "skull":
        return 1
    m = re.fullmatch(r"vertebrae_([CTL])(\d{1,2})", name)
    if m:
        level, n = m.group(1), int(m.group(2))
        if level == "C" and 1 <= n <= 7:
            return 2
        if level == "T" and 1 <= n <= 12:
            return 3
        if level == "L" and 1 <= n <= 6:
            return 4
        return None
    if name in ("sacrum", "vertebrae_S1"):
        return 8
    for side, label in (("left", 5), ("right", 6)):
        m = re.fullmatch(rf"rib_{side}_(\d{{1,2}})", name)
        if (m and 1 <= int(m.group(1)) <= 13) or name in (f"scapula_{side}", f"clavicula_{side}"):
            return label
    if name == "sternum":
        return 7
    if name == "hip_left":
        return 9
    if name == "hip_right":
        return 10
    if name == "brain":
        return 11
    if name.startswith("lung_") and name.endswith("_left"):
        return 12
    if name.startswith("lung_") and name.endswith("_right"):
        return 13
    if name in _HEART_PARTS:
        return 14
    if name == "liver":
        return 15
    if name == "spleen":
        return 16
    if name in ("kidney_left", "kidney_cyst_left"):
        return 17
    if name in ("kidney_right", "kidney_cyst_right"):
        return 18
    if name == "urinary_bladder":
        return 19
    return None


def totalseg_names(version):
    """Name table (index = label value) of TotalSegmentator version 1 or 2."""
    if version == 1:
        return list(TOTALSEG_V1_NAMES)
    if version == 2:
        return list(TOTALSEG_V2_NAMES)
    raise ValueError(f"unknown TotalSegmentator version {version!r} (1 or 2)")


def totalseg_lookup(names):
    """Lookup table (list of int, index = old label) for a name table such as totalseg_names(2)."""
    return [0 if i == 0 else (label_for_totalseg_name(n) or 0) for i, n in enumerate(names)]


# --- ICRP Publication 110 reference phantoms (AM, AF) -------------------------------------------------------
#
# Organ names as in *_organs.dat. Bilateral structures that the phantoms do not split (ribs, scapulae,
# clavicles, pelvis) map to a (left, right) pair and are split at the body midline by the caller.
# Skull = cranium + mandible (the paper's skull) + teeth, which sit in the jaws and are bone-bright on CT.

RIBS_PAIR = (LABEL["ribs_left"], LABEL["ribs_right"])
HIP_PAIR = (LABEL["hip_left"], LABEL["hip_right"])


def icrp110_label_for_organ_name(name):
    """ctarr label (int), a (left, right) label pair to split at the midline, or None, for an ICRP 110 organ."""
    n = " ".join(name.lower().replace(",", " , ").split()).replace(" ,", ",")
    if n.startswith("cranium,") or n.startswith("mandible,") or n == "teeth":
        return LABEL["skull"]
    if n.startswith("cervical spine,"):
        return LABEL["vertebrae_cervical"]
    if n.startswith("thoracic spine,"):
        return LABEL["vertebrae_thoracic"]
    if n.startswith("lumbar spine,"):
        return LABEL["vertebrae_lumbar"]
    if n.startswith("sacrum,"):
        return LABEL["sacrum"]
    if n.startswith("sternum,"):
        return LABEL["sternum"]
    if n.startswith("ribs,") or n.startswith("scapulae,") or n.startswith("clavicles,"):
        return RIBS_PAIR
    if n.startswith("pelvis,"):
        return HIP_PAIR
    if n == "brain":
        return LABEL["brain"]
    if n.startswith("lung, left,"):
        return LABEL["lung_left"]
    if n.startswith("lung, right,"):
        return LABEL["lung_right"]
    if n in ("heart wall", "heart contents (blood)"):
        return LABEL["heart"]
    if n == "liver":
        return LABEL["liver"]
    if n == "spleen":
        return LABEL["spleen"]
    if n.startswith("kidney, left,"):
        return LABEL["kidney_left"]
    if n.startswith("kidney, right,"):
        return LABEL["kidney_right"]
    if n in ("urinary bladder wall", "urinary bladder contents"):
        return LABEL["urinary_bladder"]
    return None


# The organ table parser is the training package's (one copy); imported here for the scripts.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from ctarr_train.sources import read_icrp110_organs  # noqa: E402,F401


def read_icrp110_media(path):
    """Parses an ICRP 110 *_media.dat: {tissue_number: (name, {element: mass_percent})}."""
    media, elements = {}, None
    with open(path, encoding="latin-1") as f:
        for line in f:
            fields = line.split()
            if elements is None and fields[:3] == ["Tissues", "to", "be"]:
                elements = fields[-13:]
                continue
            if elements is None:
                continue
            m = re.match(r"^\s*(\d+)\s+(.+?)((?:\s+\d+\.\d+){13})\s*$", line)
            if m:
                values = [float(v) for v in m.group(3).split()]
                media[int(m.group(1))] = (m.group(2).strip(), dict(zip(elements, values)))
    if not media:
        raise ValueError(f"{path}: no tissue rows found")
    return media


def icrp110_organs_by_class(organs):
    """{label: [organ ids]} for single-label classes and {(left, right): [organ ids]} for split groups."""
    by_class = {}
    for oid in sorted(organs):
        target = icrp110_label_for_organ_name(organs[oid][0])
        if target is not None:
            by_class.setdefault(target, []).append(oid)
    return by_class
