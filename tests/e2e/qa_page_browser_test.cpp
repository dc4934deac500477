// Issue 16: the QA page in a real browser. Headless Chromium (Debian's `chromium`) opens a page of 1,000 cases
// written by qa_page_html from disk; a harness page beside it loads it in a frame, clicks a column header twice,
// types into the filter, and reports the rows, their order, the links and the time the page took to draw itself.
#include "ctarr/preview.hpp"
#include "ctarr/qa_page.hpp"
#include "support/support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace ctarr::test {
namespace {

using json = nlohmann::json;

constexpr int kCases = 1000;

std::string case_id(int n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "case_%04d", n);
  return buf;
}

// Case n: fit Dice 0.300 + n/10000 except every 97th case failed, every 7th warned, every 50th a lying header.
std::vector<CropSummary> synthetic_rows(const std::string& out) {
  std::vector<CropSummary> rows;
  for (int n = 0; n < kCases; ++n) {
    CropSummary s;
    s.case_id = case_id(n);
    s.region = "liver";
    s.input = out + "/in/" + s.case_id + "_0000.nii.gz";
    if (n % 97 == 0) {
      s.status = "failed";
      s.error = "the atlas fit failed (Dice 0.02 < 0.1): no usable anatomy found";
      s.error_code = 6;
    } else {
      s.record = out + "/records/" + s.case_id + "_liver.json";
      s.fit_dice = 0.3 + n / 10000.0;
      s.orientation = n % 50 == 0 ? "rot90" : "identity";
      s.orientation_searched = true;
      CropSummary::Box b;
      b.file = "../imagesTr/" + s.case_id + "_0000.nii.gz";
      b.fraction_inside = 1.0;
      s.boxes.push_back(b);
      s.input_voxels = 1000;
      s.crop_voxels = 300;
      LabelKept k;
      k.value = 1;
      k.voxels = 100;
      k.kept = n % 13 == 0 ? 97 : 100;
      s.labels.push_back(k);
      if (n % 7 == 0) s.warnings = {"low fit Dice " + std::to_string(s.fit_dice) + " (< 0.5): check the crop"};
    }
    rows.push_back(s);
  }
  return rows;
}

constexpr const char* kHarness = R"html(<!doctype html>
<meta charset="utf-8">
<iframe id="f" src="summary.html" style="width:1400px;height:900px"></iframe>
<pre id="out">pending</pre>
<script>
const f = document.getElementById("f");
f.onload = () => {
  const d = f.contentDocument;
  const order = () => [...d.querySelectorAll("#cases tbody tr")].map((r) => r.dataset.case);
  const res = { rows: order().length, first: order().slice(0, 12), renderMs: Number(d.body.dataset.renderMs),
                bodyCases: d.body.dataset.cases, title: d.title };
  const head = (key) => d.querySelector('th[data-key="' + key + '"] button');
  head("fit_dice").click();
  res.ascending = order().slice(0, 3);
  res.hashAscending = f.contentWindow.location.hash;
  res.sortAttribute = d.querySelector('th[data-key="fit_dice"]').getAttribute("aria-sort");
  head("fit_dice").click();
  res.descending = order().slice(0, 3);
  res.hashDescending = f.contentWindow.location.hash;
  const row = d.querySelector('#cases tbody tr[data-case="case_0001"]');
  res.links = [...row.querySelectorAll("a")].map((a) => a.getAttribute("href"));
  res.thumbnail = row.querySelector("img") ? row.querySelector("img").getAttribute("src") : null;
  const filter = d.getElementById("filter");
  filter.value = "rot90";
  filter.dispatchEvent(new Event("input"));
  setTimeout(() => {
    res.filtered = order();
    res.shown = d.getElementById("shown").textContent;
    document.getElementById("out").textContent = JSON.stringify(res);
  }, 400);
};
</script>
)html";

