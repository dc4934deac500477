// ctarr_bench — where the time of `ctarr crop` goes, stage by stage, and how the fast inference path compares with
// the reference sliding window (time and per-class Dice). A benchmark, not a test: it never fails on time.
//
//   ctarr_bench INPUT [--seg LABELS] [--region liver] [--mode both|fast|reference] [--out DIR] [--device cpu]
//
// Prints one line per stage (wall seconds, peak RSS so far), then ratios. See docs/PERFORMANCE.md.
#include "ctarr/classes.hpp"
#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/network.hpp"
#include "ctarr/pipeline.hpp"
#include "ctarr/preprocess.hpp"

#include <CLI/CLI.hpp>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Peak and current resident set size of this process in MiB (/proc/self/status: VmHWM, VmRSS).
std::pair<double, double> rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string key;
  double hwm = 0.0, rss = 0.0;
  while (in >> key) {
    if (key == "VmHWM:") in >> hwm;
    else if (key == "VmRSS:") in >> rss;
  }
  return {hwm / 1024.0, rss / 1024.0};
}

struct Stage {
  std::string name;
  double seconds;
  double peak_mib;
};
std::vector<Stage> stages;

template <class F>
auto timed(const std::string& name, F&& f) {
  const auto t0 = Clock::now();
  auto result = f();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto [hwm, rss] = rss_mib();
  stages.push_back({name, s, hwm});
  std::printf("%-34s %8.3f s   peak RSS %7.0f MiB   RSS %7.0f MiB\n", name.c_str(), s, hwm, rss);
  std::fflush(stdout);
  return result;
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string line;
  std::getline(in, line);
  return line + "\n";
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Inflate a whole .gz file in memory with zlib (how much of the read is gunzip).
std::size_t gunzip_zlib(const std::vector<char>& gz) {
  z_stream zs{};
  inflateInit2(&zs, 15 + 32);
  std::vector<unsigned char> out(std::size_t{1} << 24);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());
  std::size_t total = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    total += out.size() - zs.avail_out;
  }
  inflateEnd(&zs);
  return total;
}

