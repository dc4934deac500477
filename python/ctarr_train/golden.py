"""Writes the ctarr-unet-v2 golden fixture (tests/golden/data/unet_v2_golden.*), checked by
tests/golden/network_golden_test.cpp against the C++ network:

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.golden

A BatchNorm U-Net at reduced width (filters 4/8/16/32) with random weights and random BatchNorm statistics, in
eval mode, is the reference: the fixture's weights are its folded form (normalisation "none"), so the test checks
the folding, the C++ architecture and the whole-volume path at once.
  unet_v2_golden.safetensors / .json        folded weights and card
  unet_v2_golden_expected.safetensors       cubic.input/logits [1,3,16,16,16], noncubic.input/logits [1,3,8,16,24]
                                            (of the BatchNorm model in eval mode), volume.input [3,20,28,12] and
                                            volume.probabilities [20,20,28,12]: softmax over the whole volume,
                                            zero-padded at the far end to multiples of 8, cropped back
"""

import os

import torch

from . import classes, export, unet

SEED = 20261201
FILTERS = (4, 8, 16, 32)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    out_dir = classes.REPO / "tests" / "golden" / "data"
    model = unet.CtarrUNet(FILTERS, "batch")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        model.head.bias.copy_(0.1 * torch.randn(model.head.bias.shape, generator=gen))
        for up in model.upsample:
            up.bias.copy_(0.1 * torch.randn(up.bias.shape, generator=gen))
    model.eval()
    tmp = out_dir / "v2tmp"
    export.export_model(model, tmp, "ctarr-unet-v2-golden", 16, trained=False,
                        training={"note": f"random weights and BatchNorm statistics for the golden test, seed {SEED}"})
    os.replace(tmp / "ctarr-unet.safetensors", out_dir / "unet_v2_golden.safetensors")
    card = (tmp / "ctarr-unet.json").read_text().replace('"file": "ctarr-unet.safetensors"',
                                                         '"file": "unet_v2_golden.safetensors"')
    (out_dir / "unet_v2_golden.json").write_text(card)
    (tmp / "ctarr-unet.json").unlink()
    tmp.rmdir()
    expected = {}
    with torch.no_grad():
        for name, shape in (("cubic", (1, 3, 16, 16, 16)), ("noncubic", (1, 3, 8, 16, 24))):
            x = torch.rand(shape, generator=gen)
            expected[name + ".input"] = x
            expected[name + ".logits"] = model(x)
        vol = torch.rand((3, 20, 28, 12), generator=gen)
        padded = torch.zeros((1, 3, 24, 32, 16))
        padded[0, :, :20, :28, :12] = vol
        expected["volume.input"] = vol
        expected["volume.probabilities"] = torch.softmax(model(padded), 1)[0, :, :20, :28, :12].contiguous()
    unet.save_safetensors(expected, out_dir / "unet_v2_golden_expected.safetensors", metadata={"seed": SEED})
    print(f"wrote {out_dir}/unet_v2_golden.*")


if __name__ == "__main__":
    main()
