// Every registered variant (src/variants/registry.hpp) on every backend this build and machine
// offer (tests/backend_test_util.hpp: cpu, fake, cuda with a GPU), in each of its modes, on a
// small odd problem: prefill causal N = 301, or a 3-step decode over a 301-token cache, GQA 3.
// A supported case plans and runs (execution/execute.hpp); its output must match the variant's
// reference_row on sampled rows within the accuracy metric's tolerance (metrics/accuracy.cpp's
// rule), and on the fake device it must equal the CPU's output bit for bit (the same CPU ops
// behind device memory; compared with bt::AlignedCpu, the CPU's ops on 64-byte-aligned memory
// as the fake's host copies are, since the CPU kernels' last bits depend on alignment). An
// unsupported case records the backend's reason.
//
// Each non-CPU case runs in a child process (this binary re-executed on one job), so that a
// variant that reads the fake device's memory from the host — a segmentation fault by design
// (PROT_NONE) — fails its own case instead of the whole suite.
//
// kVariantsNotYetOnOps lists the variants known to fail on the fake device today (they read
// host copies or call kernels on backend tensors in plan()/run()). The test fails when a
// variant outside the list fails on any backend, and when a listed variant no longer fails on
// the fake device, so the list shrinks as variants move onto Backend ops (docs/architecture.md).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backend_test_util.hpp"
#include "core/errors.hpp"
#include "execution/execute.hpp"
#include "variants/registry.hpp"
#include "workloads/workloads.hpp"

