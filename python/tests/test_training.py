"""Tests of the training package: loss, sampler, BatchNorm folding and export, resumable state."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctarr_train import (checkpoint, classes, confusion, evaluate, export, pass_replay, segment_eval, sources, tissues,
                         unet)
from ctarr_train.augment import AugmentConfig, PAD_HU
from ctarr_train.loss import partial_label_loss
from ctarr_train.sampler import PatchSampler, window

torch.set_num_threads(2)


# ---- loss -----------------------------------------------------------------------------------------------------------

def _onehot_logits(target, c, scale=20.0):
    return torch.nn.functional.one_hot(target, c).movedim(-1, 1).float() * scale


def test_loss_of_a_perfect_prediction_is_near_zero():
    target = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5, 2:5] = 3
    labelled = torch.ones(2, classes.NUM_OUT, dtype=torch.bool)
    loss, ce, dl = partial_label_loss(_onehot_logits(target, classes.NUM_OUT), target, labelled)
    assert ce < 1e-6 and dl < 1e-4


def test_unlabelled_class_predicted_on_background_costs_nothing_but_labelled_does():
    target = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    target[:, :4] = 5                       # class 5 labelled and present
    pred = target.clone()
    pred[:, 4:] = 7                         # the network says class 7 where the label says background
    logits = _onehot_logits(pred, classes.NUM_OUT)
    labelled = torch.ones(1, classes.NUM_OUT, dtype=torch.bool)
    _, ce_all, _ = partial_label_loss(logits, target, labelled)
    labelled[0, 7] = False                  # class 7 is not labelled in this sample: background may be class 7
    _, ce_partial, dl_partial = partial_label_loss(logits, target, labelled)
    assert ce_all > 5.0
    assert ce_partial < 1e-6 and dl_partial < 1e-4


def test_loss_gradient_matches_finite_differences():
    torch.manual_seed(0)
    logits = torch.randn(1, classes.NUM_OUT, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (1, 4, 4, 4))
    labelled = torch.zeros(1, classes.NUM_OUT, dtype=torch.bool)
    labelled[0, :4] = True
    f = lambda z: partial_label_loss(z, target, labelled)[0].double()  # noqa: E731
    loss = f(logits)
    loss.backward()
    g = logits.grad[0, 2, 1, 1, 1].item()
    h = 1e-4
    zp, zm = logits.detach().clone(), logits.detach().clone()
    zp[0, 2, 1, 1, 1] += h
    zm[0, 2, 1, 1, 1] -= h
    fd = (f(zp) - f(zm)).item() / (2 * h)
    assert g == pytest.approx(fd, rel=1e-3, abs=1e-6)


def test_loss_equals_the_one_hot_formulation_with_its_gradient():
    from ctarr_train.loss import partial_label_loss_reference
    torch.manual_seed(1)
    logits = torch.randn(2, classes.NUM_OUT, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 6, (2, 6, 5, 4))
    labelled = torch.zeros(2, classes.NUM_OUT, dtype=torch.bool)
    labelled[:, :6] = True
    labelled[1, 3] = False
    target[1][target[1] == 3] = 0
    a = partial_label_loss(logits, target, labelled)
    ga, = torch.autograd.grad(a[0], logits)
    b = partial_label_loss_reference(logits, target, labelled)
    gb, = torch.autograd.grad(b[0], logits)
    for x, y in zip(a, b):
        assert float(x) == pytest.approx(float(y), rel=1e-10)
    assert torch.allclose(ga, gb, atol=1e-12)
    # every class labelled: the shortcut path
    full = torch.ones_like(labelled)
    a = partial_label_loss(logits, target, full)
    ga, = torch.autograd.grad(a[0], logits)
    b = partial_label_loss_reference(logits, target, full)
    gb, = torch.autograd.grad(b[0], logits)
    assert float(a[0]) == pytest.approx(float(b[0]), rel=1e-10) and torch.allclose(ga, gb, atol=1e-12)


# ---- sampler --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_sources():
    s = sources.synthetic_source()
    ct = sources.Source("synthetic_ct", "ct", {"hu": sources.render_full(s, np.random.default_rng(1))}, s.labels,
                        s.labelled, s.provenance, group="real")
    return s, ct


def test_sampler_patches_have_the_contract_shapes_and_ranges(phantom_sources):
    sampler = PatchSampler(list(phantom_sources), patch=32)
    rng = np.random.default_rng(3)
    for _ in range(6):
        x, y, lab, name, info = sampler.sample(rng)
        assert x.shape == (classes.IN_CHANNELS, 32, 32, 32) and y.shape == (32, 32, 32)
        assert x.min() >= 0 and x.max() <= 1
        assert lab.dtype == torch.bool and lab[0]
        assert y.max() < classes.NUM_OUT and bool(lab[y.unique()].all())


def test_sampler_without_augmentation_reproduces_the_source_voxels(phantom_sources):
    """Identity geometry, no intensity augmentation: the patch is the source crop around the centre."""
    _, ct = phantom_sources
    aug = AugmentConfig(zoom=(1.0, 1.0), rot_max_deg=0.0, small_rot_deg=0.0, p_rot90=0.0, p_zflip=0.0, tilt_deg=0.0,
                        p_fov_circle=0.0, p_fov_z=0.0, real_intensity_p=0.0)
    sampler = PatchSampler([ct], patch=16, aug=aug)
    centre = np.array([40.0, 30.0, 60.0])  # (i, j, k), integer: patch voxel offsets are +-0.5 .. +-7.5
    sampler.centre = lambda src, rng: centre + 0.5
    x, y, _, _, _ = sampler.sample(np.random.default_rng(0))
    k0, j0, i0 = int(centre[2]) - 7, int(centre[1]) - 7, int(centre[0]) - 7
    ref_hu = torch.from_numpy(np.asarray(ct.arrays["hu"][k0:k0 + 16, j0:j0 + 16, i0:i0 + 16], np.float32))
    assert torch.allclose(x, window(ref_hu), atol=1e-4)
    assert torch.equal(y, torch.from_numpy(np.asarray(ct.labels[k0:k0 + 16, j0:j0 + 16, i0:i0 + 16]).astype(np.int64)))


def test_sampler_z_flip_flips_image_and_labels_together(phantom_sources):
    _, ct = phantom_sources
    base = dict(zoom=(1.0, 1.0), rot_max_deg=0.0, small_rot_deg=0.0, p_rot90=0.0, tilt_deg=0.0, p_fov_circle=0.0,
                p_fov_z=0.0, real_intensity_p=0.0)
    centre = np.array([48.5, 32.5, 60.5])
    out = []
    for p in (0.0, 1.0):
        s = PatchSampler([ct], patch=16, aug=AugmentConfig(p_zflip=p, **base))
        s.centre = lambda src, rng: centre
        out.append(s.sample(np.random.default_rng(0))[:2])
    assert torch.allclose(out[1][0], torch.flip(out[0][0], dims=[1]), atol=1e-4)
    assert torch.equal(out[1][1], torch.flip(out[0][1], dims=[0]))


def test_contrast_phase_of_a_native_real_ct_adds_the_phase_hu_only_over_its_enhancing_structures(phantom_sources,
                                                                                                 monkeypatch):
    """--real-phase-p: the patch is the source crop plus the phase's HU over the structures the source marks as
    phase-dependent, weighted by the fraction of each voxel they cover; nothing changes elsewhere, nor the labels."""
    _, ct = phantom_sources
    shape = ct.shape
    g1 = np.full(shape, tissues.NO_GROUP, np.uint8)
    f1 = np.zeros(shape, np.uint8)
    g1[55:62, 28:34, 40:46] = tissues.GROUP["blood"]
    f1[55:62, 28:34, 40:46] = 255
    f1[55:62, 28:34, 45] = 102  # a voxel the vessel covers 40 %
    zeros = np.zeros(shape, np.uint8)
    src = sources.Source("native_ct", "ct", {"hu": ct.arrays["hu"], "phase_g1": g1, "phase_f1": f1,
                                             "phase_g2": np.full(shape, tissues.NO_GROUP, np.uint8),
                                             "phase_f2": zeros}, ct.labels, ct.labelled, ct.provenance)
    table = np.zeros(256, np.float32)
    table[tissues.GROUP["blood"]] = 300.0
    monkeypatch.setattr(tissues, "phase_delta_hu", lambda rng, phase: table)
    aug = AugmentConfig(zoom=(1.0, 1.0), rot_max_deg=0.0, small_rot_deg=0.0, p_rot90=0.0, p_zflip=0.0, tilt_deg=0.0,
                        p_fov_circle=0.0, p_fov_z=0.0, real_intensity_p=0.0, real_phase_p=1.0)
    sampler = PatchSampler([src], patch=16, aug=aug)
    centre = np.array([40.0, 30.0, 60.0])
    sampler.centre = lambda s, rng: centre + 0.5
    x, y, _, _, info = sampler.sample(np.random.default_rng(0))
    assert info["real_phase"] in ("arterial", "portal", "delayed")
    k0, j0, i0 = int(centre[2]) - 7, int(centre[1]) - 7, int(centre[0]) - 7
    box = (slice(k0, k0 + 16), slice(j0, j0 + 16), slice(i0, i0 + 16))
    ref_hu = torch.from_numpy(np.asarray(ct.arrays["hu"][box], np.float32))
    shift = torch.from_numpy((300.0 * (g1[box] != tissues.NO_GROUP) * f1[box] / 255.0).astype(np.float32))
    assert float(shift.max()) == 300.0 and 0 < float(shift[shift > 0].min()) < 300.0
    assert torch.allclose(x, window(ref_hu + shift), atol=1e-4)
    assert not torch.allclose(x, window(ref_hu), atol=1e-3)
    assert torch.equal(y, torch.from_numpy(np.asarray(ct.labels[box]).astype(np.int64)))


def test_phase_hu_moves_native_tissue_into_the_phase_range_and_leaves_the_rest(tmp_path):
    rng = np.random.default_rng(5)
    for phase in tissues.PHASES[1:]:
        for _ in range(50):
            d = tissues.phase_delta_hu(rng, phase)
            assert d[tissues.NO_GROUP] == 0.0
            for g, (name, spec) in enumerate(tissues.TISSUE_GROUPS):
                if not isinstance(spec, dict):
                    assert d[g] == 0.0 and not tissues.phase_dependent(g)
                    continue
                lo, hi = spec[phase]
                mid = 0.5 * sum(spec["native"])
                assert lo - 1e-3 <= mid + d[g] <= hi + 1e-3 or (name == "urine" and d[g] == 0.0)
    # the source side: only the structures whose tissue depends on the phase are kept
    aorta = np.zeros((8, 8, 8), bool)
    aorta[2:6, 3:5, 3:5] = True
    femur = np.zeros((8, 8, 8), bool)
    femur[0:2] = True
    arrays = sources.phase_groups([("aorta", aorta), ("femur_left", femur)], (3.0, 3.0, 3.0), tmp_path / "c", "k")
    g1, f1 = np.asarray(arrays["g1"]), np.asarray(arrays["f1"])
    assert set(np.unique(g1[f1 > 0]).tolist()) == {tissues.GROUP["blood"]}
    assert np.array_equal(f1 > 0, aorta)
    again = sources.phase_groups(iter(()), (3.0, 3.0, 3.0), tmp_path / "c", "k")  # cached: the masks are not read
    assert np.array_equal(np.asarray(again["g1"]), g1)


def test_curriculum_keeps_patches_upright_until_its_step(phantom_sources):
    """--turns-from-step: before it no patch is turned by 90 degrees or flipped in z, from it on they are."""
    _, ct = phantom_sources
    s = PatchSampler([ct], patch=16, aug=AugmentConfig(p_rot90=1.0, p_zflip=1.0, p_rot=0.0, small_rot_deg=0.0),
                     turns_from_step=100)
    rng = np.random.default_rng(0)
    before = [s.sample(rng, step=n)[4] for n in (0, 99)]
    after = [s.sample(rng, step=n)[4] for n in (100, 5000)]
    assert all(not i["zflip"] and i["rot_deg"] == 0.0 for i in before)
    assert all(i["zflip"] and i["rot_deg"] in (90.0, 180.0, 270.0) for i in after)
    assert s.aug.p_rot90 == 1.0 and s.describe()["turns_and_z_flips_from_step"] == 100
    plain = PatchSampler([ct], patch=16)
    assert plain.geometry_at(0) is plain.aug  # no curriculum: the full set from step 0


def test_outside_the_scan_is_padding_and_background(phantom_sources):
    _, ct = phantom_sources
    aug = AugmentConfig(zoom=(1.0, 1.0), rot_max_deg=0.0, small_rot_deg=0.0, p_rot90=0.0, p_zflip=0.0, tilt_deg=0.0,
                        p_fov_circle=0.0, p_fov_z=0.0, real_intensity_p=0.0)
    s = PatchSampler([ct], patch=16, aug=aug)
    s.centre = lambda src, rng: np.array([-100.0, -100.0, -100.0])
    x, y, _, _, _ = s.sample(np.random.default_rng(0))
    assert float(x.abs().max()) == 0.0 and int(y.max()) == 0
    assert float(window(torch.tensor([PAD_HU])).abs().max()) == 0.0


def test_outside_objects_fill_only_the_air_around_a_rendered_body_and_keep_its_labels(phantom_sources):
    """Foam and table slabs go where the renderer left -1000 HU outside the body, never into the body, never
    outside the scan, and never change a label."""
    rendered, _ = phantom_sources
    still = dict(zoom=(1.0, 1.0), rot_max_deg=0.0, small_rot_deg=0.0, p_rot90=0.0, p_zflip=0.0, tilt_deg=0.0,
                 p_fov_circle=0.0, p_fov_z=0.0, noise_sd=(0.0, 0.0), corr_noise_sd=(0.0, 0.0), blur_sigma=(0.0, 0.0),
                 bias_sd=(0.0, 0.0))
    centre = np.array([8.5, 32.5, 60.5])  # (i, j, k): the patch straddles the phantom's edge and the scan's edge
    out = []
    for p in (0.0, 1.0):
        s = PatchSampler([rendered], patch=32, aug=AugmentConfig(p_outside_objects=p, **still))
        s.centre = lambda src, rng: centre
        out.append(s.sample(np.random.default_rng(5)))
    (x0, y0, _, _, _), (x1, y1, _, _, info) = out
    assert torch.equal(y0, y1)
    assert info["outside_objects"]
    air = (x0[1] - window(torch.tensor([-1000.0]))[1]).abs() < 1e-5  # channel 2 tells -1000 from -1024 apart
    changed = (x0 - x1).abs().amax(0) > 1e-6
    assert bool(changed.any()) and bool((changed & ~air).sum() == 0)
    assert float(x1[:, x0.abs().amax(0) == 0].abs().max()) == 0.0  # outside the scan stays padding


# ---- network, folding, export ---------------------------------------------------------------------------------------

def _trained_like_bn_model(filters=(4, 8, 16)):
    torch.manual_seed(0)
    m = unet.CtarrUNet(filters, "batch")
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


def test_folded_network_equals_batchnorm_in_eval_mode():
    m = _trained_like_bn_model()
    x = torch.rand(1, classes.IN_CHANNELS, 16, 24, 16)
    folded = unet.fold_batchnorm(m)
    assert folded.norm == "none"
    assert torch.allclose(folded(x), m(x), atol=1e-5)
    assert not any(isinstance(mod, torch.nn.BatchNorm3d) for mod in folded.modules())


def test_whole_volume_equals_tiles_in_the_interior():
    """With norm 'none' (folded) the output does not depend on the tile, away from the tile border."""
    m = unet.fold_batchnorm(_trained_like_bn_model())
    x = torch.rand(1, classes.IN_CHANNELS, 32, 32, 32)
    whole = m(x)
    tile = m(x[:, :, 8:24, 8:24, 8:24])
    # receptive-field effects reach the tile border; the centre voxels see the same input
    assert torch.allclose(whole[:, :, 15:17, 15:17, 15:17], tile[:, :, 7:9, 7:9, 7:9], atol=1e-4)


def test_export_writes_a_card_with_the_contract_and_loadable_weights(tmp_path):
    m = _trained_like_bn_model()
    card = export.export_model(m, tmp_path, "test-model", 32, training={"steps": 1})
    assert card["classes"] == classes.CLASSES and card["windows_hu"] == classes.WINDOWS_HU
    assert card["architecture"]["normalisation"] == "none" and card["architecture"]["stages"] == 3
    assert card["weights"]["sha256"] == unet.sha256_file(tmp_path / "ctarr-unet.safetensors")
    with open(tmp_path / "ctarr-unet.json") as f:
        assert json.load(f) == card
    loaded, _ = export.load_exported(tmp_path / "ctarr-unet.safetensors")
    x = torch.rand(1, classes.IN_CHANNELS, 16, 16, 16)
    assert torch.allclose(loaded(x), m(x), atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))


def test_safetensors_round_trip_keeps_dtypes_and_scalars(tmp_path):
    t = {"a": torch.randn(3, 2), "b": torch.randn(4).to(torch.bfloat16), "n": torch.tensor(7), "u": torch.arange(5,
                                                                                                             dtype=torch.uint8)}
    unet.save_safetensors(t, tmp_path / "x.safetensors", metadata={"k": "v"})
    back, meta = unet.load_safetensors(tmp_path / "x.safetensors", keep_dtype=True)
    assert meta == {"k": "v"}
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k], t[k])


# ---- resumable state ------------------------------------------------------------------------------------------------

def test_committed_state_resumes_the_same_training(tmp_path):
    """Train 3 steps, commit, restore into a fresh model + optimiser: one more step gives (to bf16 precision) the
    same weights as continuing the original."""
    torch.manual_seed(0)
    x = torch.rand(2, classes.IN_CHANNELS, 16, 16, 16)
    y = torch.randint(0, 3, (2, 16, 16, 16))
    lab = torch.ones(2, classes.NUM_OUT, dtype=torch.bool)

    def step(model, opt):
        loss = partial_label_loss(model(x), y, lab)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    m = unet.CtarrUNet((4, 8), "batch")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for _ in range(3):
        step(m, opt)
    state = {"step": 3, "elapsed": 1.0, "curve": [], "evals": []}
    checkpoint.save_committed(tmp_path, m, opt, state)
    assert checkpoint.committed_step(tmp_path) == 3
    m2 = unet.CtarrUNet((4, 8), "batch")
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-3)
    back = checkpoint.load_committed(tmp_path, m2, opt2)
    assert back["step"] == 3
    # bf16 round-trip of the weights, then the same update
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    step(m, opt)
    step(m2, opt2)
    for (n, a), (_, b) in zip(m.named_parameters(), m2.named_parameters()):
        assert torch.allclose(a, b, atol=2e-3), n


def test_weight_averaging_is_the_plain_mean_of_the_learnt_weights_and_refuses_another_network(tmp_path):
    """Two committed states and the model itself: every learnt weight becomes the mean of the three (to bf16
    precision, the committed weights' dtype); BatchNorm's running statistics are the model's own; a state of another
    network is refused, naming its file."""
    torch.manual_seed(1)
    nets = [unet.CtarrUNet((4, 8), "batch") for _ in range(3)]
    for i, m in enumerate(nets):
        for name, buf in m.named_buffers():
            if name.endswith("running_mean"):
                buf.fill_(float(i))
        with torch.no_grad():  # bf16-exact weights, so that the mean is exact up to float32 rounding
            for p in m.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    for i, m in enumerate(nets[1:], start=1):
        checkpoint.save_committed(tmp_path / f"s{i}", m, torch.optim.AdamW(m.parameters()),
                                  {"step": 100 * i, "elapsed": 0.0, "curve": [], "evals": []})
    target = nets[0]
    expect = {n: (p.detach().clone() + dict(nets[1].named_parameters())[n] + dict(nets[2].named_parameters())[n]) / 3
              for n, p in target.named_parameters()}
    steps = checkpoint.average_model_weights(target, [tmp_path / "s1", tmp_path / "s2" / f"{checkpoint.STEM}.safetensors"])
    assert steps == [100, 200]
    for n, p in target.named_parameters():
        assert torch.allclose(p, expect[n], atol=1e-6), n
    for name, buf in target.named_buffers():
        if name.endswith("running_mean"):
            assert torch.all(buf == 0.0), name
    other = unet.CtarrUNet((4, 16), "batch")
    checkpoint.save_committed(tmp_path / "other", other, torch.optim.AdamW(other.parameters()),
                              {"step": 5, "elapsed": 0.0, "curve": [], "evals": []})
    with pytest.raises(ValueError, match="other.*not a state of this network"):
        checkpoint.average_model_weights(unet.CtarrUNet((4, 8), "batch"), [tmp_path / "other"])


def test_learning_rate_schedule_warms_up_and_ends_at_the_floor():
    from ctarr_train.train import learning_rate
    assert learning_rate(0, 1000, 1e-3, 100) == pytest.approx(1e-5)
    assert learning_rate(99, 1000, 1e-3, 100) == pytest.approx(1e-3)
    assert learning_rate(1000, 1000, 1e-3, 100) == pytest.approx(1e-5)
    assert all(learning_rate(s, 1000, 1e-3, 100) >= learning_rate(s + 1, 1000, 1e-3, 100) for s in range(100, 999))


def test_a_warm_restart_outside_the_run_is_refused_with_its_reason():
    from ctarr_train.train import main
    with pytest.raises(SystemExit, match="--schedule-from 5: expected 0 <= it <= the resumed step 0"):
        main(["--smoke", "--schedule-from", "5"])


def test_dice_per_class_scores_only_labelled_classes_in_view():
    ref = np.zeros((4, 4, 4), np.uint8)
    ref[:2] = 1
    pred = ref.copy()
    pred[0] = 0
    labelled = np.zeros(classes.NUM_OUT, bool)
    labelled[[0, 1, 2]] = True
    d = evaluate.dice_per_class(pred, ref, labelled)
    assert d == {classes.CLASSES[0]: pytest.approx(2 * 16 / (16 + 32), abs=1e-4)}


def test_3mm_ceiling_is_exact_for_blocks_and_misses_what_a_coarse_voxel_cannot_hold():
    import nibabel as nib
    # reference: 8^3 voxels of 1.5 mm; the coarse grid: 4^3 voxels of 3 mm, each covering 2x2x2 reference voxels
    # (its first centre half a reference voxel further: the centres of voxels 0 and 1 average to 0.75 mm)
    fine = np.diag([1.5, 1.5, 1.5, 1.0])
    coarse = np.diag([3.0, 3.0, 3.0, 1.0])
    coarse[:3, 3] = 0.75
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[:4] = 1                 # two coarse voxels thick: representable
    ref[6, 6, 6] = 2            # one reference voxel in a coarse voxel of background: not
    labelled = np.zeros(classes.NUM_OUT, bool)
    labelled[[0, 1, 2]] = True
    best = segment_eval.best_on_grid(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), coarse), ref, fine)
    pred, inside = segment_eval.lookup(best, ref.shape, fine)
    assert inside.all()
    d = segment_eval.dice(pred, ref, labelled)
    assert d[classes.CLASSES[0]] == 1.0 and d[classes.CLASSES[1]] == 0.0


def test_batchnorm_recalibration_gives_the_plain_average_of_batch_statistics(phantom_sources):
    from ctarr_train.evaluate import recalibrate_batchnorm
    sampler = PatchSampler(list(phantom_sources), patch=16)
    m = unet.CtarrUNet((4, 8), "batch")
    first = m.encoder[0][0]
    recalibrate_batchnorm(m, sampler, batches=3, batch=2, seed=5)
    # the first BatchNorm sees the first convolution's output: its mean over the three batches is known
    means = []
    with torch.no_grad():
        for n in range(3):
            rng = np.random.default_rng([5, n])
            torch.manual_seed(int(rng.integers(2 ** 31)))
            x = torch.stack([sampler.sample(rng)[0] for _ in range(2)])
            means.append(first.conv(x).mean(dim=(0, 2, 3, 4)))
    assert torch.allclose(first.norm.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert first.norm.momentum == 0.05 and m.training


def test_ship_copies_weights_and_card_with_the_evaluation_and_refuses_a_mismatch(tmp_path):
    from ctarr_train import ship
    from ctarr_train.unet import sha256_file
    src = tmp_path / "model"
    src.mkdir()
    (src / "ctarr-unet.safetensors").write_bytes(b"weights")
    card = {"id": "m", "weights": {"file": "ctarr-unet.safetensors",
                                   "sha256": sha256_file(src / "ctarr-unet.safetensors")}, "training": {"steps": 3}}
    (src / "ctarr-unet.json").write_text(json.dumps(card))
    seg, crop = tmp_path / "seg.json", tmp_path / "crop.json"
    seg.write_text(json.dumps({"command": "segment_eval", "cases": {"s0009": {"dice": {"liver": 0.9}}}}))
    crop.write_text(json.dumps({"command": "crop_check", "rows": [{"case": "a", "exit": 0}, {"case": "b", "exit": 6}]}))
    out = tmp_path / "models"
    assert ship.main([str(src), "--segment-eval", str(seg), "--crop-check", str(crop), "--to", str(out)]) == 0
    shipped = json.loads((out / "ctarr-unet.json").read_text())
    assert (out / "ctarr-unet.safetensors").read_bytes() == b"weights"
    assert shipped["evaluation"]["segmentation"]["cases"]["s0009"]["dice"]["liver"] == 0.9
    assert shipped["evaluation"]["crop_without_seg"]["exited_0"] == "1 of 2"
    assert "s0009" in shipped["evaluation"]["validation_split"]
    assert sorted(p.name for p in out.iterdir()) == ["ctarr-unet.json", "ctarr-unet.safetensors"]  # no temp left
    (src / "ctarr-unet.safetensors").write_bytes(b"other weights")
    with pytest.raises(SystemExit, match="does not match"):
        ship.main([str(src), "--segment-eval", str(seg), "--crop-check", str(crop), "--to", str(out)])


def test_sigterm_ends_a_training_run_cleanly_with_its_state_committed():
    """A job's time limit sends SIGTERM: the run stops after the current step, commits and exports, and exits 0."""
    import signal
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.Popen([sys.executable, "-m", "ctarr_train", "--smoke"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if " step " in line and "loss" in line:  # inside the loop: the handler is installed
            p.send_signal(signal.SIGTERM)
            break
    lines += p.stdout.readlines()
    assert p.wait(timeout=120) == 0, "".join(lines)
    out = "".join(lines)
    assert "signal SIGTERM: stopping after this step" in out
    assert "committed state" in out and "done: step" in out


# ---- the choice among network passes, replayed -----------------------------------------------------------------------

def _pass(turn, dice, classes_, orientation):
    return {"turn": turn, "dice": dice, "classes": classes_, "orientation": orientation}


def test_pass_replay_follows_the_cpp_rule():
    """The upright s0002 head as the step-21837 model saw it: Dice x classes turned it, Dice x sqrt(classes) does
    not; a searched fit at or above the threshold stops after the pass over the scan as stored."""
    head = [_pass("identity", 0.42, 1, "identity"), _pass("rot90", 0.29, 1, "rot90"), _pass("rot180", 0.24, 2, "rot180")]
    assert pass_replay.choose(head, 0.5, "sqrt") == (head[0], 3)
    assert pass_replay.choose(head, 0.5, "classes")[0] is head[2]
    torso = [_pass("identity", 0.55, 6, "rot270"), _pass("rot90", 0.60, 6, "identity")]
    assert pass_replay.choose(torso, 0.5) == (torso[0], 1)       # searched and good enough: one pass
    assert pass_replay.choose(torso, 0.56) == (torso[1], 2)      # below the threshold: the turned pass wins
    failed = [{"turn": "identity", "error": "no anatomy"}, _pass("rot90", 0.3, 2, "rot90")]
    assert pass_replay.choose(failed, 0.5)[0] is failed[1]
    assert pass_replay.expected_orientation("rot90", False) == "rot270"
    assert pass_replay.expected_orientation("rot90", True) == "rot90"


def test_confusion_counts_both_directions():
    ref = np.array([0, 12, 12, 12, 0, 0])
    pred = np.array([12, 12, 0, 13, 12, 0])
    res = confusion.confusion(pred, ref, 12)
    assert res["true"] == {"background": 1, "lung_left": 1, "lung_right": 1}
    assert res["predicted"] == {"background": 2, "lung_left": 1}
