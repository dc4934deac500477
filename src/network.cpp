// ctarr — the 3D U-Net and its inference (whole volume, or tiles through the sliding window), in LibTorch. The model
// card is read in model_card.cpp and the sliding window is sliding_window.cpp, both without torch.
//
// The network is defined with torch::nn modules whose named_parameters() equal the state_dict keys of the
// PyTorch reference (scripts/ctarr_unet.py); weights come from a safetensors file (detail/safetensors.hpp).
#include "ctarr/network.hpp"

#include "ctarr/error.hpp"
#include "ctarr/log.hpp"
#include "detail/safetensors.hpp"
#include "parallel.hpp"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace ctarr {

namespace {

namespace fs = std::filesystem;

// ---- the U-Net (names mirror python/ctarr_train/unet.py) ---------------------------------------------------------

using Normalisation = ModelCard::Normalisation;

struct ConvBlockImpl : torch::nn::Module {
  ConvBlockImpl(int in, int out, int stride, Normalisation norm_kind)
      : conv(register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 3)
                                                           .stride(stride)
                                                           .padding(1)
                                                           .bias(norm_kind == Normalisation::None)))) {
    if (norm_kind == Normalisation::Instance)
      norm = register_module("norm", torch::nn::InstanceNorm3d(torch::nn::InstanceNorm3dOptions(out)
                                                                   .eps(1e-5)
                                                                   .affine(true)
                                                                   .track_running_stats(false)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = conv(x);
    if (!norm.is_empty()) y = norm(y);
    return torch::leaky_relu_(y, 0.01);
  }

  torch::nn::Conv3d conv;
  torch::nn::InstanceNorm3d norm{nullptr};
};
TORCH_MODULE(ConvBlock);

torch::nn::Sequential two_blocks(int in, int out, int first_stride, Normalisation norm) {
  return torch::nn::Sequential(ConvBlock(in, out, first_stride, norm), ConvBlock(out, out, 1, norm));
}

// ConvTranspose3d with kernel 2 and stride 2, computed as what it is: a 1x1x1 convolution to 8 x C_out channels
// followed by a depth-to-space shuffle. LibTorch 1.13 runs the transposed convolution on its slow reference path
// (13 % of a bfloat16 64^3 tile); this form uses oneDNN: 0.44 -> 0.37 s per tile (1.2x), float32 outputs equal to
// 1.4e-6 (measured in Python with the shipped weights; the golden tests hold it to PyTorch's ConvTranspose3d).
torch::Tensor upsample_2x(const torch::nn::ConvTranspose3d& up, const torch::Tensor& x) {
  const torch::Tensor& w = up->weight;  // [C_in, C_out, 2, 2, 2]
  const std::int64_t cin = w.size(0), cout = w.size(1);
  const torch::Tensor pointwise = w.permute({1, 2, 3, 4, 0}).reshape({cout * 8, cin, 1, 1, 1});  // (o, a, b, c) x i
  const torch::Tensor y = torch::conv3d(x, pointwise);  // [N, C_out * 8, D, H, W]
  const std::int64_t n = y.size(0), d = y.size(2), h = y.size(3), wd = y.size(4);
  torch::Tensor shuffled = y.reshape({n, cout, 2, 2, 2, d, h, wd})
                               .permute({0, 1, 5, 2, 6, 3, 7, 4})  // N, o, D, a, H, b, W, c
                               .reshape({n, cout, 2 * d, 2 * h, 2 * wd});  // a copy: the permute is not contiguous
  return shuffled.add_(up->bias.view({1, cout, 1, 1, 1}).to(shuffled.dtype()));  // in place: no third full tensor
}

struct UNetImpl : torch::nn::Module {
  UNetImpl(int in_channels, int out_channels, const std::vector<int>& f, Normalisation norm) {
    torch::nn::ModuleList encoder, upsample, decoder;
    const int stages = static_cast<int>(f.size());
    int cin = in_channels;
    for (int s = 0; s < stages; ++s) {
      enc.push_back(two_blocks(cin, f[static_cast<std::size_t>(s)], s == 0 ? 1 : 2, norm));
      encoder->push_back(enc.back());
      cin = f[static_cast<std::size_t>(s)];
    }
    for (int s = 0; s + 1 < stages; ++s) {
      const int fs = f[static_cast<std::size_t>(s)], next = f[static_cast<std::size_t>(s) + 1];
      up.push_back(torch::nn::ConvTranspose3d(torch::nn::ConvTranspose3dOptions(next, fs, 2).stride(2).bias(true)));
      upsample->push_back(up.back());
      dec.push_back(two_blocks(2 * fs, fs, 1, norm));
      decoder->push_back(dec.back());
    }
    register_module("encoder", encoder);
    register_module("upsample", upsample);
    register_module("decoder", decoder);
    head = register_module("head", torch::nn::Conv3d(torch::nn::Conv3dOptions(f[0], out_channels, 1).bias(true)));
  }

  // The encoder and every decoder stage but the last (the one at full resolution). Returns the first skip (full
  // resolution) and the input of the last upsampling (half resolution); a single-stage network returns its only
  // stage's output and an undefined tensor.
  std::pair<torch::Tensor, torch::Tensor> to_last_stage(torch::Tensor x) {
    std::vector<torch::Tensor> skips;
    for (auto& stage : enc) {
      x = stage->forward(x);
      skips.push_back(x);
    }
    if (up.empty()) return {std::move(x), torch::Tensor()};
    skips.pop_back();  // the deepest stage's output is x itself
    for (int s = static_cast<int>(up.size()) - 1; s >= 1; --s) {
      const auto k = static_cast<std::size_t>(s);
      x = decode(k, std::move(skips[k]), std::move(x));
    }
    return {std::move(skips[0]), std::move(x)};
  }

  // Decoder stage k: skip first, then the upsampled tensor (as in python/ctarr_train/unet.py). The skip, the
  // upsampled tensor and the coarser input are released before the convolutions run, so a pass at full resolution
  // holds the concatenation and the convolutions' outputs only.
  torch::Tensor decode(std::size_t k, torch::Tensor skip, torch::Tensor coarse) {
    torch::Tensor joined = torch::cat({skip, upsample_2x(up[k], coarse)}, 1);
    skip = torch::Tensor();
    coarse = torch::Tensor();
    return dec[k]->forward(std::move(joined));
  }

  torch::Tensor forward(torch::Tensor x) {
    auto [skip, coarse] = to_last_stage(std::move(x));
    if (up.empty()) return head(skip);
    return head(decode(0, std::move(skip), std::move(coarse)));
  }

  // As forward(x) for one volume (batch 1), followed by a softmax over the classes, handed to `sink` in z slabs of
  // at most `slab` planes: sink(probabilities [1, classes, planes, Y, X], first plane). The coarser stages run as in
  // forward(); the last decoder stage (full resolution: the upsampling, the concatenation with the first skip, two
  // 3x3x3 convolutions) and the head run slab by slab, each slab's input taken with 2 planes of halo per side (the
  // reach of the two convolutions; at the volume's faces the zero padding is the one pass's own). Every output
  // plane is computed from the same inputs as in one pass: the values agree to rounding. What it saves: the
  // full-resolution upsampled tensor, the concatenation (2 x filters[0] channels), the convolutions' outputs and
  // the logits are never held for the whole volume (on the CPU, oneDNN's reordered copies of them neither).
  void forward_slabs(torch::Tensor x, std::int64_t slab,
                     const std::function<void(const torch::Tensor&, std::int64_t)>& sink) {
    constexpr std::int64_t kHalo = 2;
    const auto [skip, coarse] = to_last_stage(std::move(x));  // full and half resolution
    if (up.empty()) {  // a single stage: no decoder
      sink(torch::softmax(head(skip).to(torch::kFloat32), 1), 0);
      return;
    }
    const std::int64_t planes = skip.size(2);
    for (std::int64_t z0 = 0; z0 < planes; z0 += slab) {
      const std::int64_t z1 = std::min(planes, z0 + slab);
      const std::int64_t a = std::max<std::int64_t>(0, z0 - kHalo), b = std::min(planes, z1 + kHalo);
      // upsampled plane p comes from coarse plane p / 2
      const std::int64_t ca = a / 2, cb = (b + 1) / 2;
      torch::Tensor upsampled = upsample_2x(up[0], coarse.slice(2, ca, cb)).slice(2, a - 2 * ca, b - 2 * ca);
      torch::Tensor joined = torch::cat({skip.slice(2, a, b), upsampled}, 1);
      upsampled = torch::Tensor();
      torch::Tensor y = dec[0]->forward(std::move(joined)).slice(2, z0 - a, z1 - a);
      const torch::Tensor logits = head(y);
      y = torch::Tensor();
      sink(torch::softmax(logits.to(torch::kFloat32), 1), z0);
    }
  }

  std::vector<torch::nn::Sequential> enc, dec;
  std::vector<torch::nn::ConvTranspose3d> up;
  torch::nn::Conv3d head{nullptr};
};
TORCH_MODULE(UNet);

std::string shape_text(const torch::IntArrayRef& s) {
  return detail::shape_to_string(std::vector<std::int64_t>(s.begin(), s.end()));
}

std::string join_first(const std::vector<std::string>& names, std::size_t n = 5) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < n; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > n) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}

