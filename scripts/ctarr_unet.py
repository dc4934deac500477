"""ctarr-unet-v1 (InstanceNorm), the 3D U-Net of the first shipped model: the PyTorch reference implementation, plus a pure-Python safetensors reader/writer.

This file is the *independent* definition of the network that src/network.cpp re-implements with torch::nn.
Both must produce the same logits for the same weights (tests/golden/network_golden_test.cpp checks it on a
fixture written by scripts/make_network_golden.py). The C++ still loads this architecture (cards without an
"architecture" object); new models are ctarr-unet-v2, trained and exported by python/ctarr_train.

Architecture (the CTARR paper's 3D U-Net), for filters f = [f0, f1, f2, f3] (default 32/64/128/256):

    ConvBlock(cin, cout, stride) = Conv3d(cin, cout, 3, stride, padding=1, bias=False)
                                   -> InstanceNorm3d(cout, eps=1e-5, affine=True, no running stats)
                                   -> LeakyReLU(0.01)
    encoder stage s (s = 0..3):  ConvBlock(c_in, f[s], stride = 1 if s == 0 else 2) -> ConvBlock(f[s], f[s], 1)
                                 (c_in = in_channels for s = 0, f[s-1] otherwise; downsampling happens inside the
                                 first conv of stages 1..3)
    decoder, for s = 2, 1, 0:    up = ConvTranspose3d(f[s+1], f[s], kernel 2, stride 2, bias=True)(x)
                                 x  = cat([skip_s, up], dim=1)        # skip FIRST, then the upsampled tensor
                                 x  = ConvBlock(2 f[s], f[s], 1) -> ConvBlock(f[s], f[s], 1)
    head:                        Conv3d(f0, out_channels, 1, bias=True)  -> logits (softmax is applied by callers)

Input spatial sizes must be divisible by 8 (three stride-2 levels). Tensors are [N, C, D, H, W] = [N, C, k, j, i].

state_dict naming scheme (the C++ module registers exactly these names):

    encoder.{s}.{b}.conv.weight     s = 0..3 stage, b = 0..1 block       [f[s], cin, 3, 3, 3]
    encoder.{s}.{b}.norm.weight                                           [f[s]]
    encoder.{s}.{b}.norm.bias                                             [f[s]]
    upsample.{s}.weight             s = 0..2: f[s+1] -> f[s] (ConvTranspose3d layout [in, out, 2, 2, 2])
    upsample.{s}.bias                                                     [f[s]]
    decoder.{s}.{b}.conv.weight     s = 0..2 (decoder stage at encoder resolution s), b = 0..1
    decoder.{s}.{b}.norm.weight
    decoder.{s}.{b}.norm.bias
    head.weight                                                           [out, f0, 1, 1, 1]
    head.bias                                                             [out]

A model on disk is <stem>.safetensors (F32 tensors under the names above) plus <stem>.json (the model card, see
`model_card`).
"""

import hashlib
import json
import os
import struct

import torch
from torch import nn

IN_CHANNELS = 3
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "share", "classes.json")) as _f:
    _CONTRACT = json.load(_f)  # the contract shared with the C++ and python/ctarr_train
CLASSES = _CONTRACT["classes"]
OUT_CHANNELS = 1 + len(CLASSES)  # background + 19 classes
FILTERS = [32, 64, 128, 256]
WINDOWS_HU = _CONTRACT["windows_hu"]
SPACING_MM = _CONTRACT["spacing_mm"]
PATCH_SIZE = 64


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True, track_running_stats=False)

    def forward(self, x):
        return nn.functional.leaky_relu(self.norm(self.conv(x)), 0.01)


class CtarrUNet(nn.Module):
    def __init__(self, in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, filters=FILTERS):
        super().__init__()
        f = list(filters)
        assert len(f) == 4, "four stages"
        self.encoder = nn.ModuleList()
        cin = in_channels
        for s, fs in enumerate(f):
            self.encoder.append(nn.Sequential(ConvBlock(cin, fs, 1 if s == 0 else 2), ConvBlock(fs, fs, 1)))
            cin = fs
        self.upsample = nn.ModuleList([nn.ConvTranspose3d(f[s + 1], f[s], 2, stride=2, bias=True) for s in range(3)])
        self.decoder = nn.ModuleList([nn.Sequential(ConvBlock(2 * f[s], f[s], 1), ConvBlock(f[s], f[s], 1))
                                      for s in range(3)])
        self.head = nn.Conv3d(f[0], out_channels, 1, bias=True)

    def forward(self, x):
        for n in x.shape[2:]:
            if n % 8 != 0:
                raise ValueError(f"spatial sizes must be divisible by 8, got {tuple(x.shape[2:])}")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()  # deepest stage
        for s in (2, 1, 0):
            up = self.upsample[s](x)
            x = self.decoder[s](torch.cat([skips[s], up], dim=1))
        return self.head(x)