namespace {

using namespace ab;
using Params = std::map<std::string, ParamValue>;

// Variants allowed to fail on the fake device, with why: empty, as every registered variant
// plans and runs through Backend ops. A variant added here must say why; the test fails when a
// listed variant passes (or is skipped) on the fake device, so the list cannot go stale.
// (A variant the CPU runs and the fake device refuses counts as failing there: the fake device
// answers what the CPU answers for device memory, so the refusal names host memory or a
// backend check by name.)
const std::map<std::string, std::string> kVariantsNotYetOnOps = {
};

// Variants whose every op has a CUDA kernel: on a machine with a GPU they must run there, not
// be skipped (a skip would hide a routing regression behind a refusal), except for the reasons
// named here, each an op the CUDA backend lacks.
const std::set<std::string> kMustRunOnCuda = {"gated", "lama", "positional", "act", "sigmoid", "mha"};
const std::map<std::string, std::string> kCudaSkipAllowed = {
    // Its sink and non-sink passes are op 1 under a key-set mask predicate (act_sinks /
    // act_non_sinks), which the CUDA prefill kernel does not take.
    {"act", "mask predicate"},
};

// Parameters that make the selection variants select (not every key) on these small problems
// (the budgets of test_sparse_prefill_variants.cpp and test_sparse_decode_variants.cpp).
Params params_for(const std::string& name) {
  static const std::map<std::string, Params> p = {
      {"proxyattn", {{"block", int64_t{32}}, {"min_budget", int64_t{0}}}},
      {"anchor", {{"block", int64_t{16}}, {"step", int64_t{4}}, {"theta", 3.0}}},
      {"sale", {{"block_k", int64_t{16}}, {"local_window", int64_t{32}}, {"block_seg", int64_t{64}}, {"tau", 0.05}}},
      {"dhsa", {{"budget", int64_t{128}}, {"block", int64_t{64}}, {"local_tokens", int64_t{32}}, {"global_tokens", int64_t{32}}}},
      {"hyperattention",
       {{"min_seq_len", int64_t{128}}, {"block_size", int64_t{32}}, {"sample_size", int64_t{32}}, {"lsh_num_projs", int64_t{3}}}},
      {"sea", {{"k", int64_t{3}}, {"width", int64_t{32}}, {"row_group", int64_t{32}}}},
      {"vtc_cls", {{"token_num", int64_t{64}}}},
      {"tokenselect", {{"top_k", int64_t{32}}, {"n_init", int64_t{4}}, {"n_local", int64_t{16}}}},
      {"recycled", {{"recycle_k", int64_t{32}}, {"stride", int64_t{2}}}},
      {"spatten", {{"important", int64_t{32}}, {"start", int64_t{2}}, {"recent", int64_t{8}}}},
      {"landmark", {{"top_k", int64_t{2}}, {"block_size", int64_t{16}}}},
      {"kinetics", {{"topk_blocks", int64_t{4}}, {"block_size", int64_t{8}}, {"sinks", int64_t{2}}, {"local", int64_t{8}}}},
      {"infiniretri", {{"keep", int64_t{64}}, {"chunk", int64_t{128}}, {"conv", int64_t{3}}}},
      {"retrieval", {{"top_k", int64_t{32}}, {"n_init", int64_t{4}}, {"n_local", int64_t{16}}, {"index_queries", int64_t{64}}}},
  };
  auto it = p.find(name);
  return it == p.end() ? Params{} : it->second;
}

Problem problem_for(Mode mode, DType dtype) {
  Problem p;
  p.batch = 1;
  p.heads = 6;
  p.kv_heads = 2;
  // The GPU's kernels take d 64 and 128 (docs/gpu.md): its bf16 run uses 64, the others 32.
  p.head_dim = p.v_dim = dtype == DType::bf16 ? 64 : 32;
  p.causal = true;
  p.mode = mode;
  p.dtype = dtype;
  if (mode == Mode::prefill) {
    p.q_len = p.kv_len = 301;
  } else {
    p.q_len = 1;
    p.kv_len = 301;
    p.steps = 3;
  }
  return p;
}

enum class Status { ok, skipped, failed };
const char* status_name(Status s) { return s == Status::ok ? "ok" : s == Status::skipped ? "skipped" : "FAILED"; }
struct Outcome {
  Status status = Status::ok;
  std::string detail;
};

struct OneThread {  // small problems; the shared 2-core machine (test_sparse_decode_variants.cpp)
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

// The accuracy metric's rule (metrics/accuracy.cpp) on rows spread over the output.
std::string accuracy_failure(Variant& v, const Inputs& in, const HostRun& run, bool gpu) {
  const AttnShape& s = in.shape;
  const int64_t heads = int64_t(s.batch) * s.q_heads, rows = std::min<int64_t>(24, heads * s.q_len);
  const int dv = int(run.o.shape[3]);
  std::vector<double> ref(size_t(std::max(dv, s.v_dim)));
  double max_abs = 0, err2 = 0, ref2 = 0, lse_err = 0, ref_scale = 0;
  bool nonfinite = false;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t bh = r % heads;
    const int b = int(bh / s.q_heads), h = int(bh % s.q_heads);
    const int64_t i = rows == 1 ? s.q_len - 1 : (r * (s.q_len - 1)) / (rows - 1);
    double ref_lse = 0;
    v.reference_row(in, run.plan, b, h, i, ref.data(), &ref_lse);
    const float* got = run.o.row(b, h, i);
    for (int c = 0; c < dv; ++c) {
      nonfinite |= !std::isfinite(got[c]);
      const double e = std::fabs(double(got[c]) - ref[size_t(c)]);
      max_abs = std::max(max_abs, e);
      err2 += e * e;
      ref2 += ref[size_t(c)] * ref[size_t(c)];
      ref_scale = std::max(ref_scale, std::fabs(ref[size_t(c)]));
    }
    if (!std::isnan(ref_lse)) {
      const double g = run.lse.row(b, h, i)[0];
      if (std::isinf(ref_lse)) lse_err = std::max(lse_err, (std::isinf(g) && g < 0) ? 0.0 : INFINITY);
      else lse_err = std::max(lse_err, std::isfinite(g) ? std::fabs(g - ref_lse) : INFINITY);
    }
  }
  Tolerance tol = tolerance_for(s.dtype, gpu);
  double v_scale = 0;
  for (float x : in.host->v.data) v_scale = std::max(v_scale, double(std::fabs(x)));
  const double growth = v_scale > 0 ? std::max(1.0, ref_scale / v_scale) : 1.0;
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  std::ostringstream why;
  if (nonfinite) why << "non-finite output; ";
  if (max_abs > tol.max_abs * growth) why << "max |o - ref| " << max_abs << " > " << tol.max_abs * growth << "; ";
  if (rel > tol.rel) why << "rel " << rel << " > " << tol.rel << "; ";
  if (lse_err > tol.max_abs) why << "max |lse - ref| " << lse_err << "; ";
  return why.str();
}

struct Case {
  std::unique_ptr<Variant> v;
  AttnShape shape;
  std::shared_ptr<HostInputs> host;
};

// Builds the variant's case; returns a skip reason when its parameters refuse the problem.
std::string make_case(const std::string& name, Mode mode, DType dtype, uint32_t seed, Case& c) {
  const RegistryEntry* e = find_variant(name);
  REQUIRE_MESSAGE(e, name);
  c.v = e->make(resolve_params(e->info, params_for(name)));
  // The problem, or the nearest one the variant accepts: non-causal (vision-token variants),
  // then a single decode step (variants without multi-step decode).
  std::string refusal;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt == 2 && mode == Mode::prefill) break;
    Problem p = problem_for(mode, dtype);
    if (attempt == 1) p.causal = false;
    if (attempt == 2) p.steps = 1;
    try {
      c.shape = c.v->shape(p);
      refusal.clear();
      break;
    } catch (const InputError& err) {
      if (refusal.empty()) refusal = std::string("shape: ") + err.what();
    }
  }
  if (!refusal.empty()) return refusal;
  auto gen = [&](const AttnShape& s) { return generate_gaussian(s, {{"std", 1.0}}, seed); };
  c.host = std::make_shared<HostInputs>(gen(c.shape));
  add_prompt_queries(*c.v, c.shape, [&](const AttnShape& s) { return generate_gaussian(s, {{"std", 1.0}}, seed ^ 0x9e37u); },
                     *c.host);
  c.v->prepare_inputs(c.shape, *c.host, seed ^ 0xe7);
  return "";
}

