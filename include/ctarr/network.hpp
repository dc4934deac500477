// ctarr — the 3D U-Net (LibTorch stays behind this header).
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/preprocess.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ctarr {

// What a model file was trained for (models/<name>.json beside models/<name>.safetensors).
struct ModelCard {
  std::string id;                          // e.g. "ctarr-unet-2026-11"
  std::vector<std::string> classes;        // output channel c+1 = class c; channel 0 = background
  double spacing_mm = 3.0;
  std::vector<WindowHU> windows_hu = default_windows_hu();
  int patch_size = 64;
  // The architecture ("architecture" in the card, see python/ctarr_train/unet.py): one stage per filter count
  // (2 to 6), each stage halving the resolution of the one before; normalisation after every convolution.
  std::vector<int> filters{32, 64, 128, 256};
  enum class Normalisation {
    Instance,  // InstanceNorm3d (ctarr-unet-v1; a card without an "architecture" object): depends on the tile
    None,      // convolutions with bias (ctarr-unet-v2: trained with BatchNorm, folded at export): tile-independent
  };
  Normalisation normalisation = Normalisation::Instance;
  // Input sizes must be multiples of this: 2^(stages - 1).
  int input_divisor() const { return 1 << (static_cast<int>(filters.size()) - 1); }
  std::string sha256;                      // of the safetensors file, as recorded in the card (checked on load)
  bool trained = true;                     // false: randomly initialised (scripts/export_random_model.py), for
                                           // exercising the pipeline only; its segmentations are meaningless
  std::string json;                        // the whole card, verbatim
};

// "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N". Asking for CUDA where there is none is an
// Error(ModelFailure), never a silent fallback.
struct DeviceSpec {
  std::string text = "auto";
};
// The device actually used, e.g. "cpu" or "cuda:0"; throws as above.
std::string resolve_device(const DeviceSpec& spec);

struct SlidingWindowOptions {
  int patch_size = 64;
  double overlap = 0.5;       // fraction of the patch shared by neighbouring tiles
  double sigma_fraction = 0.125;  // Gaussian weight sigma = patch * sigma_fraction
  // Fast path: a tile whose channel-0 input never exceeds this value is not run; it contributes a one-hot
  // output channel 0 (background) instead, with the same Gaussian weight. Tile positions stay those of the
  // reference layout, so every voxel that lies in no skipped tile gets exactly the reference's value, and the
  // others are (for the card's first window, -500..1300 HU, and 0) voxels in air. Negative: run every tile.
  float skip_tile_max_input = -1.0f;
  // With skip_tile_max_input: only the tile's core is tested, the tile less this many voxels on every side that
  // faces another tile (sides on the volume's boundary are tested to the boundary). With 50 % overlap and a margin
  // of patch / 4 the cores of a row of tiles cover the volume, so every voxel above the threshold lies in the core
  // of a tile that runs. A skipped tile then adds background, with its weight, only at its voxels at or below the
  // threshold (air); the voxels above it take the weighted mean of the tiles that ran over them. 0: the whole tile.
  int skip_core_margin = 0;
};

// Arithmetic used inside the network. BFloat16: convolutions in bfloat16 under LibTorch autocast (norms, softmax
// and the tile average stay float32); on CPU only worth it where oneDNN has native bfloat16 (AVX512-BF16, AMX).
enum class Precision { Float32, BFloat16 };

struct PredictOptions {
  SlidingWindowOptions window;
  Precision precision = Precision::Float32;
  // Whole volume in one pass instead of the sliding window (only for a tile-independent model, normalisation None):
  // the volume zero-padded at its far end to the input divisor, as the sliding window pads. Where the volume has
  // more than whole_volume_max_voxels voxels it runs in slabs along z, each with whole_volume_halo voxels of
  // context on either side that are computed and dropped (the network's output at a voxel then sees the same
  // input as in one pass, up to the far edges of the receptive field).
  bool whole_volume = false;
  std::int64_t whole_volume_max_voxels = 12'000'000;
  int whole_volume_halo = 48;
  // Whole volume only: the last decoder stage (full resolution) and the head run in z slabs of this many planes,
  // each with the 2 planes of halo its two 3x3x3 convolutions reach (the values agree with one pass to rounding):
  // the full-resolution concatenation, its convolutions' outputs and the logits are never held for the whole
  // volume. 16 planes: the 512 x 512 x 300 benchmark CT's network pass peaks at 1485 MiB instead of 1769-1995 MiB,
  // in the same time (docs/PERFORMANCE.md). At least 1.
  int last_stage_slab_planes = 16;
  // Whole volume only: run the network over the in-plane box of the body (body_box_in_plane) grown by this many
  // voxels, and give every voxel outside it background (channel 0 = 1). The air around a patient in a wide field of
  // view is then not computed. Negative: the whole plane.
  int body_box_margin = -1;
};

// A half-open range of voxel indices [begin, end) along one axis of a grid.
struct VoxelRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  std::int64_t size() const { return end - begin; }
};

// The in-plane box (x, y: grid axes 0 and 1) of the body in a network input: the columns and rows holding at least
// kBodyBoxMinVoxels voxels whose channel-0 input exceeds 0 (above the card's first window's lower bound, -500 HU
// for ctarr's contract), grown by `margin` voxels on each side, its start rounded down and its end up to multiples
// of `divisor` (so the network's downsampled grids coincide with those of the whole plane), clamped to the grid.
// nullopt when no column holds that much body.
struct InPlaneBox {
  VoxelRange x, y;
};
constexpr std::int64_t kBodyBoxMinVoxels = 8;
// The fast path's body_box_margin (fast_predict_options): 72 mm of air at 3 mm. Measured on the 512x512x300
// benchmark CT with the step-15641 model (docs/PERFORMANCE.md): margin 16 ran the network 3.5x faster than the whole
// plane with per-class Dice >= 0.983 against it, 24 2.6x faster with Dice >= 0.997, 32 2.0x faster with Dice 1.000.
constexpr int kFastBodyBoxMarginVoxels = 24;
std::optional<InPlaneBox> body_box_in_plane(const MultiChannelImage<Scanner>& input, int margin, int divisor);

