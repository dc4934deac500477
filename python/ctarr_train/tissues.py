"""Tissue groups and their HU per contrast phase, for rendering label maps as CT.

Each labelled voxel of a phantom or label map belongs to one group; a rendered scan draws one HU per group (and
contrast phase) from wide literature ranges for 120 kVp CT: domain randomisation, not a physical model.
"""

import numpy as np

PHASES = ("native", "arterial", "portal", "delayed")
PHASE_P = (0.3, 0.2, 0.35, 0.15)
TISSUE_GROUPS = [
    ("air_inside", (-1000, -900)),
    ("lung", (-950, -600)),
    ("fat", (-130, -60)),
    ("muscle", (30, 65)),
    ("blood", {"native": (30, 55), "arterial": (180, 450), "portal": (120, 220), "delayed": (70, 130)}),
    ("heart_wall", {"native": (30, 55), "arterial": (80, 160), "portal": (80, 140), "delayed": (60, 110)}),
    ("liver", {"native": (40, 70), "arterial": (55, 95), "portal": (85, 150), "delayed": (70, 110)}),
    ("spleen", {"native": (35, 55), "arterial": (90, 170), "portal": (95, 150), "delayed": (70, 110)}),
    ("kidney_cortex", {"native": (25, 45), "arterial": (140, 300), "portal": (130, 230), "delayed": (100, 180)}),
    ("kidney_medulla", {"native": (25, 45), "arterial": (50, 110), "portal": (120, 220), "delayed": (110, 200)}),
    ("kidney_pelvis", {"native": (0, 25), "arterial": (0, 30), "portal": (10, 60), "delayed": (150, 900)}),
    ("urine", {"native": (-5, 25), "arterial": (-5, 25), "portal": (-5, 30), "delayed": (0, 600)}),
    ("bladder_wall", (25, 55)),
    ("cortical_bone", (700, 1600)),
    ("spongiosa_axial", (120, 300)),   # spine, sacrum, sternum
    ("spongiosa_other", (150, 400)),
    ("marrow", (-100, 60)),
    ("teeth", (1500, 2500)),
    ("brain", (20, 45)),
    ("gi_contents", (-20, 50)),        # + oral contrast / gas, see sample_group_hu
    ("gi_wall", {"native": (25, 50), "arterial": (50, 100), "portal": (60, 120), "delayed": (50, 90)}),
    ("pancreas", {"native": (30, 50), "arterial": (90, 150), "portal": (80, 130), "delayed": (60, 100)}),
    ("cartilage", (60, 180)),
    ("skin", (20, 100)),
    ("soft_other", {"native": (20, 45), "arterial": (30, 80), "portal": (40, 90), "delayed": (30, 70)}),
    ("bile", (-5, 30)),
    ("thyroid", {"native": (70, 130), "arterial": (120, 250), "portal": (110, 200), "delayed": (90, 160)}),
    ("csf", (0, 15)),
]
GROUP = {name: g for g, (name, _) in enumerate(TISSUE_GROUPS)}
NO_GROUP = 255


def sample_group_hu(rng, phase):
    """HU per tissue group for one rendered scan (float32 [len(TISSUE_GROUPS)])."""
    hu = np.zeros(len(TISSUE_GROUPS), np.float32)
    for g, (name, spec) in enumerate(TISSUE_GROUPS):
        lo, hi = spec[phase] if isinstance(spec, dict) else spec
        hu[g] = rng.uniform(lo, hi)
    if phase == "delayed" and rng.random() < 0.5:  # urine without excreted contrast yet
        hu[GROUP["urine"]] = rng.uniform(-5, 25)
    r = rng.random()
    if r < 0.2:
        hu[GROUP["gi_contents"]] = rng.uniform(150, 500)   # positive oral contrast
    elif r < 0.35:
        hu[GROUP["gi_contents"]] = rng.uniform(-950, -400)  # gas
    hu += rng.normal(0.0, 10.0)  # calibration offset of the whole scan
    hu[GROUP["air_inside"]] = min(hu[GROUP["air_inside"]], -880.0)
    return hu


def phase_delta_hu(rng, phase):
    """A native real CT shown in another contrast phase: per tissue group the HU to add (float32 [256], indexed by
    group; 0 for groups whose HU does not depend on the phase and for NO_GROUP): a draw from the phase's range minus
    the middle of the native range, so that a native organ lands inside the phase's range give or take its own
    spread."""
    d = np.zeros(256, np.float32)
    for g, (name, spec) in enumerate(TISSUE_GROUPS):
        if isinstance(spec, dict):
            lo, hi = spec[phase]
            nlo, nhi = spec["native"]
            d[g] = rng.uniform(lo, hi) - 0.5 * (nlo + nhi)
    if phase == "delayed" and rng.random() < 0.5:  # urine without excreted contrast yet
        d[GROUP["urine"]] = 0.0
    return d


