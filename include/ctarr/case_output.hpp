// ctarr — a crop case's files: where they go (CaseLayout), what an earlier run left there (earlier_run: resume), the
// transaction that writes them (CaseTransaction: nothing of a failed case stays), and the cropped dataset's
// dataset.json.
#pragma once

#include "ctarr/crop.hpp"
#include "ctarr/crop_plan.hpp"
#include "ctarr/dataset.hpp"
#include "ctarr/image.hpp"
#include "ctarr/io.hpp"
#include "ctarr/picture.hpp"
#include "ctarr/record.hpp"
#include "ctarr/regions.hpp"

#include <optional>
#include <string>
#include <vector>

namespace ctarr {

// Where a case's outputs go. Single inputs: OUT/<stem>_<region>[_<box>]<ext> beside OUT/<stem>_<region>.json.
// Dataset mode: OUT[/<region>]/<subset>/<id>[_<box>]<channel suffix><ext>, labels in the matching labels subset,
// records in OUT/records/<id>_<region>.json (the region folder only when several regions are cropped).
struct CaseLayout {
  std::string out_dir;
  std::string extension = ".nii.gz";
  bool dataset = false;
  bool several_regions = false;

  std::string record_path(const DatasetCase& c, const Region& r) const;
  std::string root(const Region& r) const;  // dataset mode: the folder of the region's dataset
  std::string out_id(const DatasetCase& c, const Region& r, std::size_t box) const;
  std::string image_path(const DatasetCase& c, const Region& r, std::size_t box, std::size_t channel) const;
  std::string label_path(const DatasetCase& c, const Region& r, std::size_t box) const;
};

// Creates `dir` when missing and checks that a file can be written there; throws OutputNotWritable naming it.
void check_output_dir(const std::string& dir);

// What an earlier run left for a case and region.
struct EarlierRun {
  std::optional<CropSummary> done;  // record with a summary, every file it names exists, same input and options
  std::string other_options;        // the record was made from another input or with other options: what differs
};

// How the options of an earlier record differ from `now` ("" when they agree).
std::string options_differ(const CropOptions& before, const CropOptions& now);

// Reads the record at `record_path`, if any: done (status "skipped") when it was made from `input` with `options`
// (effective_crop_options) and every file it names exists. An unreadable record counts as not done.
EarlierRun earlier_run(const std::string& record_path, const std::string& input, const CropOptions& options);

// What is left to do for a case.
struct CaseResume {
  std::vector<CropSummary> done_rows;  // regions an earlier run finished (status "skipped")
  std::vector<std::size_t> pending;    // indices into the regions: still to crop
  std::string stale;  // records of the case made from another input or with other options, and what differs
};
// Without `overwrite`, a region whose record (earlier_run, with its effective options) is done is skipped; with it,
// every region is pending.
CaseResume resume_case(const DatasetCase& c, const std::vector<Region>& regions, const CaseLayout& layout,
                       const CropOptions& requested, bool overwrite);

// Every file one case writes goes through this object. Until commit(), they are the case's: a failure (or the
// destructor, whatever the exit from the scope) removes them all, so nothing of a failed case stays. The one
// exception is the picture of a refused fit (write_failure_picture), which exists to be looked at.
class CaseTransaction {
 public:
  explicit CaseTransaction(bool overwrite) : overwrite_(overwrite) {}
  ~CaseTransaction() { roll_back(); }
  CaseTransaction(const CaseTransaction&) = delete;
  CaseTransaction& operator=(const CaseTransaction&) = delete;

  // A crop or label crop: refused (OutputNotWritable) when the file exists and was not written by this case,
  // unless overwriting.
  void write_image(const Image<float>& image, const std::string& path, PixelType type);
  // A record: the same rule.
  void write_text(const std::string& path, const std::string& text);
  // The case's preview: rewritten on every run (a resumed case writes it again), removed with a failed case.
  void write_preview(const RgbImage& picture, const std::string& path);
  // The picture of a refused fit: written, and kept when the case fails. Throws when it cannot be written.
  void write_failure_picture(const RgbImage& picture, const std::string& path);
  const std::string& failure_picture() const { return failure_picture_; }

  // The files written so far, in order.
  const std::vector<std::string>& written() const { return written_; }
  // The case succeeded: its files stay.
  void commit() { written_.clear(); }
  // Removes every file written since the last commit (the failure picture excepted).
  void roll_back() noexcept;

 private:
  void claim(const std::string& path, bool refuse_existing);

  bool overwrite_;
  std::vector<std::string> written_;
  std::string failure_picture_;
};

// Rewrites the dataset.json of each region's cropped dataset (CaseLayout::root) from the input dataset's and the
// cases whose records exist now (every shard's), when the input dataset has one. Its description names the region
// and `made_by` ("ctarr 0.1.0").
void write_cropped_dataset_json(const std::string& dataset_dir, const CaseLayout& layout,
                                const std::vector<DatasetCase>& all_cases, const std::vector<Region>& regions,
                                const std::string& made_by);

}  // namespace ctarr
