#!/usr/bin/python3
"""Writes the network golden fixture (tests/golden/data/unet_golden.*), checked by
tests/golden/network_golden_test.cpp against the C++ network (src/network.cpp).

Run with Debian's python3-torch:  /usr/bin/python3 scripts/make_network_golden.py

The fixture uses the real architecture code path at a reduced width (filters 4/8/16/32, 19 classes, 3 windows)
so that it stays small:
  unet_golden.safetensors           random weights (seeded), with small random InstanceNorm affine parameters
  unet_golden.json                  its model card
  unet_golden_expected.safetensors  cubic.input [1,3,16,16,16] / cubic.logits [1,20,16,16,16],
                                    noncubic.input [1,3,8,16,24] / noncubic.logits [1,20,8,16,24],
                                    window.input [3,24,20,12] / window.probabilities [20,24,20,12]
                                    (sliding_window_predict with the patch/overlap/sigma in __metadata__)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctarr_unet  # noqa: E402

SEED = 20240611
FILTERS = [4, 8, 16, 32]
WINDOW = {"patch_size": 16, "overlap": 0.5, "sigma_fraction": 0.125}


def main():
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "data")
    os.makedirs(out_dir, exist_ok=True)

    model = ctarr_unet.CtarrUNet(filters=FILTERS).eval()
    ctarr_unet.randomise_norms(model, generator=gen, scale=0.2)
    with torch.no_grad():  # non-zero biases everywhere, so that a dropped bias shows
        model.head.bias.copy_(0.1 * torch.randn(model.head.bias.shape, generator=gen))
        for up in model.upsample:
            up.bias.copy_(0.1 * torch.randn(up.bias.shape, generator=gen))

    weights = os.path.join(out_dir, "unet_golden.safetensors")
    ctarr_unet.save_model(model, weights, "ctarr-unet-golden", trained=False,
                                 training={"note": "random weights for the golden test, seed %d" % SEED},
                                 licence="CC0-1.0", metadata={"seed": SEED}, patch_size=WINDOW["patch_size"])

    expected = {}
    with torch.no_grad():
        for name, shape in (("cubic", (1, 3, 16, 16, 16)), ("noncubic", (1, 3, 8, 16, 24))):
            x = torch.rand(shape, generator=gen)
            expected[name + ".input"] = x
            expected[name + ".logits"] = model(x)
        vol = torch.rand((3, 24, 20, 12), generator=gen)
        expected["window.input"] = vol
        expected["window.probabilities"] = ctarr_unet.sliding_window_predict(model, vol, **WINDOW)
    ctarr_unet.save_safetensors(expected, os.path.join(out_dir, "unet_golden_expected.safetensors"),
                                metadata={k: str(v) for k, v in WINDOW.items()})
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir) if f.startswith("unet_golden"))
    print("wrote %s (%d bytes in all)" % (out_dir, total))


if __name__ == "__main__":
    main()
