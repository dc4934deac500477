#include "ctarr/batch.hpp"

#include "ctarr/error.hpp"

#include "../../src/temp_files.hpp"  // private to the library, tested directly
#include "support/support.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
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

// In a child process: a file registered as being written, a first SIGINT (a stop request), a second SIGINT: the
// file is gone and the child died of SIGINT. An unregistered file beside it stays.
TEST(StopOnSignals, ASecondSignalRemovesTheFilesBeingWrittenAndKills) {
  TempDir dir;
  const std::string in_flight = dir.file(".liver.tmp123_0.nii.gz"), finished = dir.file("done.nii.gz");
  std::ofstream(in_flight) << "partial";
  std::ofstream(finished) << "complete";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StopOnSignals guard;
    const TempFileGuard writing(in_flight.c_str());
    std::raise(SIGINT);
    if (stop_signal() != SIGINT) _exit(3);
    std::raise(SIGINT);
    _exit(4);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_EQ(WTERMSIG(status), SIGINT);
  EXPECT_FALSE(std::filesystem::exists(in_flight));
  EXPECT_TRUE(std::filesystem::exists(finished));
}

TEST(TempFiles, SlotsAreReusedAndOverlongPathsAreNotRegistered) {
  std::vector<int> slots;
  for (int n = 0; n < 64; ++n) slots.push_back(register_temp_file("/tmp/x"));
  EXPECT_EQ(std::count(slots.begin(), slots.end(), -1), 0);
  EXPECT_EQ(register_temp_file("/tmp/one-too-many"), -1);
  unregister_temp_file(slots[10]);
  EXPECT_EQ(register_temp_file("/tmp/y"), slots[10]);
  for (int s : slots) unregister_temp_file(s);
  EXPECT_EQ(register_temp_file(std::string(5000, 'a').c_str()), -1);
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