// One variant, mode and backend: supports, plan + run, accuracy, and (fake) the CPU's bits.
Outcome evaluate(const std::string& name, Mode mode, const std::string& backend, uint32_t seed) {
  OneThread one;
  // The GPU runs bf16 (its kernels' type); the CPU and the fake device fp32.
  const DType dtype = backend == "cuda" ? DType::bf16 : DType::f32;
  Case c;
  if (std::string why = make_case(name, mode, dtype, seed, c); !why.empty()) return {Status::skipped, why};
  auto be = bt::make_named(backend);
  const Support sup = c.v->supports(c.shape, *be);
  if (!sup.ok) return {Status::skipped, sup.reason};
  HostRun run;
  try {
    run = run_once(*c.v, *be, c.shape, c.host);
  } catch (const std::exception& e) {
    return {Status::failed, std::string("threw: ") + e.what()};
  }
  Inputs in;
  in.shape = c.shape;
  in.host = c.host;
  if (std::string why = accuracy_failure(*c.v, in, run, backend == "cuda"); !why.empty())
    return {Status::failed, "accuracy: " + why};
  if (backend == "fake") {
    Case cc;
    make_case(name, mode, dtype, seed, cc);
    bt::AlignedCpu cpu;  // the CPU's ops on 64-byte-aligned memory, as the fake's copies are
    const HostRun want = run_once(*cc.v, cpu, cc.shape, cc.host);
    size_t where = 0;
    if (!bt::bit_equal(run.o.data, want.o.data, &where))
      return {Status::failed, "o differs from the CPU's at element " + std::to_string(where)};
    if (!bt::bit_equal(run.lse.data, want.lse.data, &where))
      return {Status::failed, "lse differs from the CPU's at element " + std::to_string(where)};
    if (run.plan.density != want.plan.density) return {Status::failed, "plan density differs from the CPU's"};
  }
  return {Status::ok, ""};
}

const char* kChildCase = "every backend child job";
const char* kJobEnv = "ATTN_EVERY_BACKEND_JOB";

std::string signal_text(int sig) {
  if (sig == SIGSEGV || sig == SIGBUS)
    return "crashed (" + std::string(strsignal(sig)) + "): a host access to backend memory (in.host copies are "
           "fine; TensorRef data of a device is not host memory)";
  if (sig == SIGALRM) return "timed out (120 s)";
  return "crashed (" + std::string(strsignal(sig)) + ")";
}

