// A test-only variant, "fault": dense SDPA (as mha) that misbehaves on request, for the tests
// of `run --isolate` and of the NaN checks (docs/reliability.md). Linked only into the test
// binary attn-bench-testing, never into attn-bench.
//   fault: none | segv | abort | hang | exit | nan | bad_address    what run() does
//   bad_address: runs the dense op once more with the output's address moved 1 TiB past its
//   allocation, so the backend itself faults: on a GPU an illegal-address error, which is
//   sticky (every later CUDA call of the process fails), on the CPU a segfault.
//   at_kv_len: only when problem.kv_len equals this (0 = every case)
#include <csignal>
#include <cstdlib>
#include <limits>
#include <memory>
#include <thread>

#include "core/errors.hpp"
#include "variants/registry.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

class FaultVariant final : public DenseSdpaVariant {
 public:
  explicit FaultVariant(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "fault";
    info_.family = "testing";
    info_.paper = "none (a test fixture)";
    info_.summary = "dense SDPA that crashes, aborts, hangs, exits or writes NaN on request (tests only)";
    info_.params = {{"fault", ParamType::string, std::string("none"), "what run() does wrong",
                     {"none", "segv", "abort", "hang", "exit", "nan", "bad_address"}},
                    {"at_kv_len", ParamType::integer, int64_t{0}, "misbehave only at this kv_len (0 = always)"}};
    info_.modes = {Mode::prefill, Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    DenseSdpaVariant::run(in, plan, out, b);
    const int64_t at = params_.integer("at_kv_len");
    if (at != 0 && at != in.shape.kv_len) return;
    const std::string& f = params_.string("fault");
    if (f == "segv") std::raise(SIGSEGV);
    if (f == "abort") std::abort();
    if (f == "exit") std::_Exit(7);
    if (f == "hang")
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    if (f == "bad_address") {
      Outputs wild = out;
      wild.o.data = static_cast<char*>(out.o.data) + (int64_t{1} << 40);
      DenseSdpaVariant::run(in, plan, wild, b);
      b.synchronize();
    }
    if (f == "nan") {
      HostTensor o = b.download(out.o);
      o.data[o.data.size() / 2] = std::numeric_limits<float>::quiet_NaN();
      b.upload(o, out.o);
    }
  }

 private:
  VariantInfo info_;
};

std::unique_ptr<Variant> make_fault(const ParamSet& p) { return std::make_unique<FaultVariant>(p); }

// Registered before main(): this object is linked into the executable itself, so its static
// initialiser runs (unlike one inside a static library).
const bool registered = (add_test_variant(&make_fault), true);

}  // namespace
}  // namespace ab
