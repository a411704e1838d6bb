#include "runner/runner.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <regex>
#include <cmath>
#include <fstream>
#include <optional>

#include "backends/backends.hpp"
#include "core/errors.hpp"
#include "core/build_info.hpp"
#include "core/host_info.hpp"
#include "core/registry.hpp"
#include "core/report.hpp"
#include "metrics/metrics.hpp"
#include "runner/execute.hpp"
#include "runner/summary.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "workloads/workloads.hpp"

namespace ab {

using json = nlohmann::ordered_json;

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

json params_json(const ParamSet& p) {
  json j = json::object();
  for (const auto& [k, v] : p.values()) std::visit([&](const auto& x) { j[k] = x; }, v);
  return j;
}

std::string fmt_seconds(double s) {
  char buf[32];
  if (s < 90) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 5400) std::snprintf(buf, sizeof buf, "%.0fm%02.0fs", std::floor(s / 60), std::fmod(s, 60));
  else std::snprintf(buf, sizeof buf, "%.1fh", s / 3600);
  return buf;
}

// Test-only: ATTN_TEST_SLOWDOWN=VARIANT:FRACTION (e.g. mha:0.10) makes every run() of the
// variant of that name or label busy-wait FRACTION of the time the call itself took, inside
// the timed region: a real, calibrated slowdown to measure the CI gate's power against
// (docs/ci.md, "Checking the gate"). Read here only; a report made with it says so in
// meta.run.test_slowdown. Never set it for a measurement.
struct TestSlowdown {
  std::string variant;
  double fraction = 0;
};

const std::optional<TestSlowdown>& test_slowdown() {
  static const std::optional<TestSlowdown> value = []() -> std::optional<TestSlowdown> {
    const char* env = std::getenv("ATTN_TEST_SLOWDOWN");
    if (!env || !*env) return std::nullopt;
    const std::string s(env);
    const auto colon = s.rfind(':');
    char* end = nullptr;
    const double f = colon == std::string::npos ? 0 : std::strtod(s.c_str() + colon + 1, &end);
    if (colon == std::string::npos || colon == 0 || !end || *end != '\0' || !(f > 0 && f < 10))
      throw InputError("ATTN_TEST_SLOWDOWN='" + s + "': expected VARIANT:FRACTION, e.g. mha:0.10");
    return TestSlowdown{s.substr(0, colon), f};
  }();
  return value;
}

class SlowedVariant final : public Variant {
 public:
  SlowedVariant(std::unique_ptr<Variant> inner, double fraction)
      : inner_(std::move(inner)), fraction_(fraction) {}
  const VariantInfo& info() const override { return inner_->info(); }
  AttnShape shape(const Problem& p) const override { return inner_->shape(p); }
  void prepare_inputs(const AttnShape& s, HostInputs& in, uint64_t seed) const override {
    inner_->prepare_inputs(s, in, seed);
  }
  int64_t prompt_queries(const AttnShape& s) const override { return inner_->prompt_queries(s); }
  Shape4 output_shape(const AttnShape& s) const override { return inner_->output_shape(s); }
  Support supports(const AttnShape& s, const Backend& b) const override { return inner_->supports(s, b); }
  Cost cost(const AttnShape& s, const Plan* plan) const override { return inner_->cost(s, plan); }
  bool has_plan_phase() const override { return inner_->has_plan_phase(); }
  Plan plan(const Inputs& in, Backend& b) override { return inner_->plan(in, b); }
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    const auto t0 = std::chrono::steady_clock::now();
    inner_->run(in, plan, out, b);
    b.synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    const auto until = t1 + std::chrono::duration_cast<std::chrono::steady_clock::duration>((t1 - t0) * fraction_);
    while (std::chrono::steady_clock::now() < until) {
    }
  }
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override {
    inner_->reference_row(in, plan, b, h, i, o, lse);
  }

 private:
  std::unique_ptr<Variant> inner_;
  double fraction_;
};

}  // namespace

json problem_json(const Problem& p) {
  json j = {{"batch", p.batch},       {"heads", p.heads},   {"kv_heads", p.kv_heads},
            {"head_dim", p.head_dim}, {"v_dim", p.v_dim},   {"q_len", p.q_len},
            {"kv_len", p.kv_len},     {"causal", p.causal}, {"mode", std::string(mode_name(p.mode))},
            {"dtype", std::string(dtype_name(p.dtype))},    {"key", p.key()}};
  if (p.steps > 1) j["steps"] = p.steps;  // multi-step decode only (docs/decode.md)
  return j;
}

json shape_json(const AttnShape& s) {
  json j = {{"batch", s.batch},   {"q_heads", s.q_heads}, {"kv_heads", s.kv_heads},
            {"head_dim", s.head_dim}, {"v_dim", s.v_dim}, {"q_len", s.q_len},
            {"kv_len", s.kv_len}, {"causal", s.causal}};
  if (s.steps > 1) j["steps"] = s.steps;
  return j;
}

