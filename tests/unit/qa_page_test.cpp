#include "ctarr/qa_page.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace ctarr::test {
namespace {

using json = nlohmann::json;

CropSummary ok_row(const std::string& id, const std::string& out) {
  CropSummary s;
  s.case_id = id;
  s.region = "liver";
  s.input = "/data/imagesTr/" + id + "_0000.nii.gz";
  s.record = out + "/records/" + id + "_liver.json";
  s.fit_dice = 0.71;
  s.orientation = "rot90";
  s.orientation_searched = true;
  CropSummary::Box b;
  b.file = "../imagesTr/" + id + "_0000.nii.gz";  // crop files are stored relative to their record
  b.fraction_inside = 1.0;
  s.boxes.push_back(b);
  s.input_voxels = 1000;
  s.crop_voxels = 250;
  return s;
}

// The data the page embeds: the JSON between the data element's tags (with its escapes undone by the parser).
json embedded_data(const std::string& page) {
  const std::string open = "<script id=\"ctarr-data\" type=\"application/json\">";
  const std::size_t a = page.find(open);
  EXPECT_NE(a, std::string::npos);
  const std::size_t b = page.find("</script>", a);
  return json::parse(page.substr(a + open.size(), b - a - open.size()));
}

TEST(QaPage, LinksRecordsCropsAndPreviewsRelativeToThePageFolder) {
  const std::string out = "/tmp/ctarr-qa/out";
  QaPageInfo info;
  info.title = "ctarr crop: 1 case, region liver";
  info.command = "ctarr crop --dataset /data -r liver -o /tmp/ctarr-qa/out --preview";
  info.previews["c1"] = out + "/c1_0000_preview.png";
  const std::string page = qa_page_html({ok_row("c1", out)}, out + "/summary.html", info);
  const json d = embedded_data(page);
  ASSERT_EQ(d.at("rows").size(), 1u);
  const json& row = d["rows"][0];
  EXPECT_EQ(row.at("record"), "records/c1_liver.json");
  EXPECT_EQ(row.at("boxes")[0].at("file"), "imagesTr/c1_0000.nii.gz");
  EXPECT_EQ(row.at("orientation"), "rot90");
  EXPECT_DOUBLE_EQ(row.at("fit_dice").get<double>(), 0.71);
  EXPECT_EQ(d.at("previews").at("c1"), "c1_0000_preview.png");
  EXPECT_EQ(d.at("title"), info.title);
  EXPECT_EQ(d.at("command"), info.command);
}

TEST(QaPage, IsSelfContainedAndTextInTheDataCannotEndItsScriptElement) {
  CropSummary failed;
  failed.case_id = "</script><script>alert(1)</script><!--";
  failed.region = "liver";
  failed.input = "/data/x.nii.gz";
  failed.status = "failed";
  failed.error = "the atlas fit failed </script>";
  failed.error_code = 6;
  const std::string page = qa_page_html({failed}, "/tmp/out/summary.html", {});
  EXPECT_EQ(page.find("alert(1)</script>"), std::string::npos);
  EXPECT_EQ(page.find("/*CTARR_DATA*/"), std::string::npos) << "the data slot was not filled";
  // two script elements (the data, the code) and nothing loaded from elsewhere
  std::size_t scripts = 0;
  for (std::size_t at = page.find("</script>"); at != std::string::npos; at = page.find("</script>", at + 1)) ++scripts;
  EXPECT_EQ(scripts, 2u);
  for (const char* external : {"http:", "https:", "src=\"//", "href=\"//", "@import"})
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  const json d = embedded_data(page);
  EXPECT_EQ(d["rows"][0].at("case"), failed.case_id);
  EXPECT_EQ(d["rows"][0].at("error_code"), 6);
  EXPECT_EQ(d["rows"][0].at("record"), "");
}

TEST(QaPage, FileNamesThatAreNotUtf8DoNotStopThePage) {
  CropSummary s = ok_row("c2", "/tmp/out");
  s.input = "/data/sc\xff\xfe" "an.nii.gz";  // a Latin-1 file name
  s.warnings = {"read \xe9t\xe9"};
  std::string page;
  ASSERT_NO_THROW(page = qa_page_html({s}, "/tmp/out/summary.html", {}));
  const json d = embedded_data(page);
  EXPECT_NE(d["rows"][0].at("input").get<std::string>().find("\xef\xbf\xbd"), std::string::npos)  // U+FFFD
      << d["rows"][0].at("input");
}

}  // namespace
}  // namespace ctarr::test