void load_weights(UNet& net, const detail::SafetensorsFile& file, const std::string& path) {
  const std::string hint = " (the weights do not match the card's architecture: re-export the model with "
                           "python/ctarr_train (export.py), or fix the card's \"filters\"/\"architecture\")";
  std::vector<std::string> missing, wrong_shape, extra;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& param = item.value();
    const auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    const detail::SafetensorsTensor& t = it->second;
    const std::vector<std::int64_t> expected(param.sizes().begin(), param.sizes().end());
    if (t.shape != expected) {
      wrong_shape.push_back(name + " is " + detail::shape_to_string(t.shape) + ", expected " + shape_text(param.sizes()));
      continue;
    }
    param.copy_(torch::from_blob(const_cast<float*>(t.data.data()), param.sizes(), torch::kFloat32));
  }
  for (const auto& [name, t] : file.tensors)
    if (!used.count(name)) extra.push_back(name);
  if (!missing.empty())
    throw Error(ErrorCode::ModelFailure, "model file " + path + ": tensor(s) missing: " + join_first(missing) + hint);
  if (!wrong_shape.empty())
    throw Error(ErrorCode::ModelFailure, "model file " + path + ": wrong shape: " + join_first(wrong_shape) + hint);
  if (!extra.empty())
    throw Error(ErrorCode::ModelFailure,
                "model file " + path + ": tensor(s) not in the network: " + join_first(extra) + hint);
}

