// The CPU thread default under a container's CPU limit (core/host_info.hpp).
#include <doctest/doctest.h>

#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/host_info.hpp"
#include "file_test_util.hpp"
#include "runner/runner.hpp"

namespace fs = std::filesystem;
using namespace ab;

using ab::test::write_text_file;

TEST_SUITE("host") {

TEST_CASE("cgroup CPU limits are parsed, and 'no limit' is none") {
  CHECK(parse_cgroup_v2_cpu_max("200000 100000\n").value() == doctest::Approx(2.0));
  CHECK(parse_cgroup_v2_cpu_max("150000 100000").value() == doctest::Approx(1.5));
  CHECK_FALSE(parse_cgroup_v2_cpu_max("max 100000"));
  CHECK_FALSE(parse_cgroup_v2_cpu_max(""));
  CHECK_FALSE(parse_cgroup_v2_cpu_max("200000"));
  CHECK_FALSE(parse_cgroup_v2_cpu_max("0 100000"));
  CHECK_FALSE(parse_cgroup_v2_cpu_max("12x 100000"));
  CHECK(parse_cgroup_v1_cpu_quota("400000\n", "100000\n").value() == doctest::Approx(4.0));
  CHECK_FALSE(parse_cgroup_v1_cpu_quota("-1", "100000"));
  CHECK_FALSE(parse_cgroup_v1_cpu_quota("50000", "0"));
  CHECK_FALSE(parse_cgroup_v1_cpu_quota("", "100000"));
}

TEST_CASE("the tightest limit on the way up from this process's cgroup is found") {
  // A fake /sys/fs/cgroup holding both layouts, so the test means the same under cgroup v1
  // (this process's "cpu" line) and v2 (its "0::" line): the limit sits at each hierarchy's
  // root, which every path walks up to.
  const fs::path root = fs::temp_directory_path() / ("attn-cgroup-" + std::to_string(getpid()));
  fs::remove_all(root);
  CHECK_FALSE(cgroup_cpu_limit(root.string()));  // nothing readable: no limit
  write_text_file(root / "cgroup.controllers", "cpu memory\n");
  write_text_file(root / "cpu.max", "250000 100000\n");
  write_text_file(root / "cpu" / "cpu.cfs_quota_us", "250000\n");
  write_text_file(root / "cpu" / "cpu.cfs_period_us", "100000\n");
  CHECK(cgroup_cpu_limit(root.string()).value() == doctest::Approx(2.5));
  write_text_file(root / "cpu.max", "max 100000\n");
  write_text_file(root / "cpu" / "cpu.cfs_quota_us", "-1\n");
  CHECK_FALSE(cgroup_cpu_limit(root.string()));
  fs::remove_all(root);
}

TEST_CASE("the thread default: explicit counts win, else OMP_NUM_THREADS, else the CPUs under the limit") {
  const int before = omp_get_max_threads();  // restored below: later tests share the process
  const ThreadDefault d = default_cpu_threads();
  CHECK(d.threads >= 1);
  CHECK_FALSE(d.source.empty());
  std::string source;
  CHECK(apply_cpu_threads(3, "--threads", &source) == 3);
  CHECK(source == "--threads");
  CHECK(omp_get_max_threads() == 3);
  if (!std::getenv("OMP_NUM_THREADS")) {
    CHECK(apply_cpu_threads(0, "--threads", &source) == d.threads);
    CHECK(source == d.source);
  }
  omp_set_num_threads(before);
}

}  // TEST_SUITE
