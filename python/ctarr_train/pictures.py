"""Small PNG pictures of volumes and patches (no imaging library needed): for checking rendered data by eye."""

import struct
import zlib

import numpy as np

# one colour per class (index = label), background transparent
_PALETTE = np.array([[0, 0, 0]] + [[int(255 * c) for c in rgb] for rgb in (
    (0.9, 0.9, 0.6), (0.2, 0.6, 1.0), (0.1, 0.4, 0.9), (0.3, 0.8, 1.0), (1.0, 0.6, 0.2), (0.9, 0.4, 0.1),
    (0.9, 0.9, 0.2), (0.6, 0.3, 0.9), (0.8, 0.2, 0.8), (0.5, 0.1, 0.6), (0.9, 0.7, 0.8), (0.3, 0.9, 0.5),
    (0.1, 0.7, 0.3), (0.9, 0.1, 0.1), (0.6, 0.3, 0.1), (0.2, 0.3, 0.7), (0.9, 0.8, 0.1), (0.7, 0.6, 0.0),
    (0.3, 0.9, 0.9))], np.uint8)


def write_png(path, rgb):
    """uint8 [H, W, 3] -> PNG file."""
    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def overlay(hu2d, lab2d, lo=-400.0, hi=400.0, alpha=0.45, zoom=3):
    """A 2-D HU slice in a window, labels blended in colour, nearest-neighbour enlarged by zoom."""
    g = np.clip((np.asarray(hu2d, np.float32) - lo) / (hi - lo), 0, 1)[..., None] * 255.0
    rgb = np.repeat(g, 3, -1)
    lab2d = np.asarray(lab2d)
    col = _PALETTE[np.clip(lab2d, 0, len(_PALETTE) - 1)].astype(np.float32)
    m = (lab2d > 0)[..., None]
    rgb = np.where(m, (1 - alpha) * rgb + alpha * col, rgb)
    return np.repeat(np.repeat(rgb.astype(np.uint8), zoom, 0), zoom, 1)


def montage(tiles, columns, pad=4):
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = (len(tiles) + columns - 1) // columns
    out = np.full((rows * (h + pad), columns * (w + pad), 3), 40, np.uint8)
    for n, t in enumerate(tiles):
        r, c = divmod(n, columns)
        out[r * (h + pad):r * (h + pad) + t.shape[0], c * (w + pad):c * (w + pad) + t.shape[1]] = t
    return out