TEST(QaPageInBrowser, ChromiumDrawsEveryCaseSortsByAClickedColumnFiltersAndLinksRelativeFiles) {
  std::string where;
  if (run_command("command -v chromium", &where) != 0)
    GTEST_SKIP() << "chromium is not installed (apt-get install --no-install-recommends chromium): the QA page is "
                    "not tested in a browser";
  TempDir dir;
  const std::string out = dir.path();
  write_png(RgbImage(64, 32, {200, 40, 40}), out + "/case_0001_0000_preview.png");
  QaPageInfo info;
  info.title = "ctarr crop: 1000 cases, region liver";
  info.previews["case_0001"] = out + "/case_0001_0000_preview.png";
  const std::string page = qa_page_html(synthetic_rows(out), out + "/summary.html", info);
  std::ofstream(out + "/summary.html") << page;
  std::ofstream(out + "/harness.html") << kHarness;

  std::string dom;
  const std::string browser = "chromium --headless=new --no-sandbox --disable-gpu --allow-file-access-from-files "
                              "--virtual-time-budget=20000 ";
  ASSERT_EQ(run_command("timeout 120 " + browser + "--dump-dom 'file://" + out + "/harness.html' 2>/dev/null", &dom), 0)
      << dom.substr(0, 2000);
  const std::size_t a = dom.find("<pre id=\"out\">"), b = dom.find("</pre>", a);
  ASSERT_NE(a, std::string::npos) << dom.substr(0, 2000);
  const std::string text = dom.substr(a + 14, b - a - 14);
  ASSERT_NE(text, "pending") << "the harness never saw the page load";
  const json r = json::parse(text);

  EXPECT_EQ(r.at("rows"), kCases);
  EXPECT_EQ(r.at("bodyCases"), std::to_string(kCases));
  EXPECT_EQ(r.at("title"), info.title);
  // failed cases first (0, 97, ..., 970: 11 of them), then warned ones by case id
  std::vector<std::string> expected;
  for (int n = 0; n < kCases; n += 97) expected.push_back(case_id(n));
  expected.push_back("case_0007");  // the first warned case (every 7th; 0 is failed)
  EXPECT_EQ(r.at("first").get<std::vector<std::string>>(), expected);
  // a click sorts by fit Dice (ascending: failed cases have none and go last), a second click reverses it
  EXPECT_EQ(r.at("ascending").get<std::vector<std::string>>(), (std::vector<std::string>{"case_0001", "case_0002", "case_0003"}));
  EXPECT_EQ(r.at("hashAscending"), "#sort=fit_dice");
  EXPECT_EQ(r.at("sortAttribute"), "ascending");
  EXPECT_EQ(r.at("descending").get<std::vector<std::string>>(), (std::vector<std::string>{"case_0999", "case_0998", "case_0997"}));
  EXPECT_EQ(r.at("hashDescending"), "#sort=-fit_dice");
  // links relative to the page: preview, record, crop
  EXPECT_EQ(r.at("thumbnail"), "case_0001_0000_preview.png");
  EXPECT_EQ(r.at("links").get<std::vector<std::string>>(),
            (std::vector<std::string>{"case_0001_0000_preview.png", "records/case_0001_liver.json", "imagesTr/case_0001_0000.nii.gz"}));
  // the filter keeps the cases whose orientation is rot90 (every 50th but case 0, which failed)
  std::vector<std::string> lying;
  for (int n = 50; n < kCases; n += 50)
    if (n % 97 != 0) lying.push_back(case_id(n));
  std::vector<std::string> filtered = r.at("filtered").get<std::vector<std::string>>();
  std::sort(filtered.begin(), filtered.end());
  EXPECT_EQ(filtered, lying);
  EXPECT_EQ(r.at("shown"), std::to_string(lying.size()) + " of 1000 cases shown");
  std::printf("QA page of %d cases: %zu bytes, drawn in %.0f ms (table built by the page's script, headless Chromium)\n",
              kCases, page.size(), r.at("renderMs").get<double>());

  // and a screenshot shows it (the table and the thumbnail are drawn: the image is far from blank)
  std::string log;
  ASSERT_EQ(run_command("timeout 120 " + browser + "--hide-scrollbars --window-size=1400,900 --screenshot='" + out +
                            "/shot.png' 'file://" + out + "/summary.html' 2>&1", &log), 0) << log;
  std::ifstream shot(out + "/shot.png", std::ios::binary | std::ios::ate);
  EXPECT_GT(static_cast<long>(shot.tellg()), 20000L) << log;
}

}  // namespace
}  // namespace ctarr::test
