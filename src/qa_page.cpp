// ctarr — the QA page of a batch (qa_page.html filled in with the summary's rows).
#include "ctarr/qa_page.hpp"

#include "detail/json_text.hpp"

#include "ctarr/version.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace ctarr {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kTemplate =
#include "ctarr_qa_page.inc"
    ;
constexpr const char* kSlot = "/*CTARR_DATA*/";

// `path` (as the process sees it) relative to `folder`; "" stays "".
std::string relative_to(const std::string& path, const fs::path& folder) {
  if (path.empty()) return path;
  const fs::path rel = fs::absolute(path).lexically_normal().lexically_relative(folder);
  return rel.empty() ? fs::absolute(path).lexically_normal().generic_string() : rel.generic_string();
}

}  // namespace

std::string qa_page_html(const std::vector<CropSummary>& rows, const std::string& page_path, const QaPageInfo& info) {
  const fs::path folder = fs::absolute(page_path).parent_path().lexically_normal();
  json cases = json::parse(summary_json(rows)).at("cases");  // the summary's own serialisation of the rows
  for (json& row : cases) {
    const std::string record = row.value("record", "");
    // crop files are stored relative to their record; on the page, relative to the page
    const fs::path record_dir = record.empty() ? fs::path() : fs::absolute(record).parent_path();
    for (json& box : row["boxes"]) {
      const std::string file = box.value("file", "");
      if (!file.empty() && !record.empty()) box["file"] = relative_to((record_dir / file).string(), folder);
    }
    row["record"] = relative_to(record, folder);
  }
  json previews = json::object();
  for (const auto& [case_id, path] : info.previews) previews[case_id] = relative_to(path, folder);
  const json data = {{"title", info.title},
                     {"command", info.command},
                     {"ctarr_version", kVersion},
                     {"rows", cases},
                     {"previews", previews}};
  // Inside <script>, "</script>" or "<!--" in a case id or message would end or bend the element: no '<' at all
  // (JSON allows \u003c in strings, and '<' occurs nowhere else in JSON). Bytes that are not UTF-8 (file names)
  // become U+FFFD rather than an exception.
  std::string text = detail::json_text(data);
  std::string safe;
  safe.reserve(text.size());
  for (char c : text) safe += c == '<' ? std::string("\\u003c") : std::string(1, c);
  std::string page = kTemplate;
  page.replace(page.find(kSlot), std::string(kSlot).size(), safe);
  return page;
}

}  // namespace ctarr
