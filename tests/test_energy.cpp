// The energy metric (src/metrics/energy.cpp): counter arithmetic, the RAPL reader on a made-up
// powercap tree, and the metric end to end on the fake device's simulated 50 W counter. No
// real energy figure is checked here (no unit test can know the machine's power).
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "backends/backends.hpp"
#include "backends/cpu/rapl.hpp"
#include "core/device_services.hpp"
#include "file_test_util.hpp"
#include "core/errors.hpp"
#include "runner/runner.hpp"
#include "spec/spec.hpp"

namespace fs = std::filesystem;
using namespace ab;
using json = nlohmann::ordered_json;

using ab::test::write_text_file;

TEST_SUITE("energy") {

TEST_CASE("joules between readings: per domain, one wrap at most") {
  EnergyReading a{{10.0, 100.0}, {0.0, 262.0}, "x"}, b{{12.5, 3.0}, {0.0, 262.0}, "x"};
  CHECK(energy_between(a, b).value() == doctest::Approx(2.5 + (262.0 - 100.0 + 3.0)));
  // A counter that cannot wrap going backwards, or readings of other domains: no answer.
  CHECK_FALSE(energy_between(b, a));
  CHECK_FALSE(energy_between(a, EnergyReading{{1.0}, {0.0}, "x"}));
  CHECK_FALSE(energy_between(EnergyReading{}, EnergyReading{}));
}

TEST_CASE("RAPL: package zones summed, their subzones and other zones left out") {
  const fs::path root = fs::temp_directory_path() / ("attn-powercap-" + std::to_string(getpid()));
  fs::remove_all(root);
  std::string why;
  CHECK_FALSE(cpu::read_rapl_packages(&why, root.string()));
  CHECK(why.find("does not exist") != std::string::npos);
  write_text_file(root / "intel-rapl:0" / "name", "package-0\n");
  write_text_file(root / "intel-rapl:0" / "energy_uj", "1500000\n");
  write_text_file(root / "intel-rapl:0" / "max_energy_range_uj", "262143328850\n");
  write_text_file(root / "intel-rapl:0:0" / "name", "core\n");  // a part of package 0: not added again
  write_text_file(root / "intel-rapl:0:0" / "energy_uj", "900000\n");
  write_text_file(root / "intel-rapl:1" / "name", "package-1\n");
  write_text_file(root / "intel-rapl:1" / "energy_uj", "2500000\n");
  write_text_file(root / "intel-rapl:1" / "max_energy_range_uj", "262143328850\n");
  write_text_file(root / "intel-rapl:2" / "name", "psys\n");  // the platform: not a package
  write_text_file(root / "intel-rapl:2" / "energy_uj", "7000000\n");
  const auto r = cpu::read_rapl_packages(&why, root.string());
  REQUIRE(r);
  REQUIRE(r->joules.size() == 2);
  CHECK(r->joules[0] == doctest::Approx(1.5));
  CHECK(r->joules[1] == doctest::Approx(2.5));
  CHECK(r->wraps_at[0] == doctest::Approx(262143.32885 + 1e-6));
  fs::remove(root / "intel-rapl:1" / "energy_uj");  // root-only on most kernels: unreadable
  CHECK_FALSE(cpu::read_rapl_packages(&why, root.string()));
  CHECK(why.find("intel-rapl:1/energy_uj") != std::string::npos);
  fs::remove_all(root);
}

TEST_CASE("the metric: joules per call over a window of calls (fake device, simulated 50 W)") {
  const std::string spec = R"(device: fake
dtype: bf16
problem: {heads: 2, head_dim: 32, seq_len: 96, causal: true}
variants: [mha]
metrics: {energy: {min_time: 0.3}}
)";
  const Experiment ex = parse_experiment(spec, "energy.yaml", {});
  std::string note;
  auto be = make_backend("fake", &note);
  const json r = run_case(ex, ex.cases[0], *be, nullptr);
  REQUIRE(r["status"] == "ok");
  const json& e = r["metrics"]["energy"];
  CHECK(e["available"] == true);
  CHECK(e["source"].get<std::string>().find("simulated") != std::string::npos);
  CHECK(e["window_s"].get<double>() >= 0.3);
  CHECK(e["calls"].get<int64_t>() >= 1);
  CHECK(e["stop"] == "min_time");
  // The simulated counter draws 50 W and wraps every 64 J; the window's energy is its length
  // times 50 W, up to the gap between the clock reads and the counter reads.
  CHECK(e["watts"].get<double>() == doctest::Approx(50.0).epsilon(0.05));
  CHECK(e["joules_per_call"].get<double>() * double(e["calls"].get<int64_t>()) ==
        doctest::Approx(e["joules"].get<double>()));
  CHECK(e["tflop_per_joule"].get<double>() > 0);
  CHECK(e["warnings"].empty());

  // A window cut short by max_calls says so.
  const Experiment capped = parse_experiment(spec, "energy.yaml", {"metrics.energy.max_calls=2"});
  const json c = run_case(capped, capped.cases[0], *be, nullptr);
  REQUIRE(c["status"] == "ok");
  CHECK(c["metrics"]["energy"]["calls"] == 2);
  CHECK(c["metrics"]["energy"]["stop"] == "max_calls");
  CHECK_FALSE(c["metrics"]["energy"]["warnings"].empty());
}

TEST_CASE("the metric on a device without a counter it can read: recorded, the case stays ok") {
  const std::string spec = R"(problem: {heads: 2, head_dim: 32, seq_len: 64}
variants: [mha]
metrics: {energy: {min_time: 0.05}}
)";
  const Experiment ex = parse_experiment(spec, "energy.yaml", {});
  std::string note;
  auto be = make_backend("cpu", &note);
  const json r = run_case(ex, ex.cases[0], *be, nullptr);
  REQUIRE(r["status"] == "ok");
  const json& e = r["metrics"]["energy"];
  if (e["available"] == false) CHECK_FALSE(e["reason"].get<std::string>().empty());
  else CHECK(e["joules"].get<double>() >= 0);  // a machine whose RAPL counters this user may read
}

TEST_CASE("energy options are checked when the spec is loaded") {
  const std::string spec = "problem: {heads: 2, head_dim: 32, seq_len: 64}\nvariants: [mha]\nmetrics: {energy: {min_time: 0}}\n";
  CHECK_THROWS_WITH_AS(parse_experiment(spec, "e.yaml", {}), doctest::Contains("metrics.energy.min_time"), InputError);
  const std::string bad_key = "problem: {heads: 2, head_dim: 32, seq_len: 64}\nvariants: [mha]\nmetrics: {energy: {min_tim: 1}}\n";
  CHECK_THROWS_AS(parse_experiment(bad_key, "e.yaml", {}), InputError);
}

}  // TEST_SUITE
