#include "runner/runner.hpp"

#include <fcntl.h>
#include <omp.h>
#include <regex.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <cstring>
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <optional>

#include "backends/backends.hpp"
#include "core/errors.hpp"
#include "core/build_info.hpp"
#include "core/host_info.hpp"
#include "core/mask_library.hpp"
#include "variants/registry.hpp"
#include "core/report.hpp"
#include "metrics/metrics.hpp"
#include "execution/execute.hpp"
#include "runner/pool.hpp"
#include "runner/preflight.hpp"
#include "runner/shard.hpp"
#include "runner/summary.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "workloads/workloads.hpp"
#include "workloads/extra_inputs.hpp"

namespace ab {

using json = nlohmann::ordered_json;

namespace {

// The signal that stopped the sweep (SIGINT, SIGTERM), 0 while running.
std::atomic<int> g_signal{0};
extern "C" void on_stop_signal(int sig) { g_signal.store(sig); }

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
  std::vector<ExtraInputFile> extra_input_files(const AttnShape& s) const override {
    return inner_->extra_input_files(s);
  }
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

json case_entry_stub(const Case& c, const std::string& backend) {
  json r;
  r["id"] = c.id;
  r["variant"] = c.variant.name;
  r["label"] = c.variant.label;
  r["params"] = params_json(c.variant.params);
  r["problem"] = problem_json(c.problem);
  r["shape"] = nullptr;
  r["backend"] = backend;
  r["status"] = "ok";
  r["reason"] = "";
  r["metrics"] = json::object();
  return r;
}

std::vector<size_t> select_case_indices(const Experiment& ex, const std::string& filter) {
  std::vector<size_t> out;
  // POSIX extended regular expressions (regcomp): glibc matches them without the exponential
  // backtracking std::regex falls into on patterns like (a*)*b.
  regex_t re;
  if (!filter.empty()) {
    if (filter.size() > 1000) throw InputError("--filter: the pattern is longer than 1000 characters");
    const int rc = regcomp(&re, filter.c_str(), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char msg[256];
      regerror(rc, &re, msg, sizeof msg);
      throw InputError("--filter '" + filter + "': not a valid regular expression: " + msg);
    }
  }
  const size_t n = ex.case_count();
  for (size_t i = 0; i < n; ++i)
    if (filter.empty() || regexec(&re, ex.case_id(i).c_str(), 0, nullptr, 0) == 0) out.push_back(i);
  if (!filter.empty()) regfree(&re);
  return out;
}

std::vector<const Case*> select_cases(const Experiment& ex, const std::string& filter) {
  if (ex.lazy) throw std::logic_error("select_cases: the experiment was loaded lazily (use select_case_indices)");
  std::vector<const Case*> out;
  for (size_t i : select_case_indices(ex, filter)) out.push_back(&ex.cases[i]);
  return out;
}

namespace {

// "q holds 3 non-finite values (first: inf at [0,1,5,2])", or "" when all are finite.
std::string nonfinite_report(const char* name, const HostTensor& t) {
  int64_t count = 0, first = -1;
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t.data[static_cast<size_t>(i)])) {
      if (first < 0) first = i;
      ++count;
    }
  if (!count) return "";
  const auto& sh = t.shape;
  int64_t idx[4], rem = first;
  for (int d = 3; d >= 0; --d) idx[d] = sh[d] ? rem % sh[d] : 0, rem = sh[d] ? rem / sh[d] : 0;
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s holds %lld non-finite value%s (first: %g at [%lld,%lld,%lld,%lld])", name,
                static_cast<long long>(count), count == 1 ? "" : "s", static_cast<double>(t.data[static_cast<size_t>(first)]),
                static_cast<long long>(idx[0]), static_cast<long long>(idx[1]), static_cast<long long>(idx[2]),
                static_cast<long long>(idx[3]));
  return buf;
}

}  // namespace

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
  if (!c.skip_reason.empty()) {  // the variant cannot run this point of the sweep
    r["status"] = "skipped";
    r["reason"] = c.skip_reason;
    return r;
  }
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
    load_extra_input_files(*variant, shape, *host);
    variant->prepare_inputs(shape, *host, input_seed(ex.seed, c.problem.key()) ^ 0xe7);
    // NaN or Inf in the inputs (a captured file, an extreme input.std) make every metric
    // meaningless: refused by default, recorded when input.nonfinite is flag.
    {
      json bad = json::array();
      for (const auto& [name, t] : std::initializer_list<std::pair<const char*, const HostTensor*>>{
               {"input q", &host->q}, {"input k", &host->k}, {"input v", &host->v}})
        if (std::string m = nonfinite_report(name, *t); !m.empty()) bad.push_back(m);
      for (const auto& [name, t] : host->extra)
        if (std::string m = nonfinite_report(("input " + name).c_str(), t); !m.empty()) bad.push_back(m);
      if (!bad.empty()) {
        if (ex.input.value("nonfinite", std::string("refuse")) != "flag") {
          std::string why;
          for (const auto& b : bad) why += (why.empty() ? "" : "; ") + b.get<std::string>();
          throw std::runtime_error(why + " (input.nonfinite: flag runs it anyway)");
        }
        r["input_nonfinite"] = bad;
      }
    }
    const int copies = ex.metrics.contains("latency") ? std::max(1, backend.rotation_copies(in_bytes, cache)) : 1;
    Execution exe = prepare_execution(*variant, backend, shape, host, copies);
    plan_and_run(*variant, backend, exe);
    // An output holding NaN or Inf fails the case, naming where (the accuracy metric would
    // otherwise report only "rel: null").
    if (!r.contains("input_nonfinite")) {
      if (std::string m = nonfinite_report("output o", backend.download(exe.out.o)); !m.empty())
        throw std::runtime_error(m);  // the catch below releases every buffer
    }
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

