#include "ctarr/batch.hpp"

#include "ctarr/error.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <numeric>
#include <set>

namespace ctarr::test {
namespace {

TEST(Shard, ParsesZeroBasedIndexOverCount) {
  const Shard s = parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(parse_shard("0/1").count, 1);
}

TEST(Shard, RejectsMalformedAndOutOfRangeShardsAsUsage) {
  for (const char* bad : {"", "3", "1/0", "4/4", "5/4", "-1/4", "a/4", "1/b", "1/4/2", " 1/4"}) {
    try {
      parse_shard(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Usage) << bad;
      EXPECT_NE(std::string(e.what()).find("0-based"), std::string::npos) << e.what();
    }
  }
}

TEST(Shard, ShardsPartitionTheSortedListDeterministicallyAndEvenly) {
  std::vector<int> cases(23);
  std::iota(cases.begin(), cases.end(), 0);
  for (int count : {1, 2, 3, 4, 7, 23, 30}) {
    std::multiset<int> seen;
    std::size_t smallest = cases.size(), largest = 0;
    for (int index = 0; index < count; ++index) {
      const std::vector<int> part = select_shard(cases, Shard{index, count});
      EXPECT_EQ(part, select_shard(cases, Shard{index, count}));  // deterministic
      EXPECT_TRUE(std::is_sorted(part.begin(), part.end()));
      seen.insert(part.begin(), part.end());
      smallest = std::min(smallest, part.size());
      largest = std::max(largest, part.size());
    }
    EXPECT_EQ(seen, std::multiset<int>(cases.begin(), cases.end())) << count << " shards: every case exactly once";
    EXPECT_LE(largest - smallest, 1u) << count;
  }
  EXPECT_EQ(select_shard(cases, Shard{1, 4}), (std::vector<int>{1, 5, 9, 13, 17, 21}));
}

TEST(StopOnSignals, ASignalBecomesAStopRequestAndTheOldHandlerComesBack) {
  {
    StopOnSignals guard;
    EXPECT_EQ(stop_signal(), 0);
    std::raise(SIGTERM);  // would end the test binary without the guard
    EXPECT_EQ(stop_signal(), SIGTERM);
  }
  struct sigaction now {};
  sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
  clear_stop_request();
  EXPECT_EQ(stop_signal(), 0);
}

TEST(Progress, LineShowsCountsAndEta) {
  BatchProgress p;
  p.done = 3;
  p.total = 12;
  p.failed = 1;
  p.eta_s = 125.0;
  p.current = "case_004";
  const std::string line = progress_line(p, 12);
  EXPECT_EQ(line.substr(0, 15), "[###.........] ");
  EXPECT_NE(line.find("3/12"), std::string::npos) << line;
  EXPECT_NE(line.find("1 failed"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 2m05s"), std::string::npos) << line;
  EXPECT_NE(line.find("case_004"), std::string::npos) << line;
  EXPECT_EQ(format_duration(3725.0), "1h02m");
  EXPECT_EQ(format_duration(-1.0), "?");
}

}  // namespace
}  // namespace ctarr::test