int configure_threads() {
  const int threads = configured_threads();
  at::set_num_threads(threads);
  return threads;
}


}  // namespace


// ---- device ---------------------------------------------------------------------------------------------------

std::string resolve_device(const DeviceSpec& spec) {
  const std::string& t = spec.text;
  const bool cuda_available = torch::cuda::is_available();
  if (t == "auto") return cuda_available ? "cuda:0" : "cpu";
  if (t == "cpu") return "cpu";
  int index = -1;
  if (t == "cuda") {
    index = 0;
  } else if (t.rfind("cuda:", 0) == 0 && t.size() > 5 && t.size() <= 8 &&
             t.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoi(t.substr(5));
  } else {
    throw Error(ErrorCode::Usage, "unknown device '" + t + "': use auto, cpu, cuda or cuda:N (N = GPU index)");
  }
  if (!cuda_available)
    throw Error(ErrorCode::ModelFailure, "CUDA device requested (--device " + t +
                                             ") but this LibTorch build has no CUDA or no GPU is visible");
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (index >= count)
    throw Error(ErrorCode::ModelFailure, "CUDA device requested (--device " + t + ") but only " +
                                             std::to_string(count) + " GPU(s) are visible (indices 0.." +
                                             std::to_string(count - 1) + ")");
  return "cuda:" + std::to_string(index);
}


// ---- Network ---------------------------------------------------------------------------------------------------

struct Network::Impl {
  ModelCard card;
  std::string device_name;
  torch::Device device{torch::kCPU};
  UNet net{nullptr};
  int in_channels = 0;
  int out_channels = 0;
  int batch_size = 1;

  torch::Tensor forward(const torch::Tensor& x) { return net->forward(x); }
};