int apply_cpu_threads(int requested, const std::string& requested_by, std::string* source) {
  std::string from;
  if (requested > 0) {
    omp_set_num_threads(requested);
    from = requested_by;
  } else if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
    from = "OMP_NUM_THREADS";
  } else {
    const ThreadDefault d = default_cpu_threads();
    omp_set_num_threads(d.threads);
    from = d.source;
  }
  if (source) *source = from;
  return omp_get_max_threads();
}

nlohmann::ordered_json measure_peaks_json(Backend& backend, int threads) {
  const auto p = backend.measure_peaks();
  if (!p) throw InputError("the " + backend.name() + " backend has no peak microbenchmark");
  json j;
  j["kind"] = "attn-bench peaks";
  j["device"] = backend.name();
  j["threads"] = threads;
  j["timestamp"] = utc_timestamp();
  j["tflops"] = {{"value", p->tflops.value}, {"method", p->tflops.method}};
  j["gbps"] = {{"value", p->gbps.value}, {"method", p->gbps.method}};
  return j;
}

int run_experiment(const Experiment& ex, const RunOptions& opts) {
  // The selected cases as indices into the spec: a lazily loaded spec makes its cases one at a
  // time, and only those this run executes are kept (bounded memory for --dry-run and shards).
  std::vector<size_t> sel = select_case_indices(ex, opts.filter);
  if (!opts.filter.empty() && sel.empty())
    throw InputError("--filter '" + opts.filter + "' matches none of the spec's " +
                     std::to_string(ex.case_count()) + " case ids (e.g. '" +
                     (ex.case_count() == 0 ? std::string() : ex.case_id(0)) + "')");
  // --shard: this process's part of the (filtered) cases, by the cost partition (shard.hpp).
  json shard_meta;
  std::vector<int64_t> costs;  // per selected case, for the shard and the pool's queue
  if (opts.shard || opts.workers > 1 || !opts.gpus.empty())
    for (size_t i : sel) costs.push_back(case_cost(ex, ex.lazy ? ex.case_at(i) : ex.cases[i]));
  if (opts.shard) {
    std::vector<int64_t> load;
    const std::vector<int> part = assign_shards(costs, opts.shard->count, &load);
    std::vector<size_t> mine;
    std::vector<int64_t> mine_costs;
    int64_t total = 0;
    for (size_t k = 0; k < sel.size(); ++k) {
      total += costs[k];
      if (part[k] == opts.shard->index) {
        mine.push_back(sel[k]);
        mine_costs.push_back(costs[k]);
      }
    }
    shard_meta = {{"index", opts.shard->index}, {"count", opts.shard->count}, {"source", opts.shard->source},
                  {"cases", mine.size()}, {"of_cases", sel.size()},
                  {"cost_us", load[static_cast<size_t>(opts.shard->index)]}, {"total_cost_us", total},
                  {"method", "lpt by case_cost (docs/cluster.md)"}};
    if (opts.shard->source == "slurm") {
      json sl = json::object();
      for (const char* k : {"SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_CLUSTER_NAME"})
        if (const char* v = std::getenv(k)) sl[k] = v;
      shard_meta["slurm"] = sl;
    }
    if (!opts.quiet)
      std::fprintf(stderr, "shard %d/%d: %zu of %zu cases, cost %.3g of %.3g s (nominal)\n", opts.shard->index,
                   opts.shard->count, mine.size(), sel.size(), load[static_cast<size_t>(opts.shard->index)] * 1e-6,
                   total * 1e-6);
    sel = std::move(mine);
    costs = std::move(mine_costs);
  }
  // A fixed order puts each case after the same neighbour every run; a shuffled one spreads
  // what a neighbour leaves behind (cache, clocks) over all cases (docs/ci.md).
  if (opts.shuffle_seed >= 0) {
    if (!costs.empty()) throw InputError("--shuffle: not with --shard, --workers or --gpus (they order the cases themselves)");
    std::shuffle(sel.begin(), sel.end(), std::mt19937_64(static_cast<uint64_t>(opts.shuffle_seed)));
  }
  auto case_of = [&](size_t k) { return ex.lazy ? ex.case_at(sel[k]) : ex.cases[sel[k]]; };
  test_slowdown();  // a malformed ATTN_TEST_SLOWDOWN is bad input before anything runs
  const std::string device0 = opts.device.empty() ? ex.device : opts.device;

  if (!opts.emit_cases.empty()) {
    json doc;
    doc["spec"] = ex.path;
    doc["cases"] = json::array();
    for (size_t k = 0; k < sel.size(); ++k) {
      const Case cc = case_of(k);
      const Case* c = &cc;
      const RegistryEntry* entry = find_variant(c->variant.name);
      auto v = entry->make(c->variant.params);
      const AttnShape s = v->shape(c->problem);
      json jc = {{"id", c->id}, {"variant", c->variant.name}, {"label", c->variant.label},
                 {"problem", problem_json(c->problem)}, {"shape", shape_json(s)}, {"mask", nullptr}};
      if (auto* dense = dynamic_cast<const DenseSdpaVariant*>(v.get())) {
        const Mask m = dense->mask(s);
        jc["mask"] = {{"name", m.name()}, {"causal", m.causal}, {"window", m.window},
                      {"sinks", m.sinks}, {"extra", m.extra ? m.extra->name : ""}};
        // A library predicate's program (core/mask.hpp, MaskInstr), so that a peer can rebuild
        // the same mask (scripts/peers/mask_program.py: FlexAttention's mask_mod), and the
        // pairs it allows per (batch, head), exactly.
        if (m.extra && !m.extra->program.empty()) {
          static const char* const kOps[] = {"causal",    "window",    "sinks",  "block_diagonal",
                                             "blockrank", "mixformer", "all_of", "any_of"};
          json prog = json::array();
          for (const MaskInstr& ins : m.extra->program)
            prog.push_back({{"op", kOps[int(ins.op)]}, {"a", ins.a}, {"b", ins.b}});
          jc["mask"]["program"] = prog;
          jc["mask"]["allowed_pairs"] = allowed_pairs(m, s);
        }
      }
      doc["cases"].push_back(jc);
    }
    std::ofstream f(opts.emit_cases);
    if (!f) throw InputError("--emit-cases: cannot write '" + opts.emit_cases + "'");
    f << doc.dump(2) << '\n';
    std::fprintf(stderr, "wrote %zu cases to %s\n", sel.size(), opts.emit_cases.c_str());
    return kExitOk;
  }

  // Worker slots (pool.hpp): --gpus, one per GPU (one GPU too: a case that leaves a sticky
  // CUDA error, such as an illegal address, then loses only its own worker, and --timeout
  // holds); --workers, one per group of cores.
  std::vector<WorkerSlot> slots;
  std::string device = device0;
  if (!opts.gpus.empty()) {
    if (opts.workers > 1) throw InputError("--workers and --gpus: choose one (--workers is for the CPU backend)");
    if (device == "cpu" && !opts.device.empty())
      throw InputError("--gpus " + opts.gpus + ": not with --device cpu (use --workers N for CPU workers)");
    slots = gpu_worker_slots(opts.gpus, opts.threads > 0 ? opts.threads : 0);
    device = "cuda";
  } else if (opts.workers > 1) {
    if (device != "cpu")
      throw InputError("--workers " + std::to_string(opts.workers) + ": CPU workers need --device cpu (for GPUs: --gpus all)");
    slots = cpu_worker_slots(opts.workers, opts.threads > 0 ? opts.threads : ex.threads);
  }
  const bool pool = !slots.empty();

  std::string note;
  std::unique_ptr<Backend> backend = make_backend(device, &note);
  std::string threads_source;
  const int threads = opts.threads >= 0 ? apply_cpu_threads(opts.threads, "--threads", &threads_source)
                                         : apply_cpu_threads(ex.threads, "spec", &threads_source);

  // --resume: the cases of an earlier report of the same spec that need not run again.
  std::vector<json> kept;
  std::set<std::string> kept_ids;
  if (!opts.resume.empty()) {
    json old_meta;
    std::vector<json> old = read_report_cases(opts.resume, &old_meta);
    const std::string old_sha = old_meta.contains("spec") && old_meta["spec"].is_object()
                                    ? old_meta["spec"].value("sha256", std::string()) : "";
    const std::string old_ver = old_meta.contains("tool") && old_meta["tool"].is_object()
                                    ? old_meta["tool"].value("version", std::string()) : "";
    if (old_sha != ex.sha256)
      throw InputError("--resume " + opts.resume + ": that report is of another spec (sha256 " +
                       (old_sha.empty() ? "missing" : old_sha.substr(0, 12)) + ", this spec " + ex.sha256.substr(0, 12) +
                       "); resume needs the same spec file");
    if (old_ver != build_info().version)
      throw InputError("--resume " + opts.resume + ": that report was written by attn-bench " + old_ver +
                       ", this is " + build_info().version + "; its numbers are not comparable: run the spec afresh");
    json old_sets = old_meta["spec"].value("overrides", json::array());
    if (old_sets != json(opts.overrides))
      throw InputError("--resume " + opts.resume + ": that report was run with --set " + old_sets.dump() +
                       ", this run with " + json(opts.overrides).dump() + "; give the same --set options");
    std::set<std::string> wanted;
    for (size_t i : sel) wanted.insert(ex.case_id(i));
    for (auto& c : old) {
      const std::string st = c.value("status", std::string());
      const std::string id = c["id"].get<std::string>();
      if ((st == "ok" || st == "skipped") && wanted.count(id)) {
        kept_ids.insert(id);
        kept.push_back(std::move(c));
      }
    }
    std::fprintf(stderr, "resume: %zu cases kept from %s, %zu to run\n", kept.size(), opts.resume.c_str(),
                 sel.size() - kept.size());
  }

  if (opts.dry_run) {
    std::printf("%zu cases (dry run, nothing executed)\n", sel.size());
    print_preflight(ex, sel.size(), case_of, *backend, sel.size(), stdout);
    return kExitOk;
  }

  // The cases this run executes, made now (a lazily loaded spec keeps only these).
  std::vector<Case> owned;
  std::vector<const Case*> cases;
  if (ex.lazy) {
    owned.reserve(sel.size());
    for (size_t i : sel) owned.push_back(ex.case_at(i));
    for (const Case& c : owned) cases.push_back(&c);
  } else {
    for (size_t i : sel) cases.push_back(&ex.cases[i]);
  }

  // Output path first: an unwritable path fails before any case runs.
  std::string out_path = opts.output.empty() ? opts.resume : opts.output;
  if (out_path.empty()) {
    std::string stamp = utc_timestamp();
    for (auto& ch : stamp) if (ch == ':') ch = '-';
    std::filesystem::create_directories("results/runs");
    out_path = "results/runs/" + ex.name + "-" + stamp + ".json";
  }
  {
    std::error_code ec;
    if (std::filesystem::equivalent(out_path, ex.path, ec))
      throw InputError("-o " + out_path + ": that is the spec itself; the report would overwrite it");
  }

  // Pre-flight: the sweep's estimated time against the budget, before anything runs.
  const Rates rates = opts.preflight ? measure_rates(*backend) : Rates{};
  const bool host_backend = backend->name() == "cpu";
  if (opts.preflight) {
    double total = 0;
    const double havail = host_memory_available(), davail = device_memory_available(*backend);
    for (const Case* c : cases)
      if (!kept_ids.count(c->id)) {
        const CaseEstimate e = estimate_case(ex, *c, rates, host_backend, havail, davail);
        if (e.skip.empty()) total += e.seconds;
      }
    double budget = opts.budget_s;
    if (budget <= 0) {
      const char* env = std::getenv("ATTN_BUDGET_S");
      budget = env ? std::atof(env) : 0;
      if (budget <= 0) budget = 3600;
    }
    if (total > budget && !opts.yes)
      throw InputError("the sweep's estimated time is " + human_seconds(total) + ", over the budget of " +
                       human_seconds(budget) + " (see `attn-bench validate` for the per-case estimates); pass --yes "
                       "to run it anyway, or raise the budget with --budget SECONDS or ATTN_BUDGET_S");
  }

  json meta;
  meta["tool"] = {{"name", "attn-bench"}, {"version", build_info().version}};
  meta["git"] = git_info();
  meta["argv"] = opts.argv;
  meta["spec"] = {{"path", ex.path}, {"sha256", ex.sha256}, {"name", ex.name}, {"description", ex.description},
                  {"overrides", opts.overrides}};
  meta["timestamp"] = utc_timestamp();
  meta["host"] = host_info();
  meta["build"] = build_json();
  meta["run"] = {{"device", backend->name()}, {"threads", threads}, {"threads_source", threads_source}, {"seed", ex.seed},
                 {"baseline", ex.baseline}, {"filter", opts.filter}, {"input", ex.input},
                 {"metrics", ex.metrics}, {"note", note}};
  if (opts.shuffle_seed >= 0) meta["run"]["shuffle_seed"] = opts.shuffle_seed;
  if (const auto& slow = test_slowdown())
    meta["run"]["test_slowdown"] = slow->variant + ":" + std::to_string(slow->fraction);
  if (opts.isolate) meta["run"]["isolate"] = {{"timeout_s", opts.timeout_s}};
  if (!shard_meta.is_null()) meta["run"]["shard"] = shard_meta;
  if (pool) {
    json names = json::array();
    for (const auto& sl : slots) names.push_back(sl.name);
    meta["run"]["pool"] = {{"kind", opts.gpus.empty() ? "cpu" : "gpu"}, {"workers", names},
                           {"threads_per_worker", slots.front().threads}, {"order", "largest first"},
                           {"timeout_s", opts.timeout_s}};
  }
  if (!opts.resume.empty()) meta["run"]["resumed_from"] = {{"path", opts.resume}, {"kept", kept.size()}};
  meta["devices"] = json::array();
  if (json d = backend->device_info(); !d.empty()) meta["devices"].push_back(d);
  if (opts.measure_peaks) {
    if (!opts.quiet) std::fprintf(stderr, "measuring the %s's peaks (a few seconds)...\n", backend->name().c_str());
    meta["peaks"] = measure_peaks_json(*backend, threads);
  }
  ReportWriter report(out_path, meta, std::move(kept));
  if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());

  // An isolated sweep and a pool keep no device state in this process: each case runs in a
  // worker process (pool.hpp).
  std::unique_ptr<CaseWorkers> workers;
  if (opts.isolate || pool) workers = std::make_unique<CaseWorkers>(ex, opts.overrides, device, opts.timeout_s);
  if (!pool && opts.isolate) slots.push_back(WorkerSlot{"", "", {}, threads});
  // Shards and pools record each case's place in the spec: merge and the pool's report put the
  // cases back in the spec's order by it.
  const bool tag_index = opts.shard.has_value() || pool;

  g_signal.store(0);
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  int failed = 0;
  size_t done = 0, started_n = 0, to_run = 0;
  for (const Case* c : cases) to_run += !kept_ids.count(c->id);
  auto progress = [&](const Case& c, const std::string& where) {
    if (opts.quiet) return;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string eta = done ? " ETA " + fmt_seconds(el / done * (to_run - done)) : "";
    const std::string at = where.empty() ? "" : " [" + where + "]";
    if (tty)
      std::fprintf(stderr, "\r\033[K[%zu/%zu] %s%s%s", started_n + 1, to_run, c.id.c_str(), at.c_str(), eta.c_str());
    else
      std::fprintf(stderr, "[%zu/%zu] %s%s ...\n", started_n + 1, to_run, c.id.c_str(), at.c_str());
    std::fflush(stderr);
    ++started_n;
  };
  auto finished = [&](const Case& c, json r) {
    if (r["status"] == "failed") {
      ++failed;
      if (!opts.quiet) {
        if (tty) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "[%zu/%zu] %s FAILED: %s\n", done + 1, to_run, c.id.c_str(),
                     r["reason"].get<std::string>().c_str());
      }
    }
    if (tag_index) r["index"] = c.index;
    report.add_case(std::move(r));
    ++done;
  };
  // Memory pre-flight, before anything of the case is allocated: a case that cannot fit is
  // skipped with the numbers instead of failing (or being killed) half-way.
  auto mem_skip = [&](const Case& c) -> std::optional<json> {
    if (!opts.preflight || !c.skip_reason.empty()) return std::nullopt;
    const CaseEstimate e = estimate_case(ex, c, rates, host_backend, host_memory_available(),
                                         device_memory_available(*backend));
    if (e.skip.empty()) return std::nullopt;
    Case skipped = c;
    skipped.skip_reason = e.skip;
    return run_case(ex, skipped, *backend, {});
  };
  std::vector<const Case*> todo;
  for (size_t i = 0; i < cases.size(); ++i)
    if (!kept_ids.count(cases[i]->id)) todo.push_back(cases[i]);
  if (workers) {
    if (pool) {  // largest first: the longest cases do not end the sweep on one worker
      std::vector<std::pair<int64_t, const Case*>> order;
      for (size_t i = 0; i < cases.size(); ++i)
        if (!kept_ids.count(cases[i]->id)) order.push_back({costs[i], cases[i]});
      std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      todo.clear();
      for (const auto& o : order) todo.push_back(o.second);
    }
    workers->run(
        todo, slots, [&](const Case& c) { return mem_skip(c); },
        [&](const Case& c, const WorkerSlot& sl) { progress(c, pool ? sl.name : std::string()); },
        [&](const Case& c, json r, const WorkerSlot&) { finished(c, std::move(r)); },
        [] { return g_signal.load() != 0; });
  } else {
    for (const Case* c : todo) {
      if (g_signal.load()) break;
      progress(*c, "");
      json r;
      if (std::optional<json> sk = mem_skip(*c)) r = std::move(*sk);
      else r = run_case(ex, *c, *backend, [] { return g_signal.load() != 0; });
      if (g_signal.load()) break;  // a case cut short is not a finished case
      finished(*c, std::move(r));
    }
  }
  if (pool) report.sort_cases_by_index();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (!opts.quiet && tty) std::fprintf(stderr, "\r\033[K");
  const int sig = g_signal.load();
  const bool complete = sig == 0;
  report.finish(complete);
  if (opts.table_out) print_run_summary(report.doc(), ex.baseline, opts.table_out);
  std::fprintf(stderr, "report: %s (%zu cases%s)\n", out_path.c_str(), report.doc()["cases"].size(),
               complete ? "" : sig == SIGTERM ? ", terminated: finished cases kept" : ", interrupted: finished cases kept");
  if (!complete) return 128 + sig;
  return failed ? kExitFailed : kExitOk;
}

int run_case_worker(const Experiment& ex, int index, const std::string& device, int threads,
                    const std::string& result) {
  if (index < 0 || static_cast<size_t>(index) >= ex.case_count())
    throw InputError("__case: no case " + std::to_string(index) + " in " + ex.path);
  std::string note;
  std::unique_ptr<Backend> backend = make_backend(device, &note);
  apply_cpu_threads(threads, "--threads", nullptr);
  const json r = run_case(ex, ex.case_at(static_cast<size_t>(index)), *backend, {});
  const std::string tmp = result + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << r.dump() << '\n';
    if (!f.flush()) throw InputError("__case: cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), result.c_str()) != 0) throw InputError("__case: cannot write '" + result + "'");
  return 0;
}

}  // namespace ab