def randomise_norms(model, generator=None, scale=0.1):
    """Small random affine InstanceNorm parameters (PyTorch initialises them to 1 and 0, which would leave that
    code path untested by a golden fixture)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.InstanceNorm3d):
                m.weight.copy_(1.0 + scale * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(scale * torch.randn(m.bias.shape, generator=generator))


# ---- safetensors (https://github.com/huggingface/safetensors), pure Python ---------------------------------

_DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2)}


def save_safetensors(tensors, path, metadata=None):
    """Writes {name: tensor} as safetensors: u64 LE header length, JSON header, raw little-endian data.
    Tensors are stored in name order, contiguous, no holes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            t = t.float()
        dtype, _ = _DTYPES[t.dtype]
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""  # x86: host order is little endian
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # align the data to 8 bytes, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path):
    """Reads a safetensors file into {name: float32 tensor} (F32/F16/BF16)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    out = {}
    codes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=codes[info["dtype"]]) if e > b else \
            torch.empty(0, dtype=codes[info["dtype"]])
        out[name] = t.reshape(info["shape"]).float()
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_card(model_id, weights_file, sha256, filters=FILTERS, trained=True, training=None,
               licence="CC-BY-4.0", classes=CLASSES, patch_size=PATCH_SIZE):
    """The model card (<stem>.json), parsed by ctarr::read_model_card. `trained` False marks random weights."""
    return {
        "id": model_id,
        "trained": trained,
        "classes": list(classes),
        "spacing_mm": SPACING_MM,
        "windows_hu": WINDOWS_HU,
        "patch_size": patch_size,
        "filters": list(filters),
        "architecture": "ctarr-unet-v1 (scripts/ctarr_unet.py): 4 stages, 2x[conv3 - InstanceNorm(affine) - "
                        "LeakyReLU(0.01)] per stage, stride-2 first conv in stages 2-4, ConvTranspose3d(2,2) up, "
                        "cat([skip, up]), 1x1x1 head; softmax applied at inference",
        "weights": {"file": weights_file, "sha256": sha256},
        "training": training or {},
        "licence": licence,
    }


def save_model(model, safetensors_path, model_id, trained=True, training=None, licence="CC-BY-4.0", metadata=None,
               patch_size=PATCH_SIZE):
    """Writes <stem>.safetensors and the card <stem>.json beside it. Returns the card."""
    save_safetensors(model.state_dict(), safetensors_path, metadata=metadata)
    stem, _ = os.path.splitext(safetensors_path)
    filters = [model.encoder[s][0].conv.out_channels for s in range(4)]
    if model.head.out_channels != 1 + len(CLASSES) or model.encoder[0][0].conv.in_channels != len(WINDOWS_HU):
        raise ValueError("save_model writes the ctarr card: the model must have %d inputs and %d outputs"
                         % (len(WINDOWS_HU), 1 + len(CLASSES)))
    card = model_card(model_id, os.path.basename(safetensors_path), sha256_file(safetensors_path), filters=filters,
                      trained=trained, training=training, licence=licence, patch_size=patch_size)
    with open(stem + ".json", "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    return card


# ---- sliding-window inference (reference for src/network.cpp's sliding_window / Network::predict) ------------

def window_starts(size, patch, overlap):
    """Tile starts along one axis: every round(patch * (1 - overlap)) voxels, the last tile ending at `size`;
    a single tile at 0 when size <= patch (the volume is then zero-padded)."""
    if size <= patch:
        return [0]
    stride = max(1, int(round(patch * (1.0 - overlap))))
    starts = list(range(0, size - patch, stride))
    starts.append(size - patch)
    return starts


def gaussian_importance(patch, sigma_fraction=0.125, min_weight=1e-6):
    x = torch.arange(patch, dtype=torch.float64)
    g = torch.exp(-0.5 * ((x - 0.5 * (patch - 1)) / (patch * sigma_fraction)) ** 2)
    g = g / g.max()
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return w.clamp(min=min_weight).float()


@torch.no_grad()
def sliding_window_predict(model, volume, patch_size=64, overlap=0.5, sigma_fraction=0.125):
    """volume [C, D, H, W] -> softmax probabilities [out, D, H, W]: softmax per tile, Gaussian-weighted mean."""
    patch = patch_size
    c, d, h, w = volume.shape
    pd, ph, pw = max(d, patch), max(h, patch), max(w, patch)
    padded = torch.zeros(c, pd, ph, pw)
    padded[:, :d, :h, :w] = volume
    weight = gaussian_importance(patch, sigma_fraction)
    acc = None
    wsum = torch.zeros(pd, ph, pw)
    for z in window_starts(pd, patch, overlap):
        for y in window_starts(ph, patch, overlap):
            for x in window_starts(pw, patch, overlap):
                tile = padded[None, :, z:z + patch, y:y + patch, x:x + patch]
                prob = torch.softmax(model(tile), dim=1)[0]
                if acc is None:
                    acc = torch.zeros(prob.shape[0], pd, ph, pw)
                acc[:, z:z + patch, y:y + patch, x:x + patch] += weight * prob
                wsum[z:z + patch, y:y + patch, x:x + patch] += weight
    return (acc / wsum)[:, :d, :h, :w]