Network::Network(const std::string& safetensors_path, const DeviceSpec& device) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.device_name = resolve_device(device);
  m.device = torch::Device(m.device_name);
  const int threads = configure_threads();

  if (!fs::is_regular_file(safetensors_path))
    throw Error(ErrorCode::ModelFailure, "model file " + safetensors_path +
                                             " not found (give --model, or set CTARR_DATA_DIR to the folder holding "
                                             "models/)");
  const std::string card_path = model_card_path(safetensors_path);
  m.card = read_model_card(card_path);
  // Structure first (a truncated file says so), then the checksum, then names and shapes.
  const detail::SafetensorsFile weights = detail::read_safetensors(safetensors_path);
  const std::string actual_sha = detail::sha256_file_hex(safetensors_path);
  if (actual_sha != m.card.sha256)
    throw Error(ErrorCode::ModelFailure, "model file " + safetensors_path + " has sha256 " + actual_sha +
                                             " but its card " + card_path + " records " + m.card.sha256 +
                                             ": the weights and the card do not belong together (re-download both)");
  m.in_channels = static_cast<int>(m.card.windows_hu.size());
  m.out_channels = 1 + static_cast<int>(m.card.classes.size());

  try {
    m.net = UNet(m.in_channels, m.out_channels, m.card.filters, m.card.normalisation);
    load_weights(m.net, weights, safetensors_path);
    m.net->eval();
    m.net->to(m.device);
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::ModelFailure, "model file " + safetensors_path + ": LibTorch failed to build the network on " +
                                             m.device_name + ": " + e.what_without_backtrace());
  }
  // CPU: one tile per forward (batching measured no faster on 2 cores); GPU: a few tiles per forward.
  m.batch_size = m.device.is_cuda() ? 4 : 1;
  std::int64_t params = 0;
  for (const auto& p : m.net->parameters()) params += p.numel();
  log_info("network: model '" + m.card.id + "' (" + std::to_string(params) + " parameters) on " + m.device_name +
           (m.device.is_cpu() ? " with " + std::to_string(threads) + " threads" : std::string()));
  if (!m.card.trained)
    log_warn("network: model '" + m.card.id + "' is randomly initialised (\"trained\": false): results are meaningless");
}

Network::~Network() = default;
Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;

const ModelCard& Network::card() const { return impl_->card; }
const std::string& Network::device() const { return impl_->device_name; }

MultiChannelImage<Scanner> Network::predict(const MultiChannelImage<Scanner>& input,
                                            const SlidingWindowOptions& options) const {
  PredictOptions o;
  o.window = options;
  return predict(input, o);
}

PredictOptions reference_predict_options(const ModelCard& card) {
  PredictOptions o;
  o.window.patch_size = card.patch_size;
  // A tile-independent model's own output is that of one pass over the whole volume: zero-padded tiles cut its
  // receptive field at every tile border (the step-7154 model on the example CT: bone classes at Dice 0.86-0.98
  // between 64^3 tiles and one pass, liver and lungs >= 0.99).
  o.whole_volume = card.normalisation == ModelCard::Normalisation::None;
  return o;
}

bool cpu_has_native_bfloat16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool amx_bf16 = (edx >> 22) & 1u;
  const bool avx512f = (ebx >> 16) & 1u;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) return amx_bf16;
  const bool avx512_bf16 = (eax >> 5) & 1u;
  return amx_bf16 || (avx512f && avx512_bf16);
#else
  return false;
#endif
}

PredictOptions fast_predict_options(const ModelCard& card, const std::string& device) {
  PredictOptions o = reference_predict_options(card);
  // Channel 0 is the card's first window; 0 there means at or below its lower bound (-500 HU for the shipped
  // model): a tile with no voxel above it holds only air (lungs are always within a tile holding ribs or soft
  // tissue at 3 mm: a 64^3 tile spans 192 mm).
  o.window.skip_tile_max_input = 0.0f;
  // skip_core_margin stays 0 (whole tiles): patch / 4 ran the 512x512x300 CT's network in 22.4 s instead of 35.0 s
  // with Dice >= 0.997 against the reference inside the body, but moved crop boxes of the shipped model's (refused)
  // fits by a voxel on a wide-FOV test; to be re-measured with a trained model (docs/PERFORMANCE.md).
  const bool cuda = device.rfind("cuda", 0) == 0;
  o.precision = (cuda || cpu_has_native_bfloat16()) ? Precision::BFloat16 : Precision::Float32;
  // Only the body's in-plane box, with kFastBodyBoxMarginVoxels of air around it (docs/PERFORMANCE.md).
  if (o.whole_volume) o.body_box_margin = kFastBodyBoxMarginVoxels;
  return o;  // a tile-independent model: the whole volume in one pass (in z slabs for very large volumes), as above
}

