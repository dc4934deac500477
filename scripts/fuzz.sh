#!/usr/bin/env bash
# Builds ctarr's libFuzzer targets (CTARR_FUZZ=ON, clang, ASan+UBSan) in build-fuzz/ and runs each for a bounded
# time. Not part of CI. Needs: apt-get install clang (libFuzzer ships with it), plus the build dependencies.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET...]
#
# Seeds are generated here (valid region, record, card, safetensors, NIfTI, MetaImage files; a DICOM slice from
# ../shared/data when present) into build-fuzz/corpus/<target>/, which also keeps what the fuzzer learns between
# runs. A crash lands in build-fuzz/crashes/<target>/; turn it into a regression test (tests/unit/reliability_test.cpp)
# before fixing it. Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_region_json fuzz_record_json fuzz_model_card fuzz_safetensors fuzz_read_nifti fuzz_read_meta fuzz_read_dicom)

cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g -DNDEBUG" -DCTARR_FUZZ=ON -DCTARR_BUILD_TESTING=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"

corpus=build-fuzz/corpus
mkdir -p "$corpus"
/usr/bin/python3 - "$corpus" <<'PY'
import json, os, struct, sys
root = sys.argv[1]
def seed(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f: f.write(data if isinstance(data, bytes) else data.encode())
seed("fuzz_region_json", "liver.json", open("regions/liver.json").read())
seed("fuzz_region_json", "small.json", json.dumps({"name": "x", "frame": "atlas", "units": "mm", "margin_mm": 5,
     "boxes": [{"lower": [0, 0, 0], "upper": [10, 10, 10]}, {"lower": [5, 5, 5], "upper": [20, 20, 20]}]}))
grid = {"size": [10, 10, 10], "origin_mm": [0, 0, 0], "spacing_mm": [1, 1, 1], "direction": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}
seed("fuzz_record_json", "record.json", json.dumps({"input": {"path": "s.nii.gz", "grid": grid},
     "boxes": [{"file": "c.nii.gz", "index_box_written": {"start": [1, 2, 3], "end": [5, 5, 5]}}]}))
seed("fuzz_model_card", "card.json", open("models/ctarr-unet.json").read())
tensors = {"a": ("F32", [2, 3]), "b": ("F16", [4]), "c": ("BF16", [1, 2])}
header, off, blob = {"__metadata__": {"format": "pt"}}, 0, b""
for name, (dt, shape) in tensors.items():
    n = 1
    for s in shape: n *= s
    size = n * (4 if dt == "F32" else 2)
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + size]}
    blob += bytes(range(size)); off += size
h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
seed("fuzz_safetensors", "small.safetensors", struct.pack("<Q", len(h)) + h + blob)
# NIfTI-1: 4x3x2 float32, sform
hdr = bytearray(352)
struct.pack_into("<i", hdr, 0, 348)
struct.pack_into("<8h", hdr, 40, 3, 4, 3, 2, 1, 1, 1, 1)
struct.pack_into("<hh", hdr, 70, 16, 32)
struct.pack_into("<8f", hdr, 76, 1, 1.5, 2, 2.5, 1, 1, 1, 1)
struct.pack_into("<3f", hdr, 108, 352, 1, 0)
hdr[123] = 2
struct.pack_into("<hh", hdr, 252, 1, 1)
struct.pack_into("<12f", hdr, 280, 1.5, 0, 0, -10, 0, 2, 0, 5, 0, 0, 2.5, 7)
hdr[344:348] = b"n+1\0"
seed("fuzz_read_nifti", "ramp.nii", bytes(hdr) + struct.pack("<24f", *[float(i - 12) for i in range(24)]))
seed("fuzz_read_meta", "ramp.mha", "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
     "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 1 1 2\nDimSize = 4 3 2\n"
     "ElementType = MET_SHORT\nElementDataFile = LOCAL\n".encode() + struct.pack("<24h", *range(-12, 12)))
PY
if [ -d ../shared/data/dicom/variants/ts_explicit_le ]; then
  mkdir -p "$corpus/fuzz_read_dicom"
  f=$(ls ../shared/data/dicom/variants/ts_explicit_le/* | head -1)
  # A small slice keeps executions fast: the first 4 KiB hold the header (the rest is pixel data).
  head -c 4096 "$f" > "$corpus/fuzz_read_dicom/slice_head.dcm"
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "build-fuzz/crashes/$t"
  echo "== $t: ${seconds}s"
  if ! TMPDIR=/tmp LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp" build-fuzz/tests/fuzz/"$t" "$corpus/$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
       -artifact_prefix="build-fuzz/crashes/$t/" -print_final_stats=1 2>"build-fuzz/$t.log"; then
    status=1
    echo "   FOUND something: see build-fuzz/$t.log and build-fuzz/crashes/$t/"
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "build-fuzz/$t.log" | sed 's/^/   /'
done
exit $status
