"""The ctarr 3D U-Net, its BatchNorm folding and the safetensors format.

Architecture "ctarr-unet-v2", for filters f = [f0, ..., f{S-1}] (S stages, default 16/32/64/128):

    ConvBlock(cin, cout, stride) = Conv3d(cin, cout, 3, stride, padding=1) -> norm -> LeakyReLU(0.01)
    encoder stage s:   ConvBlock(c_in, f[s], 1 if s == 0 else 2) -> ConvBlock(f[s], f[s], 1)
    decoder, s = S-2 .. 0:  up = ConvTranspose3d(f[s+1], f[s], 2, stride 2)(x); x = cat([skip_s, up]);
                            x = ConvBlock(2 f[s], f[s], 1) -> ConvBlock(f[s], f[s], 1)
    head:              Conv3d(f0, out, 1) -> logits (callers apply softmax)

norm is one of
    "batch"      BatchNorm3d while training; in eval mode an affine per channel, so `fold_batchnorm` merges it into
                 the convolution before it: the exported network has norm "none" and convolutions with a bias.
                 Its output does not depend on the tile, so the C++ runs it over the whole volume in one pass.
    "none"       a convolution with bias (the folded form the C++ loads)
    "instance"   InstanceNorm3d(affine), as ctarr-unet-v1 (kept so that old cards still load and the C++'s golden
                 tests cover it); depends on the tile.

Spatial sizes must be divisible by 2^(S-1). Tensors are [N, C, D, H, W] = [N, C, k, j, i].

state_dict names (the C++ registers exactly these):
    encoder.{s}.{b}.conv.weight [f[s], cin, 3, 3, 3]   encoder.{s}.{b}.conv.bias (norm "none")
    encoder.{s}.{b}.norm.weight / .bias (norm "instance"; "batch" also has running_mean, running_var)
    upsample.{s}.weight [f[s+1], f[s], 2, 2, 2], upsample.{s}.bias
    decoder.{s}.{b}.conv.* / decoder.{s}.{b}.norm.*    head.weight [out, f0, 1, 1, 1], head.bias
"""

import hashlib
import json
import struct

import torch
from torch import nn

from . import classes

NORMS = ("batch", "none", "instance")
DEFAULT_FILTERS = (16, 32, 64, 128)


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, stride, norm):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=(norm == "none"))
        if norm == "batch":
            self.norm = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.05)
        elif norm == "instance":
            self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True, track_running_stats=False)
        else:
            self.norm = None

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return nn.functional.leaky_relu(x, 0.01)


class CtarrUNet(nn.Module):
    def __init__(self, filters=DEFAULT_FILTERS, norm="batch", in_channels=classes.IN_CHANNELS,
                 out_channels=classes.NUM_OUT):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        f = [int(x) for x in filters]
        if not 2 <= len(f) <= 6:
            raise ValueError("2 to 6 stages")
        self.filters, self.norm, self.in_channels, self.out_channels = f, norm, in_channels, out_channels
        self.encoder = nn.ModuleList()
        cin = in_channels
        for s, fs in enumerate(f):
            self.encoder.append(nn.Sequential(ConvBlock(cin, fs, 1 if s == 0 else 2, norm), ConvBlock(fs, fs, 1, norm)))
            cin = fs
        self.upsample = nn.ModuleList([nn.ConvTranspose3d(f[s + 1], f[s], 2, stride=2) for s in range(len(f) - 1)])
        self.decoder = nn.ModuleList([nn.Sequential(ConvBlock(2 * f[s], f[s], 1, norm), ConvBlock(f[s], f[s], 1, norm))
                                      for s in range(len(f) - 1)])
        self.head = nn.Conv3d(f[0], out_channels, 1)

    @property
    def divisor(self):
        return 2 ** (len(self.filters) - 1)

    def forward(self, x):
        for n in x.shape[2:]:
            if n % self.divisor:
                raise ValueError(f"spatial sizes must be divisible by {self.divisor}, got {tuple(x.shape[2:])}")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(len(self.filters) - 1)):
            x = self.decoder[s](torch.cat([skips[s], self.upsample[s](x)], dim=1))
        return self.head(x)


@torch.no_grad()
def fold_batchnorm(model):
    """A norm "none" copy of a norm "batch" model whose eval-mode output is the same: each convolution absorbs
    the BatchNorm after it, w' = w * g / sqrt(var + eps), b' = beta - mean * g / sqrt(var + eps)."""
    if model.norm != "batch":
        raise ValueError("fold_batchnorm needs a norm 'batch' model")
    out = CtarrUNet(model.filters, "none", model.in_channels, model.out_channels)
    src = dict(model.named_modules())
    for name, m in out.named_modules():
        if isinstance(m, ConvBlock):
            sb = src[name]
            bn = sb.norm
            scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
            m.conv.weight.copy_(sb.conv.weight.float() * scale.view(-1, 1, 1, 1, 1))
            m.conv.bias.copy_(bn.bias.float() - bn.running_mean.float() * scale)
    for name in ("upsample", "head"):
        getattr(out, name).load_state_dict({k: v.float() for k, v in getattr(model, name).state_dict().items()})
    return out.eval()


def architecture(model_or_filters, norm):
    """The card's "architecture" object (what src/network.cpp builds)."""
    filters = model_or_filters.filters if isinstance(model_or_filters, CtarrUNet) else list(model_or_filters)
    return {
        "name": "ctarr-unet-v2",
        "stages": len(filters),
        "filters": list(filters),
        "normalisation": norm,
        "trained_with": "BatchNorm3d, folded into the convolutions at export" if norm == "none" else norm,
        "block": "2x [Conv3d 3x3x3 (stride 2 in the first conv of stages 2..S) - norm - LeakyReLU(0.01)]",
        "upsampling": "ConvTranspose3d(kernel 2, stride 2), then cat([skip, up])",
        "head": "Conv3d 1x1x1 -> logits; softmax at inference",
        "input_divisor": 2 ** (len(filters) - 1),
    }


# ---- safetensors (https://github.com/huggingface/safetensors), pure Python -----------------------------------

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8",
           torch.int64: "I64"}
_CODES = {v: k for k, v in _DTYPES.items()}


def save_safetensors(tensors, path, metadata=None):
    """{name: tensor} -> safetensors: u64 LE header length, JSON header, raw little-endian data, name order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            t = t.float()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""  # x86: little endian
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)


def load_safetensors(path, keep_dtype=False):
    """safetensors -> ({name: tensor}, metadata). Floats become float32 unless keep_dtype."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode())
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = _CODES[info["dtype"]]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=dt) if e > b else torch.empty(0, dtype=dt)
        t = t.reshape(info["shape"])
        out[name] = t if keep_dtype or not t.is_floating_point() else t.float()
    return out, header.get("__metadata__", {})


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