namespace {

// A whole-volume forward pass allocates and frees activations of 50-110 MB, each above glibc's mmap threshold: every
// one was a fresh mapping whose pages the kernel faulted in and zeroed (29 % of a crop's CPU time in `perf`). For the
// pass, glibc keeps freed blocks in its heap, where the next activation of the same size reuses them; afterwards the
// free pages go back to the system (malloc_trim), so the peak is the pass's own. Process-wide settings: a second
// pass at the same time (two Python threads) only changes where its memory comes from.
class ReuseFreedMemory {
 public:
  explicit ReuseFreedMemory(bool enabled) : enabled_(enabled) {
#if defined(__GLIBC__)
    if (!enabled_) return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
  }
  ~ReuseFreedMemory() {
#if defined(__GLIBC__)
    if (!enabled_) return;
    mallopt(M_MMAP_MAX, 65536);             // glibc's default
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);  // glibc's initial value
    malloc_trim(0);
#endif
  }
  ReuseFreedMemory(const ReuseFreedMemory&) = delete;
  ReuseFreedMemory& operator=(const ReuseFreedMemory&) = delete;

 private:
  bool enabled_;
};

// LibTorch autocast for one scope (what Python's `with torch.autocast(...)` does).
class AutocastScope {
 public:
  AutocastScope(bool enabled, bool cuda) : enabled_(enabled), cuda_(cuda) {
    if (!enabled_) return;
    if (cuda_) {
      was_ = at::autocast::is_enabled();
      dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(true);
    } else {
      was_ = at::autocast::is_cpu_enabled();
      dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(true);
    }
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    if (cuda_) {
      at::autocast::set_enabled(was_);
      at::autocast::set_autocast_gpu_dtype(dtype_);
    } else {
      at::autocast::set_cpu_enabled(was_);
      at::autocast::set_autocast_cpu_dtype(dtype_);
    }
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_, cuda_, was_ = false;
  at::ScalarType dtype_ = at::kBFloat16;
};

}  // namespace

namespace {

std::int64_t round_up(std::int64_t n, std::int64_t d) { return (n + d - 1) / d * d; }

// The first and one-past-last index whose count reaches kBodyBoxMinVoxels, or nullopt.
std::optional<VoxelRange> counted_range(const std::vector<std::int64_t>& counts) {
  VoxelRange r{-1, -1};
  for (std::size_t n = 0; n < counts.size(); ++n)
    if (counts[n] >= kBodyBoxMinVoxels) {
      if (r.begin < 0) r.begin = static_cast<std::int64_t>(n);
      r.end = static_cast<std::int64_t>(n) + 1;
    }
  if (r.begin < 0) return std::nullopt;
  return r;
}

VoxelRange grown(VoxelRange r, int margin, std::int64_t divisor, std::int64_t size) {
  r.begin = std::max<std::int64_t>(0, r.begin - margin) / divisor * divisor;
  r.end = std::min(size, round_up(r.end + margin, divisor));
  return r;
}

}  // namespace

std::optional<InPlaneBox> body_box_in_plane(const MultiChannelImage<Scanner>& input, int margin, int divisor) {
  if (margin < 0 || divisor < 1)
    throw Error(ErrorCode::Internal, "body_box_in_plane: margin must be >= 0 and divisor >= 1");
  const std::int64_t nx = input.grid.size[0], ny = input.grid.size[1], nz = input.grid.size[2];
  std::vector<std::int64_t> per_x(static_cast<std::size_t>(nx), 0), per_y(static_cast<std::size_t>(ny), 0);
  const float* body = input.channel(0);
  for (std::int64_t z = 0; z < nz; ++z)
    for (std::int64_t y = 0; y < ny; ++y) {
      const float* row = body + (z * ny + y) * nx;
      for (std::int64_t x = 0; x < nx; ++x)
        if (row[x] > 0.0f) {
          ++per_x[static_cast<std::size_t>(x)];
          ++per_y[static_cast<std::size_t>(y)];
        }
    }
  const std::optional<VoxelRange> x = counted_range(per_x), y = counted_range(per_y);
  if (!x || !y) return std::nullopt;
  return InPlaneBox{grown(*x, margin, divisor, nx), grown(*y, margin, divisor, ny)};
}