std::vector<const Case*> select_cases(const Experiment& ex, const std::string& filter) {
  std::vector<const Case*> out;
  std::regex re;
  if (!filter.empty()) {
    try {
      re = std::regex(filter, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw InputError("--filter '" + filter + "': not a valid regular expression: " + e.what());
    }
  }
  for (const auto& c : ex.cases)
    if (filter.empty() || std::regex_search(c.id, re)) out.push_back(&c);
  return out;
}

json run_case(const Experiment& ex, const Case& c, Backend& backend,
              const std::function<bool()>& interrupted) {
  json r;
  r["id"] = c.id;
  r["variant"] = c.variant.name;
  r["label"] = c.variant.label;
  if (const RegistryEntry* e = find_variant(c.variant.name))
    r["fidelity"] = {{"level", fidelity_name(e->info.fidelity.level)}, {"reason", e->info.fidelity.reason}};
  r["params"] = params_json(c.variant.params);
  r["problem"] = problem_json(c.problem);
  r["shape"] = nullptr;
  r["backend"] = backend.name();
  r["status"] = "ok";
  r["reason"] = "";
  r["metrics"] = json::object();
  try {
    const RegistryEntry* entry = find_variant(c.variant.name);
    std::unique_ptr<Variant> variant = entry->make(c.variant.params);
    if (const auto& slow = test_slowdown(); slow && (slow->variant == c.variant.name || slow->variant == c.variant.label))
      variant = std::make_unique<SlowedVariant>(std::move(variant), slow->fraction);
    const AttnShape shape = variant->shape(c.problem);
    r["shape"] = shape_json(shape);
    const Support sup = variant->supports(shape, backend);
    if (!sup.ok) {
      r["status"] = "skipped";
      r["reason"] = sup.reason;
      return r;
    }
    // Inputs: one host copy, `copies` backend copies to rotate through while timing.
    const WorkloadDef* wl = find_workload(ex.input["kind"].get<std::string>());
    auto host = std::make_shared<HostInputs>(
        wl->generate(shape, ex.input, input_seed(ex.seed, c.problem.key())));
    const int64_t in_bytes = (host->q.numel() + host->k.numel() + host->v.numel()) * dtype_bytes(shape.dtype);
    CacheMode cache = CacheMode::hot;
    if (ex.metrics.contains("latency") && ex.metrics["latency"].value("cache", std::string("hot")) == "cold")
      cache = CacheMode::cold;
    add_prompt_queries(*variant, shape, [&](const AttnShape& p) {
      return wl->generate(p, ex.input, input_seed(ex.seed, c.problem.key()));
    }, *host);
    variant->prepare_inputs(shape, *host, input_seed(ex.seed, c.problem.key()) ^ 0xe7);
    const int copies = ex.metrics.contains("latency") ? std::max(1, backend.rotation_copies(in_bytes, cache)) : 1;
    Execution exe = prepare_execution(*variant, backend, shape, host, copies);
    plan_and_run(*variant, backend, exe);
    std::vector<Inputs>& rotation = exe.rotation;
    std::vector<Plan>& plans = exe.plans;
    Outputs& out = exe.out;

    for (auto it = ex.metrics.begin(); it != ex.metrics.end(); ++it) {
      const MetricDef* def = find_metric(it.key());
      MetricContext ctx{ex, c, *variant, backend, rotation[0], plans[0], out, it.value(), interrupted,
                        &rotation, &plans, &out};
      json m;
      try {
        m = def->measure(ctx);
      } catch (const std::exception& e) {
        r["status"] = "failed";
        r["reason"] = "metric " + it.key() + ": " + e.what();
        break;
      }
      const bool failed = m.is_object() && m.contains("pass") && m["pass"].is_boolean() && !m["pass"].get<bool>();
      r["metrics"][it.key()] = std::move(m);
      if (failed && r["status"] == "ok") {
        r["status"] = "failed";
        const json& mm = r["metrics"][it.key()];
        r["reason"] = it.key() + " out of tolerance: " + mm.dump();
      }
      if (interrupted && interrupted()) break;
    }
    backend.release_all();
  } catch (const std::exception& e) {
    backend.release_all();
    r["status"] = "failed";
    r["reason"] = e.what();
  }
  return r;
}

int run_experiment(const Experiment& ex, const RunOptions& opts) {
  std::vector<const Case*> cases = select_cases(ex, opts.filter);
  if (!opts.filter.empty() && cases.empty())
    throw InputError("--filter '" + opts.filter + "' matches none of the spec's " +
                     std::to_string(ex.cases.size()) + " case ids (e.g. '" +
                     (ex.cases.empty() ? std::string() : ex.cases.front().id) + "')");
  // A fixed order puts each case after the same neighbour every run; a shuffled one spreads
  // what a neighbour leaves behind (cache, clocks) over all cases (docs/ci.md).
  if (opts.shuffle_seed >= 0)
    std::shuffle(cases.begin(), cases.end(), std::mt19937_64(static_cast<uint64_t>(opts.shuffle_seed)));
  test_slowdown();  // a malformed ATTN_TEST_SLOWDOWN is bad input before anything runs
  const std::string device = opts.device.empty() ? ex.device : opts.device;

  if (!opts.emit_cases.empty()) {
    json doc;
    doc["spec"] = ex.path;
    doc["cases"] = json::array();
    for (const Case* c : cases) {
      const RegistryEntry* entry = find_variant(c->variant.name);
      auto v = entry->make(c->variant.params);
      const AttnShape s = v->shape(c->problem);
      json jc = {{"id", c->id}, {"variant", c->variant.name}, {"label", c->variant.label},
                 {"problem", problem_json(c->problem)}, {"shape", shape_json(s)}, {"mask", nullptr}};
      if (auto* dense = dynamic_cast<const DenseSdpaVariant*>(v.get())) {
        const Mask m = dense->mask(s);
        jc["mask"] = {{"name", m.name()}, {"causal", m.causal}, {"window", m.window},
                      {"sinks", m.sinks}, {"extra", m.extra ? m.extra->name : ""}};
      }
      doc["cases"].push_back(jc);
    }
    std::ofstream f(opts.emit_cases);
    if (!f) throw InputError("--emit-cases: cannot write '" + opts.emit_cases + "'");
    f << doc.dump(2) << '\n';
    std::fprintf(stderr, "wrote %zu cases to %s\n", cases.size(), opts.emit_cases.c_str());
    return kExitOk;
  }

  if (opts.dry_run) {
    std::printf("%zu cases (dry run, nothing executed)\n", cases.size());
    for (const Case* c : cases) std::printf("  %s\n", c->id.c_str());
    return kExitOk;
  }

  // Output path first: an unwritable path fails before any case runs.
  std::string out_path = opts.output;
  if (out_path.empty()) {
    std::string stamp = utc_timestamp();
    for (auto& ch : stamp) if (ch == ':') ch = '-';
    std::filesystem::create_directories("results/runs");
    out_path = "results/runs/" + ex.name + "-" + stamp + ".json";
  }

  std::string note;
  std::unique_ptr<Backend> backend = make_backend(device, &note);
  int threads = opts.threads >= 0 ? opts.threads : ex.threads;
  if (threads > 0) omp_set_num_threads(threads);
  threads = omp_get_max_threads();

  json meta;
  meta["tool"] = {{"name", "attn-bench"}, {"version", build_info().version}};
  meta["git"] = git_info();
  meta["argv"] = opts.argv;
  meta["spec"] = {{"path", ex.path}, {"sha256", ex.sha256}, {"name", ex.name}, {"description", ex.description}};
  meta["timestamp"] = utc_timestamp();
  meta["host"] = host_info();
  meta["build"] = build_json();
  meta["run"] = {{"device", backend->name()}, {"threads", threads}, {"seed", ex.seed},
                 {"baseline", ex.baseline}, {"filter", opts.filter}, {"input", ex.input},
                 {"metrics", ex.metrics}, {"note", note}};
  if (opts.shuffle_seed >= 0) meta["run"]["shuffle_seed"] = opts.shuffle_seed;
  if (const auto& slow = test_slowdown())
    meta["run"]["test_slowdown"] = slow->variant + ":" + std::to_string(slow->fraction);
  meta["devices"] = json::array();
  if (json d = backend->device_info(); !d.empty()) meta["devices"].push_back(d);
  ReportWriter report(out_path, meta);
  if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());

  g_interrupted.store(false);
  auto old_handler = std::signal(SIGINT, on_sigint);
  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  int failed = 0;
  size_t done = 0;
  for (const Case* c : cases) {
    if (g_interrupted.load()) break;
    if (!opts.quiet) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string eta = done ? " ETA " + fmt_seconds(el / done * (cases.size() - done)) : "";
      if (tty)
        std::fprintf(stderr, "\r\033[K[%zu/%zu] %s%s", done + 1, cases.size(), c->id.c_str(), eta.c_str());
      else
        std::fprintf(stderr, "[%zu/%zu] %s ...\n", done + 1, cases.size(), c->id.c_str());
      std::fflush(stderr);
    }
    json r = run_case(ex, *c, *backend, [] { return g_interrupted.load(); });
    if (g_interrupted.load()) break;  // a case cut short is not a finished case
    if (r["status"] == "failed") {
      ++failed;
      if (!opts.quiet) {
        if (tty) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "[%zu/%zu] %s FAILED: %s\n", done + 1, cases.size(), c->id.c_str(),
                     r["reason"].get<std::string>().c_str());
      }
    }
    report.add_case(std::move(r));
    ++done;
  }
  std::signal(SIGINT, old_handler);
  if (!opts.quiet && tty) std::fprintf(stderr, "\r\033[K");
  const bool complete = !g_interrupted.load();
  report.finish(complete);
  if (opts.table_out) print_run_summary(report.doc(), ex.baseline, opts.table_out);
  std::fprintf(stderr, "report: %s (%zu cases%s)\n", out_path.c_str(), done,
               complete ? "" : ", interrupted: finished cases kept");
  if (!complete) return 130;
  return failed ? kExitFailed : kExitOk;
}

}  // namespace ab