def phase_dependent(group):
    """Whether a tissue group's HU depends on the contrast phase."""
    return group != NO_GROUP and isinstance(TISSUE_GROUPS[group][1], dict)


def icrp_tissue_group(organ_name, tissue_name):
    """Tissue group of an ICRP 110 organ (name from *_organs.dat, tissue name from *_media.dat)."""
    n, t = organ_name.lower(), tissue_name.lower()
    if t == "air":
        return GROUP["air_inside"]
    if t.startswith("lung tissue"):
        return GROUP["lung"]
    if t.startswith("adipose"):
        return GROUP["fat"]
    if t == "muscle tissue":
        return GROUP["muscle"]
    if t == "blood":
        return GROUP["blood"]
    if n == "heart wall":
        return GROUP["heart_wall"]
    if n in ("liver", "spleen"):
        return GROUP[n]
    if n.startswith("kidney"):
        return GROUP["kidney_" + n.split(",")[-1].strip()]
    if n == "urinary bladder contents":
        return GROUP["urine"]
    if n == "urinary bladder wall":
        return GROUP["bladder_wall"]
    if n.startswith("gall bladder contents"):
        return GROUP["bile"]
    if n.startswith("thyroid"):
        return GROUP["thyroid"]
    if t == "mineral bone":
        return GROUP["cortical_bone"]
    if "spongiosa" in t:
        axial = any(n.startswith(b) for b in ("cervical spine", "thoracic spine", "lumbar spine", "sacrum", "sternum"))
        return GROUP["spongiosa_axial" if axial else "spongiosa_other"]
    if "medullary cavity" in t:
        return GROUP["marrow"]
    if t == "teeth":
        return GROUP["teeth"]
    if t == "brain":
        return GROUP["brain"]
    if "contents" in t:
        return GROUP["gi_contents"]
    if t in ("stomach", "small intestine", "large intestine", "oesophagus"):
        return GROUP["gi_wall"]
    if t == "pancreas":
        return GROUP["pancreas"]
    if t == "cartilage":
        return GROUP["cartilage"]
    if t == "skin":
        return GROUP["skin"]
    return GROUP["soft_other"]


# TotalSegmentator structures: (group of the shell, group of the interior, shell thickness in mm). A shell of 0
# means one group throughout. Bones get a cortex and spongiosa; hollow organs a wall and contents.
_BONE_AXIAL = ("cortical_bone", "spongiosa_axial", 1.5)
_BONE_OTHER = ("cortical_bone", "spongiosa_other", 1.5)


def totalseg_structure_groups(name):
    """(shell group, interior group, shell mm) for a TotalSegmentator v2 structure name."""
    if name.startswith("vertebrae_") or name in ("sacrum", "sternum"):
        return _BONE_AXIAL
    if name.startswith("rib_") or name.startswith(("hip_", "scapula_", "clavicula_", "femur_", "humerus_")):
        return _BONE_OTHER
    if name == "skull":
        return ("cortical_bone", "spongiosa_other", 2.0)
    if name == "costal_cartilages":
        return ("cartilage", "cartilage", 0)
    if name.startswith("lung_"):
        return ("lung", "lung", 0)
    if name == "trachea":
        return ("soft_other", "air_inside", 1.5)
    if name == "esophagus":
        return ("gi_wall", "gi_wall", 0)
    if name in ("stomach", "small_bowel", "duodenum", "colon"):
        return ("gi_wall", "gi_contents", 3.0)
    if name == "urinary_bladder":
        return ("bladder_wall", "urine", 3.0)
    if name == "gallbladder":
        return ("bile", "bile", 0)
    if name in ("liver", "spleen", "pancreas", "brain", "thyroid"):
        return (name, name, 0)
    if name == "thyroid_gland":
        return ("thyroid", "thyroid", 0)
    if name in ("kidney_left", "kidney_right"):
        return ("kidney_cortex", "kidney_medulla", 6.0)
    if name.startswith("kidney_cyst"):
        return ("urine", "urine", 0)
    if name == "heart":
        return ("heart_wall", "blood", 6.0)
    if name in ("aorta", "pulmonary_vein", "brachiocephalic_trunk", "superior_vena_cava", "inferior_vena_cava",
                "portal_vein_and_splenic_vein", "atrial_appendage_left") or name.startswith(
            ("subclavian_", "common_carotid_", "brachiocephalic_vein", "iliac_")):
        return ("blood", "blood", 0)
    if name.startswith(("gluteus_", "autochthon_", "iliopsoas_")):
        return ("muscle", "muscle", 0)
    if name == "spinal_cord":
        return ("csf", "soft_other", 1.5)
    return ("soft_other", "soft_other", 0)
