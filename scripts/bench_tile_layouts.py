#!/usr/bin/python3
"""Tile layouts vs the reference sliding window (64^3, overlap 0.5), with the PyTorch reference network
(scripts/ctarr_unet.py) and the shipped weights: time and per-class Dice of the hard labels. A benchmark, not a test.

Usage (repo root): /usr/bin/python3 scripts/bench_tile_layouts.py CT.nii.gz [LAYOUT ...]
  LAYOUT: PATCH/OVERLAP (e.g. 64/0.25, 96/0.25) or whole; append :bf for bfloat16 autocast.
The results in docs/PERFORMANCE.md came from: example_ct.nii.gz 64/0.25 64/0 whole whole:bf 64/0.5:bf
"""
import sys, time, torch, numpy as np, nibabel as nib
sys.path.insert(0, 'scripts')
from ctarr_unet import CtarrUNet, load_safetensors, sliding_window_predict, WINDOWS_HU
torch.set_num_threads(2)
m = CtarrUNet(); m.load_state_dict(load_safetensors('models/ctarr-unet.safetensors')); m.eval()
img = nib.load(sys.argv[1]); a = np.asarray(img.dataobj, dtype=np.float32)
print(img.shape, np.diag(img.affine))
if img.affine[0,0] > 0: a = a[::-1]
if img.affine[1,1] > 0: a = a[:, ::-1]
a = np.ascontiguousarray(a.transpose(2,1,0))  # k j i
vol = torch.stack([((torch.from_numpy(a)-lo)/(hi-lo)).clamp(0,1) for lo,hi in WINDOWS_HU])
def whole(model, v, bf=False):
    c,d,h,w = v.shape
    P = lambda n: (n+7)//8*8
    x = torch.zeros(1,c,P(d),P(h),P(w)); x[0,:,:d,:h,:w] = v
    return torch.softmax(model(x),1)[0,:,:d,:h,:w]
def run(name, fn, bf=False):
    t0=time.time()
    with torch.inference_mode():
        if bf:
            with torch.autocast('cpu', dtype=torch.bfloat16): p = fn()
        else: p = fn()
    return name, time.time()-t0, p.float().argmax(0)
res = []
res.append(run('ref64/0.5', lambda: sliding_window_predict(m, vol, 64, 0.5)))
ref = res[0][2]
for args in sys.argv[2:]:
    name, bf = args.split(':')[0], args.endswith(':bf')
    if name.startswith('whole'): res.append(run(args, lambda: whole(m, vol), bf))
    else:
        p, ov = name.split('/'); res.append(run(args, lambda: sliding_window_predict(m, vol, int(p), float(ov)), bf))
for name, t, lab in res:
    ds = []
    for c in range(1, 20):
        r = (ref==c); f = (lab==c); n = int(r.sum())
        if n < 200: continue
        ds.append(f"{c}:{2*float((r&f).sum())/(n+float(f.sum())):.3f}({n})")
    print(f"{name:16s} {t:6.1f}s ", ' '.join(ds), flush=True)