// Whole volume (PredictOptions::whole_volume): one forward pass, or z slabs with dropped halos where the volume is
// larger than whole_volume_max_voxels. Slabs start at multiples of the input divisor, so every slab's downsampled
// grids coincide with those of the one pass.
MultiChannelImage<Scanner> Network::predict_whole_volume(const MultiChannelImage<Scanner>& input,
                                                         const PredictOptions& opts) const {
  Impl& m = *impl_;
  if (opts.last_stage_slab_planes < 1)
    throw Error(ErrorCode::Usage, "network: last_stage_slab_planes must be at least 1, not " +
                                      std::to_string(opts.last_stage_slab_planes));
  const std::int64_t d = m.card.input_divisor();
  const std::int64_t nx = input.grid.size[0], ny = input.grid.size[1], nz = input.grid.size[2];
  for (int a = 0; a < 3; ++a)
    if (input.grid.size[a] < 1)
      throw Error(ErrorCode::UnsupportedGeometry, "network: input has no voxels along axis " + std::to_string(a));
  // 1. the in-plane box the network runs over: the body's (PredictOptions::body_box_margin) or the whole plane
  InPlaneBox box{{0, nx}, {0, ny}};
  if (opts.body_box_margin >= 0)
    if (const std::optional<InPlaneBox> b = body_box_in_plane(input, opts.body_box_margin, static_cast<int>(d))) box = *b;
  const std::int64_t bx = box.x.size(), by = box.y.size();
  const bool whole_plane = bx == nx && by == ny;
  // 2. z slabs where the box holds more voxels than whole_volume_max_voxels
  const std::int64_t px = round_up(bx, d), py = round_up(by, d);
  const std::int64_t halo = round_up(std::max(0, opts.whole_volume_halo), d);
  std::int64_t core = round_up(nz, d);
  if (px * py * core > opts.whole_volume_max_voxels) {
    const std::int64_t fit = opts.whole_volume_max_voxels / (px * py) - 2 * halo;
    core = std::max<std::int64_t>(d, fit / d * d);
  }
  // 3. the output is allocated when the first slab of probabilities arrives (not held through the encoder's peak);
  // outside the box it is background
  std::optional<MultiChannelImage<Scanner>> out;
  const torch::Tensor all =
      torch::from_blob(const_cast<float*>(input.data.data()), {1, m.in_channels, nz, ny, nx}, torch::kFloat32)
          .slice(3, box.y.begin, box.y.end)
          .slice(4, box.x.begin, box.x.end);
  const bool bf16 = opts.precision == Precision::BFloat16;
  log_debug("whole volume: " + std::to_string((nz + core - 1) / core) + " pass(es) over " + std::to_string(bx) + "x" +
            std::to_string(by) + "x" + std::to_string(nz) + " of " + std::to_string(nx) + "x" + std::to_string(ny) +
            "x" + std::to_string(nz) + " voxels, " + (bf16 ? "bfloat16" : "float32"));
  for (std::int64_t z0 = 0; z0 < nz; z0 += core) {
    const std::int64_t z1 = std::min(nz, z0 + core);
    const std::int64_t lo = std::max<std::int64_t>(0, z0 - halo) / d * d;
    const std::int64_t hi = std::min(nz, z1 + halo);
    const std::int64_t pz = round_up(hi - lo, d);
    torch::Tensor x =
        torch::constant_pad_nd(all.slice(2, lo, hi), {0, px - bx, 0, py - by, 0, pz - (hi - lo)}, 0.0).to(m.device);
    // 4. the core's rows of the box into the output (the padding and the halo stay behind), slab by slab
    auto sink = [&](const torch::Tensor& slab_prob, std::int64_t first) {
      const torch::Tensor prob = slab_prob.to(torch::kCPU).contiguous();
      if (!out) {
        out.emplace(input.grid, m.out_channels);
        if (!whole_plane) std::fill(out->channel(0), out->channel(0) + input.grid.voxels(), 1.0f);
      }
      const float* src = prob.data_ptr<float>();
      const std::int64_t sc = prob.stride(1), sz = prob.stride(2), sy = prob.stride(3);
      const std::int64_t from = std::max(z0, lo + first), to = std::min(z1, lo + first + prob.size(2));
      for (int c = 0; c < m.out_channels; ++c)
        for (std::int64_t z = from; z < to; ++z)
          for (std::int64_t y = 0; y < by; ++y)
            std::memcpy(out->channel(c) + (z * ny + box.y.begin + y) * nx + box.x.begin,
                        src + c * sc + (z - lo - first) * sz + y * sy, static_cast<std::size_t>(bx) * sizeof(float));
    };
    const AutocastScope autocast(bf16, m.device.is_cuda());
    m.net->forward_slabs(std::move(x), opts.last_stage_slab_planes, sink);
  }
  return std::move(*out);
}

