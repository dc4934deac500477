// ctarr — the 3D U-Net (LibTorch stays behind this header).
#pragma once

#include "ctarr/image.hpp"
#include "ctarr/preprocess.hpp"

#include <array>
#include <functional>
#include <memory>
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
  std::array<int, 4> filters{32, 64, 128, 256};
  std::string sha256;                      // of the safetensors file, as recorded in the card
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
};

// Predicts out_channels values for one patch: input [in_channels, p, p, p] (k, j, i order, i fastest),
// output [out_channels, p, p, p]. Lets tiling be tested without a model.
using PatchPredictor = std::function<void(const float* input, float* output)>;

// Gaussian-weighted sliding window over `input` (scans smaller than a patch are padded with zeros),
// returning the weighted average of patch outputs on input's grid.
MultiChannelImage<Scanner> sliding_window(const MultiChannelImage<Scanner>& input, int out_channels,
                                          const PatchPredictor& predict, const SlidingWindowOptions& options);

class Network {
 public:
  // Loads models/<name>.safetensors and its card (<same stem>.json). Throws ModelFailure naming the file.
  Network(const std::string& safetensors_path, const DeviceSpec& device = {});
  ~Network();
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;

  const ModelCard& card() const;
  const std::string& device() const;

  // Softmax probabilities (1 + classes channels) on input's grid; input has one channel per window.
  MultiChannelImage<Scanner> predict(const MultiChannelImage<Scanner>& input, const SlidingWindowOptions& options = {}) const;

  // Raw logits of one tensor-shaped input [1, C, D, H, W] given as flat data (for golden tests).
  std::vector<float> logits(const std::vector<float>& input, const std::array<int, 3>& dhw) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ctarr