ctarr::Segmentation to_segmentation(const ctarr::MultiChannelImage<ctarr::Scanner>& prob, const ctarr::Reorientation& r,
                                    const std::string& source) {
  ctarr::Segmentation s;
  s.reorientation = r;
  s.source = source;
  s.soft_masks = ctarr::MultiChannelImage<ctarr::Scanner>(prob.grid, ctarr::kNumClasses);
  const auto n = static_cast<std::size_t>(prob.grid.voxels());
  std::copy(prob.data.begin() + static_cast<std::ptrdiff_t>(n), prob.data.end(), s.soft_masks.data.begin());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ctarr_bench: per-stage time and memory of ctarr crop; fast vs reference inference"};
  std::string input, seg, region = "liver", mode = "both", out_dir, device = "cpu";
  app.add_option("input", input, "CT (.nii.gz)")->required();
  app.add_option("--seg", seg, "label map: skip the network (the --seg path)");
  app.add_option("--region", region, "region to crop");
  app.add_option("--mode", mode, "both | fast | reference | none (stages before the network only)")
      ->check(CLI::IsMember({"both", "fast", "reference", "none"}));
  app.add_option("--out", out_dir, "folder for the crops (default: a temporary folder, removed)");
  app.add_option("--device", device, "cpu | cuda | auto");
  bool fit_only = false;
  int skip_core_margin = 0;
  app.add_option("--skip-core-margin", skip_core_margin,
                 "fast path: skip tiles whose core (the tile less N voxels per inner side) is all air "
                 "(SlidingWindowOptions::skip_core_margin; default 0: only all-air tiles)");
  int body_box_margin = ctarr::kFastBodyBoxMarginVoxels;
  app.add_option("--body-box-margin", body_box_margin,
                 "fast path, whole-volume model: voxels of air kept around the body's in-plane box "
                 "(PredictOptions::body_box_margin; negative: the whole plane)");
  int last_stage_slab_planes = ctarr::PredictOptions{}.last_stage_slab_planes;
  app.add_option("--last-stage-slab-planes", last_stage_slab_planes,
                 "fast path, whole-volume model: z planes per slab of the last decoder stage "
                 "(PredictOptions::last_stage_slab_planes)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--fit-only", fit_only, "with --seg: stop after the fit and print scanner_to_atlas_4x4 as JSON");
  CLI11_PARSE(app, argc, argv);
  namespace fs = std::filesystem;
  const bool temp_out = out_dir.empty();
  if (temp_out) out_dir = (fs::temp_directory_path() / ("ctarr_bench_" + std::to_string(::getpid()))).string();
  fs::create_directories(out_dir);

  try {
    using namespace ctarr;
    std::printf("input %s\nload average at start: %s", input.c_str(), loadavg().c_str());
    if (input.size() > 3 && input.substr(input.size() - 3) == ".gz") {
      const std::vector<char> gz = read_file(input);
      const std::size_t nz = timed("gunzip, zlib (info only)", [&] { return gunzip_zlib(gz); });
      std::printf("  %.1f MB -> %.1f MB\n", static_cast<double>(gz.size()) / 1e6, static_cast<double>(nz) / 1e6);
    }
    PipelineOptions popts;
    popts.device.text = device;
    auto pipeline_ptr = timed("load atlas (Pipeline)", [&] { return std::make_unique<Pipeline>(popts); });
    Pipeline& pipeline = *pipeline_ptr;
    const Scan scan = timed("read_scan (gunzip + parse + float)", [&] { return read_scan(input); });
    std::printf("  scan %lld x %lld x %lld @ %.3f x %.3f x %.3f mm\n", static_cast<long long>(scan.image.grid.size[0]),
                static_cast<long long>(scan.image.grid.size[1]), static_cast<long long>(scan.image.grid.size[2]),
                scan.image.grid.spacing[0], scan.image.grid.spacing[1], scan.image.grid.spacing[2]);

    std::map<std::string, double> network_s;
    std::optional<Segmentation> seg_fast, seg_ref;
    if (!seg.empty()) {
      seg_fast = timed("labels -> soft masks (--seg)", [&] { return pipeline.segmentation_from_labels(seg); });
    } else {
      const Network net = timed("load network", [&] { return Network(pipeline.options().model_path, popts.device); });
      // preprocess, stage by stage (what preprocess() does)
      PreprocessOptions pre;
      pre.spacing_mm = net.card().spacing_mm;
      pre.windows_hu = net.card().windows_hu;
      const PreprocessResult input_pre = timed("preprocess (reorient+resample+window)", [&] { return preprocess(scan.image, pre); });
      {
        const Reorientation r = canonical_reorientation(scan.image.grid.direction);
        const Grid<Scanner> g = isotropic_grid(reorient_grid(scan.image.grid, r), pre.spacing_mm);
        const Image<float> hu = timed("  of which resample (separable)", [&] { return resample_linear(scan.image, g, -1024.0f, true); });
        const Image<float> hu_general =
            timed("  resample, general path (before)", [&] { return resample_linear_general(scan.image, g, -1024.0f, true); });
        float max_diff = 0.0f;
        for (std::size_t v = 0; v < hu.voxels.size(); ++v) max_diff = std::max(max_diff, std::abs(hu.voxels[v] - hu_general.voxels[v]));
        std::printf("  separable vs general: max |difference| %.4f HU\n", static_cast<double>(max_diff));
        std::printf("  3 mm grid %lld x %lld x %lld\n", static_cast<long long>(g.size[0]), static_cast<long long>(g.size[1]),
                    static_cast<long long>(g.size[2]));
      }
      {
        // tiles of the reference layout, and how many the fast path skips as all air
        const PredictOptions fast = fast_predict_options(net.card(), net.device());
        const Grid<Scanner>& g = input_pre.network_input.grid;
        const int p = fast.window.patch_size;
        const auto si = sliding_window_starts(g.size[0], p, fast.window.overlap);
        const auto sj = sliding_window_starts(g.size[1], p, fast.window.overlap);
        const auto sk = sliding_window_starts(g.size[2], p, fast.window.overlap);
        std::size_t total = 0, air = 0;
        const float* c0 = input_pre.network_input.channel(0);
        for (auto k0 : sk)
          for (auto j0 : sj)
            for (auto i0 : si) {
              ++total;
              bool empty = true;
              for (std::int64_t k = k0; k < std::min<std::int64_t>(k0 + p, g.size[2]) && empty; ++k)
                for (std::int64_t j = j0; j < std::min<std::int64_t>(j0 + p, g.size[1]) && empty; ++j)
                  for (std::int64_t i = i0; i < std::min<std::int64_t>(i0 + p, g.size[0]); ++i)
                    if (c0[static_cast<std::size_t>((k * g.size[1] + j) * g.size[0] + i)] > fast.window.skip_tile_max_input) {
                      empty = false;
                      break;
                    }
              air += empty;
            }
        std::printf("  tiles: %zu in the reference layout, %zu all air (skipped by the fast path)\n", total, air);
      }
      if (mode == "none") {
        std::printf("--mode none: stopping before the network\nload average at end: %s", loadavg().c_str());
        return 0;
      }
      if (mode != "reference") {
        PredictOptions fast = fast_predict_options(net.card(), net.device());
        fast.window.skip_core_margin = skip_core_margin;
        if (fast.whole_volume) fast.body_box_margin = body_box_margin;
        fast.last_stage_slab_planes = last_stage_slab_planes;
        std::printf("  fast path: %s, skip tiles with channel 0 <= %.2f (core margin %d), body box margin %d\n",
                    fast.precision == Precision::BFloat16 ? "bfloat16" : "float32", fast.window.skip_tile_max_input,
                    fast.window.skip_core_margin, fast.body_box_margin);
        if (fast.whole_volume && fast.body_box_margin >= 0)
          if (const auto box = body_box_in_plane(input_pre.network_input, fast.body_box_margin,
                                                 net.card().input_divisor()))
            std::printf("  body box: x [%lld, %lld), y [%lld, %lld) of %lld x %lld\n",
                        static_cast<long long>(box->x.begin), static_cast<long long>(box->x.end),
                        static_cast<long long>(box->y.begin), static_cast<long long>(box->y.end),
                        static_cast<long long>(input_pre.network_input.grid.size[0]),
                        static_cast<long long>(input_pre.network_input.grid.size[1]));
        const auto prob = timed("network, fast path", [&] { return net.predict(input_pre.network_input, fast); });
        network_s["fast"] = stages.back().seconds;
        seg_fast = to_segmentation(prob, input_pre.reorientation, "network:" + net.card().id + " (fast)");
        PredictOptions skip_only = reference_predict_options(net.card());
        skip_only.window.skip_tile_max_input = fast.window.skip_tile_max_input;
        if (mode == "both") {
          timed("network, air tiles skipped, fp32", [&] { return net.predict(input_pre.network_input, skip_only); });
          network_s["skip-fp32"] = stages.back().seconds;
        }
      }
      if (mode != "fast") {
        const auto prob = timed("network, reference", [&] {
          return net.predict(input_pre.network_input, reference_predict_options(net.card()));
        });
        network_s["reference"] = stages.back().seconds;
        seg_ref = to_segmentation(prob, input_pre.reorientation, "network:" + net.card().id);
      }
    }
    if (seg_fast && seg_ref) {
      // per-class Dice of the hard labels (argmax with background), fast vs reference
      auto labels = [](const Segmentation& s) {
        MultiChannelImage<Scanner> wb(s.soft_masks.grid, kNumClasses + 1);
        const auto n = static_cast<std::size_t>(s.soft_masks.grid.voxels());
        for (std::size_t v = 0; v < n; ++v) {
          float sum = 0.0f;
          for (int c = 0; c < kNumClasses; ++c) sum += s.soft_masks.data[static_cast<std::size_t>(c) * n + v];
          wb.data[v] = std::max(0.0f, 1.0f - sum);
        }
        std::copy(s.soft_masks.data.begin(), s.soft_masks.data.end(), wb.data.begin() + static_cast<std::ptrdiff_t>(n));
        return hard_labels(wb);
      };
      const Image<std::uint8_t> a = labels(*seg_ref), b = labels(*seg_fast);
      std::printf("Dice fast vs reference per class (reference voxels at 3 mm):\n");
      for (int c = 1; c <= kNumClasses; ++c) {
        std::size_t na = 0, nb = 0, both = 0;
        for (std::size_t v = 0; v < a.voxels.size(); ++v) {
          const bool x = a.voxels[v] == c, y = b.voxels[v] == c;
          na += x;
          nb += y;
          both += x && y;
        }
        if (na + nb == 0) continue;
        std::printf("  %-20s %6.4f  (%zu vs %zu voxels)\n", class_names()[static_cast<std::size_t>(c - 1)].c_str(),
                    2.0 * static_cast<double>(both) / static_cast<double>(na + nb), na, nb);
      }
    }
    const Segmentation& s = seg_fast ? *seg_fast : *seg_ref;
    std::optional<Fit> fit_or;
    try {
      fit_or = timed("fit (landmarks + Dice refinement)", [&] { return pipeline.fit(s); });
    } catch (const Error& e) {
      if (e.code() != ErrorCode::FitFailed) throw;
      std::printf("fit refused: %s\n", e.what());
      if (seg_ref && seg_fast) {
        try {
          timed("fit of the reference segmentation", [&] { return pipeline.fit(*seg_ref); });
          std::printf("  but the reference segmentation's fit is accepted\n");
        } catch (const Error& e2) {
          std::printf("  the reference segmentation's fit is refused too: %s\n", e2.what());
        }
      }
      if (network_s.count("fast") && network_s.count("reference"))
        std::printf("ratio network reference / fast: %.2f (%.2f s / %.2f s)\n", network_s["reference"] / network_s["fast"],
                    network_s["reference"], network_s["fast"]);
      std::printf("load average at end: %s", loadavg().c_str());
      if (temp_out) fs::remove_all(out_dir);
      return 0;
    }
    const Fit& fit = *fit_or;
    if (fit_only) {
      const Eigen::Matrix4d m = fit.scanner_to_atlas.matrix().matrix();
      std::printf("scanner_to_atlas_4x4: [");
      for (int r = 0; r < 4; ++r)
        std::printf("%s[%.6f, %.6f, %.6f, %.6f]", r ? ", " : "", m(r, 0), m(r, 1), m(r, 2), m(r, 3));
      std::printf("]\n");
      if (temp_out) fs::remove_all(out_dir);
      return 0;
    }
    if (seg_fast && seg_ref) {
      try {
        const Fit fit_ref = timed("fit of the reference segmentation", [&] { return pipeline.fit(*seg_ref); });
        const Eigen::Affine3d d = fit.scanner_to_atlas.matrix() * fit_ref.scanner_to_atlas.matrix().inverse();
        std::printf("  fit fast vs reference: translation differs by %.2f mm at the atlas origin\n", d.translation().norm());
      } catch (const Error& e) {
        std::printf("fit of the reference refused: %s\n", e.what());
      }
    }
    // crop + write as the crop command does it (map the region's boxes, cut the original voxels, write atomically)
    const Region r = find_region(pipeline.options().regions_dir, region);
    const auto written = timed("crop + write (" + region + ")", [&] {
      std::vector<std::string> files;
      CropOptions options;
      options.margin_mm = r.margin_mm;
      const Affine<Atlas, Scanner> atlas_to_scanner = fit.scanner_to_atlas.inverse();
      for (std::size_t k = 0; k < r.boxes.size(); ++k) {
        const MappedBox m = map_box(r.boxes[k], atlas_to_scanner, scan.image.grid, options);
        if (m.misses_scan) continue;
        const std::string path = (fs::path(out_dir) / (region + "_" + std::to_string(k) + ".nii.gz")).string();
        write_image(crop_image(scan.image, m, options, -1024.0f), path, scan.info.stored_type);
        files.push_back(path);
      }
      return files;
    });
    for (const std::string& f : written) std::printf("  wrote %s\n", f.c_str());

    double total = 0.0;
    for (const Stage& st : stages)
      if (st.name.rfind("gunzip", 0) != 0 && st.name.rfind("  ", 0) != 0 && st.name.find("reference") == std::string::npos &&
          st.name.find("skipped, fp32") == std::string::npos)
        total += st.seconds;
    std::printf("sum of the stages of one crop (%s): %.2f s, peak RSS %.0f MiB\n",
                seg.empty() ? (seg_fast ? "fast path" : "reference") : "--seg", total, rss_mib().first);
    if (network_s.count("fast") && network_s.count("reference"))
      std::printf("ratio network reference / fast: %.2f (%.2f s / %.2f s)\n", network_s["reference"] / network_s["fast"],
                  network_s["reference"], network_s["fast"]);
    if (network_s.count("skip-fp32") && network_s.count("reference"))
      std::printf("ratio network reference / air tiles skipped (fp32): %.2f\n", network_s["reference"] / network_s["skip-fp32"]);
  } catch (const ctarr::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::printf("load average at end: %s", loadavg().c_str());
  if (temp_out) fs::remove_all(out_dir);
  return 0;
}
