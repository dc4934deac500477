// ctarr — the QA page of a batch: one self-contained HTML file beside its summary, a row per case with its preview
// thumbnail, fit Dice, orientation, kept labels, warnings and errors; sortable, filterable, offline (no network,
// no server), links relative to the page.
#pragma once

#include "ctarr/record.hpp"

#include <map>
#include <string>
#include <vector>

namespace ctarr {

struct QaPageInfo {
  std::string title;                            // the heading, e.g. "ctarr crop: 6 cases, region liver"
  std::string command;                          // the command line that made the batch ("" none)
  std::map<std::string, std::string> previews;  // case id -> its preview PNG (a path as the process sees it)
};

// The page of `rows` (the summary's rows: one per case and region) for the file `page_path`. Record, crop and
// preview links are made relative to the page's folder, so the output folder can be moved or copied as a whole.
// Cases are listed failed first, then warned, then by case id; a click on a column header sorts by it (the URL's
// "#sort=KEY" or "#sort=-KEY" holds the order, "&q=TEXT" the filter).
std::string qa_page_html(const std::vector<CropSummary>& rows, const std::string& page_path, const QaPageInfo& info);

}  // namespace ctarr