MultiChannelImage<Scanner> Network::predict(const MultiChannelImage<Scanner>& input, const PredictOptions& opts) const {
  const SlidingWindowOptions& options = opts.window;
  Impl& m = *impl_;
  if (input.channels != m.in_channels)
    throw Error(ErrorCode::Internal, "network: input has " + std::to_string(input.channels) + " channels but model '" +
                                         m.card.id + "' expects " + std::to_string(m.in_channels) + " (one per window)");
  if (opts.whole_volume) {
    if (m.card.normalisation != ModelCard::Normalisation::None)
      throw Error(ErrorCode::Usage, "network: model '" + m.card.id +
                                        "' normalises per tile (InstanceNorm): it cannot run over the whole volume");
    try {
      torch::InferenceMode guard;
      const ReuseFreedMemory reuse(m.device.is_cpu());
      return predict_whole_volume(input, opts);
    } catch (const c10::Error& e) {
      throw Error(ErrorCode::ModelFailure, "network: whole-volume inference with model '" + m.card.id + "' on " +
                                               m.device_name + " failed: " + e.what_without_backtrace() +
                                               (m.device.is_cuda() ? " (out of GPU memory? try --device cpu)" : ""));
    }
  }
  if (options.patch_size % m.card.input_divisor() != 0)
    throw Error(ErrorCode::Usage, "network: patch size must be a multiple of " +
                                      std::to_string(m.card.input_divisor()) + ", got " +
                                      std::to_string(options.patch_size));
  const std::int64_t p = options.patch_size;
  try {
    torch::InferenceMode guard;
    const bool bf16 = opts.precision == Precision::BFloat16;
    return sliding_window_batched(
        input, m.out_channels,
        [&](int count, const float* in, float* out) {
          const torch::Tensor x =
              torch::from_blob(const_cast<float*>(in), {count, m.in_channels, p, p, p}, torch::kFloat32).to(m.device);
          torch::Tensor logits;
          {
            const AutocastScope autocast(bf16, m.device.is_cuda());
            logits = m.forward(x);
          }
          const torch::Tensor prob =
              torch::softmax(logits.to(torch::kFloat32), 1).to(torch::kCPU).contiguous();
          std::memcpy(out, prob.data_ptr<float>(), static_cast<std::size_t>(prob.numel()) * sizeof(float));
        },
        options, m.batch_size);
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::ModelFailure, "network: inference with model '" + m.card.id + "' on " + m.device_name +
                                             " failed: " + e.what_without_backtrace() +
                                             (m.device.is_cuda() ? " (out of GPU memory? try --device cpu)" : ""));
  }
}

std::vector<float> Network::logits(const std::vector<float>& input, const std::array<int, 3>& dhw) const {
  Impl& m = *impl_;
  const int div = m.card.input_divisor();
  for (int a = 0; a < 3; ++a)
    if (dhw[static_cast<std::size_t>(a)] < div || dhw[static_cast<std::size_t>(a)] % div != 0)
      throw Error(ErrorCode::Usage, "network: input sizes must be positive multiples of " + std::to_string(div));
  const std::int64_t d = dhw[0], h = dhw[1], w = dhw[2];
  if (input.size() != static_cast<std::size_t>(m.in_channels * d * h * w))
    throw Error(ErrorCode::Internal, "network: logits input has " + std::to_string(input.size()) + " values, expected " +
                                         std::to_string(m.in_channels * d * h * w));
  try {
    torch::InferenceMode guard;
    const torch::Tensor x =
        torch::from_blob(const_cast<float*>(input.data()), {1, m.in_channels, d, h, w}, torch::kFloat32).to(m.device);
    const torch::Tensor y = m.forward(x).to(torch::kCPU).contiguous();
    return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::ModelFailure, "network: forward pass of model '" + m.card.id + "' on " + m.device_name +
                                             " failed: " + e.what_without_backtrace());
  }
}

}  // namespace ctarr