// evaluate() in a child process (this test binary, re-executed on one job).
Outcome evaluate_isolated(const std::string& name, Mode mode, const std::string& backend, uint32_t seed) {
  char path[] = "/tmp/attn_every_backend_XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  const std::string job = name + "|" + std::string(mode_name(mode)) + "|" + backend + "|" + std::to_string(seed) + "|" + path;
  const std::string filter = std::string("--test-case=") + kChildCase;
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv(kJobEnv, job.c_str(), 1);
    const int null = open("/dev/null", O_WRONLY);  // the result goes to the file
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    const char* argv[] = {"attn_tests", filter.c_str(), "--no-intro", "--no-version", "--minimal", nullptr};
    execv("/proc/self/exe", const_cast<char* const*>(argv));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  Outcome out;
  std::ifstream f(path);
  std::string word;
  if (WIFSIGNALED(status)) {
    out = {Status::failed, signal_text(WTERMSIG(status))};
  } else if (f >> word) {
    std::getline(f, out.detail);
    if (!out.detail.empty() && out.detail[0] == ' ') out.detail.erase(0, 1);
    out.status = word == "ok" ? Status::ok : word == "skipped" ? Status::skipped : Status::failed;
  } else {
    out = {Status::failed, "the child exited with status " + std::to_string(WEXITSTATUS(status)) + " and no result"};
  }
  std::remove(path);
  return out;
}

}  // namespace

// Runs one job when this binary was re-executed by the test below; a no-op otherwise.
TEST_CASE("every backend child job") {
  const char* job = std::getenv(kJobEnv);
  if (!job) return;
  std::vector<std::string> f;
  std::stringstream ss(job);
  for (std::string part; std::getline(ss, part, '|');) f.push_back(part);
  REQUIRE(f.size() == 5);
  alarm(120);
  const Outcome o = evaluate(f[0], f[1] == "decode" ? Mode::decode : Mode::prefill, f[2], uint32_t(std::stoul(f[3])));
  std::ofstream out(f[4]);
  out << (o.status == Status::ok ? "ok" : o.status == Status::skipped ? "skipped" : "FAILED") << " " << o.detail << "\n";
}

TEST_CASE("every variant on every backend: supported cases match their reference, the fake device the CPU's bits") {
  if (std::getenv(kJobEnv)) return;  // a child
  const uint32_t seed = bt::test_seed();
  INFO("seed " << seed);
  std::vector<std::string> skipped_backends;
  const std::vector<std::string> backends = bt::backend_names(&skipped_backends);
  for (const std::string& s : skipped_backends) MESSAGE("every backend: skipped " << s);

  std::map<std::string, bool> fake_failed;  // variant -> failed on the fake device in some mode
  std::ostringstream table;
  table << "variant × backend (mode): ok / skipped(reason) / FAILED(why)\n";
  int unexpected = 0;
  for (const RegistryEntry& e : registry()) {
    const std::string& name = e.info.name;
    for (Mode mode : e.info.modes) {
      Status on_cpu = Status::ok;
      for (const std::string& be : backends) {
        Outcome o = be == "cpu" ? evaluate(name, mode, be, seed) : evaluate_isolated(name, mode, be, seed);
        if (be == "cpu") on_cpu = o.status;
        if (be == "fake" && on_cpu == Status::ok && o.status == Status::skipped)
          o = {Status::failed, "refused on the fake device but runs on the CPU: " + o.detail};
        if (be == "cuda" && on_cpu == Status::ok && o.status == Status::skipped && kMustRunOnCuda.count(name)) {
          auto allowed = kCudaSkipAllowed.find(name);
          if (allowed == kCudaSkipAllowed.end() || o.detail.find(allowed->second) == std::string::npos)
            o = {Status::failed, "has CUDA kernels for every op but was skipped on cuda: " + o.detail};
        }
        table << "  " << name << " × " << be << " (" << mode_name(mode) << "): " << status_name(o.status)
              << (o.detail.empty() ? "" : " (" + o.detail + ")") << "\n";
        if (o.status != Status::failed) continue;
        if (be == "fake") fake_failed[name] = true;
        const bool known = be == "fake" && kVariantsNotYetOnOps.count(name);
        if (!known) {
          ++unexpected;
          FAIL_CHECK(name << " (" << mode_name(mode) << ") fails on " << be << ": " << o.detail);
        }
      }
    }
  }
  MESSAGE(table.str());
  for (const auto& [name, why] : kVariantsNotYetOnOps) {
    CHECK_MESSAGE(find_variant(name) != nullptr, "kVariantsNotYetOnOps names an unknown variant " << name);
    CHECK_MESSAGE(fake_failed.count(name), name << " no longer fails on the fake device: remove it from kVariantsNotYetOnOps");
  }
  CHECK(unexpected == 0);
}