// The reference inference of a card, float32: for a tile-independent model (normalisation None) the whole volume in
// one pass; for an InstanceNorm model the sliding window of its patch, 50 % overlap, every tile.
PredictOptions reference_predict_options(const ModelCard& card);
// The fast path (docs/PERFORMANCE.md): for a tile-independent model (normalisation None) the whole volume in one
// pass; for an InstanceNorm model the reference's tile layout (other layouts change its output: the statistics are
// per tile) with tiles holding no voxel above -500 HU skipped; a whole-volume pass runs over the body's in-plane box
// (body_box_margin = kFastBodyBoxMarginVoxels). bfloat16 where `device` has native support (CUDA, or
// a CPU with AVX512-BF16/AMX), float32 otherwise.
PredictOptions fast_predict_options(const ModelCard& card, const std::string& device);

// True when this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16).
bool cpu_has_native_bfloat16();

// Predicts out_channels values for one patch: input [in_channels, p, p, p] (k, j, i order, i fastest),
// output [out_channels, p, p, p]. Lets tiling be tested without a model.
using PatchPredictor = std::function<void(const float* input, float* output)>;

// Gaussian-weighted sliding window over `input` (scans smaller than a patch are padded with zeros),
// returning the weighted average of patch outputs on input's grid.
//
// Tiles are patch^3 cubes; along each axis they start every stride = round(patch * (1 - overlap)) voxels and the
// last tile is aligned to the end of the volume (see sliding_window_starts). Along an axis shorter than a patch
// there is one tile, and voxels outside the volume are fed as 0 and cropped from the output. Each voxel's output
// is sum_t w_t * p_t / sum_t w_t over the tiles t covering it, w = gaussian_importance_map. Throws Usage for
// invalid options, Internal when `input.data` does not match its grid and channel count.
MultiChannelImage<Scanner> sliding_window(const MultiChannelImage<Scanner>& input, int out_channels,
                                          const PatchPredictor& predict, const SlidingWindowOptions& options);

// Like PatchPredictor, for `count` patches at once: input [count, in_channels, p, p, p], output
// [count, out_channels, p, p, p], both contiguous.
using BatchPatchPredictor = std::function<void(int count, const float* input, float* output)>;

// sliding_window, calling `predict` with up to `batch_size` tiles at a time (same result).
MultiChannelImage<Scanner> sliding_window_batched(const MultiChannelImage<Scanner>& input, int out_channels,
                                                  const BatchPatchPredictor& predict,
                                                  const SlidingWindowOptions& options, int batch_size);

// Tile start offsets along one axis of `size` voxels: 0, stride, 2*stride, ... and a last tile that ends at
// `size` (no duplicates). A single tile at 0 when size <= patch_size.
std::vector<std::int64_t> sliding_window_starts(std::int64_t size, int patch_size, double overlap);

// Smallest weight of the importance map: keeps every voxel's weight sum positive.
constexpr float kMinImportance = 1e-6f;

// Per-voxel weights of one patch, [p, p, p] with i fastest: a separable Gaussian centred on the patch, sigma =
// patch * sigma_fraction along each axis, scaled so that its maximum is 1, clamped below at kMinImportance.
std::vector<float> gaussian_importance_map(int patch_size, double sigma_fraction);

// Reads and validates a model card (the JSON beside the weights). Throws ModelFailure naming the file.
ModelCard read_model_card(const std::string& card_path);

// The card of a weights file: <stem>.safetensors -> <stem>.json.
std::string model_card_path(const std::string& safetensors_path);

// The network: a 3D U-Net with 4 stages (filters from the card), in_channels = card.windows_hu.size(),
// out_channels = 1 + card.classes.size(); architecture and parameter names as in scripts/ctarr_unet.py.
class Network {
 public:
  // Loads models/<name>.safetensors and its card (<same stem>.json). Throws ModelFailure naming the file: card
  // missing or invalid, sha256 not the card's, a parameter missing, of the wrong shape or not in the network.
  // Sets torch's intra-op threads to the hardware concurrency, or to CTARR_THREADS when that is set.
  Network(const std::string& safetensors_path, const DeviceSpec& device = {});
  ~Network();
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;

  const ModelCard& card() const;
  const std::string& device() const;

  // Softmax probabilities (1 + classes channels) on input's grid; input has one channel per window.
  // Sliding window (softmax per tile, then Gaussian-weighted average). options.patch_size must be divisible by 8.
  MultiChannelImage<Scanner> predict(const MultiChannelImage<Scanner>& input, const SlidingWindowOptions& options = {}) const;
  // Same, with a precision (and the fast path's tile skipping when options.window says so).
  MultiChannelImage<Scanner> predict(const MultiChannelImage<Scanner>& input, const PredictOptions& options) const;

  // Raw logits of one tensor-shaped input [1, C, D, H, W] given as flat data (for golden tests); returns
  // [1, out_channels, D, H, W] flat. D, H, W must be divisible by card().input_divisor().
  std::vector<float> logits(const std::vector<float>& input, const std::array<int, 3>& dhw) const;

 private:
  MultiChannelImage<Scanner> predict_whole_volume(const MultiChannelImage<Scanner>& input,
                                                  const PredictOptions& options) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ctarr
