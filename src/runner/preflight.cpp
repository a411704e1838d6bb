#include "runner/preflight.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "variants/registry.hpp"
#include "execution/execute.hpp"

namespace ab {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (b >= 1024 && u < 6) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

std::string human_seconds(double s) {
  char buf[48];
  if (!std::isfinite(s)) return "n/a";
  if (s < 1) std::snprintf(buf, sizeof buf, "%.0f ms", s * 1e3);
  else if (s < 90) std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 5400) std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  else if (s < 3 * 86400) std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  else std::snprintf(buf, sizeof buf, "%.3g days", s / 86400);
  return buf;
}

std::string human_flops(double f) {
  const char* units[] = {"", "K", "M", "G", "T", "P", "E", "Z"};
  int u = 0;
  while (f >= 1000 && u < 7) f /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g %sFLOP", f, units[u]);
  return buf;
}

double host_memory_available() {
  std::ifstream f("/proc/meminfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream ss(line.substr(13));
      double kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;  // unknown: not checked
}

double device_memory_available(const Backend& backend) {
  const auto info = backend.device_info();
  if (info.contains("memory_bytes") && info["memory_bytes"].is_number()) return info["memory_bytes"].get<double>();
  return 0;
}

Rates measure_rates(Backend& backend) {
  Rates r;
  r.backend = backend.name();
  // Memory: copy 32 MiB (read + write) a few times, keep the best.
  {
    std::vector<float> a(8 << 20, 1.0f), b(8 << 20);
    double best = 1e9;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      std::copy(a.begin(), a.end(), b.begin());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      a[static_cast<size_t>(i)] = b[static_cast<size_t>(i) + 1];
    }
    r.bytes_per_s = 2.0 * a.size() * sizeof(float) / std::max(best, 1e-6);
  }
  // Attention: dense mha at a small prefill size, the second of two calls.
  try {
    const RegistryEntry* e = find_variant("mha");
    auto v = e->make(resolve_params(e->info, {}));
    Problem p;
    p.batch = 1, p.heads = 4, p.kv_heads = 4, p.head_dim = 64, p.v_dim = 64, p.q_len = 512, p.kv_len = 512;
    const AttnShape s = v->shape(p);
    auto host = std::make_shared<HostInputs>();
    host->q = HostTensor({s.batch, s.q_heads, s.q_len, s.head_dim});
    host->k = HostTensor({s.batch, s.kv_heads, s.kv_len, s.head_dim});
    host->v = HostTensor({s.batch, s.kv_heads, s.kv_len, s.v_dim});
    for (auto* t : {&host->q, &host->k, &host->v})
      for (size_t i = 0; i < t->data.size(); ++i) t->data[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    Execution exe = prepare_execution(*v, backend, s, host, 1);
    double best = 1e9;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      plan_and_run(*v, backend, exe);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    r.flops_per_s = v->cost(s, nullptr).executed / std::max(best, 1e-7);
    release_execution(backend, exe);
    backend.release_all();
  } catch (const std::exception&) {
    r.flops_per_s = 0;  // no estimate of time
  }
  return r;
}

CaseEstimate estimate_case(const Experiment& ex, const Case& c, const Rates& rates, bool backend_is_host,
                           double host_avail, double device_avail) {
  CaseEstimate e;
  if (!c.skip_reason.empty()) {
    e.skip = c.skip_reason;
    return e;
  }
  const RegistryEntry* entry = find_variant(c.variant.name);
  auto v = entry->make(c.variant.params);
  AttnShape s;
  try {
    s = v->shape(c.problem);
  } catch (const std::exception& ex_) {
    e.skip = ex_.what();
    return e;
  }
  // Element counts in double: a hostile grid (B = 10, H = 128, N = 8M) overflows int64 bytes.
  const double B = s.batch, Hq = s.q_heads, Hkv = s.kv_heads, D = s.head_dim, Dv = s.v_dim;
  const double Nq = static_cast<double>(s.q_len), Nk = static_cast<double>(s.kv_len);
  const double q = B * Hq * Nq * D, k = B * Hkv * Nk * D, vv = B * Hkv * Nk * Dv;
  const double o = B * Hq * Nq * Dv, lse = B * Hq * Nq;
  const double item = dtype_bytes(s.dtype);
  e.input_bytes = (q + k + vv) * item;
  e.output_bytes = o * item + lse * 4;
  const bool cold = ex.metrics.contains("latency") && ex.metrics["latency"].value("cache", std::string("hot")) == "cold";
  // Cold-cache timing on a GPU rotates through extra input copies (at most a few hundred MB
  // of them, bounded by the backend); the accuracy reference keeps its sampled rows in fp64.
  double metric = 0;
  if (ex.metrics.contains("accuracy")) metric += ex.metrics["accuracy"].value("rows", 64.0) * (Nk + Dv) * 8;
  if (cold && !backend_is_host) metric += std::min(e.input_bytes * 3, 1024.0 * 1024 * 1024);
  e.metric_bytes = metric;
  e.host_bytes = (q + k + vv) * 4 + o * 4 + lse * 4 + metric;
  e.device_bytes = backend_is_host ? 0 : e.input_bytes + e.output_bytes + (cold ? metric : 0);
  e.flops = v->cost(s, nullptr).executed;
  // Calls: one for the correctness run, then warmup + the samples latency takes (between
  // min_samples and max_samples, stopping at max_time).
  double per_call = rates.flops_per_s > 0 ? e.flops / rates.flops_per_s : NAN;
  if (rates.bytes_per_s > 0) per_call = std::max(std::isnan(per_call) ? 0.0 : per_call, (e.input_bytes + e.output_bytes) / rates.bytes_per_s);
  e.calls = 1;
  double seconds = per_call;
  if (ex.metrics.contains("latency")) {
    const auto& l = ex.metrics["latency"];
    const double warm = l.value("warmup", 2.0), mn = l.value("min_samples", 5.0), mx = l.value("max_samples", 200.0);
    const double max_time = l.value("max_time", 10.0);
    const double samples = std::clamp(per_call > 0 ? max_time / per_call : mx, mn, mx);
    e.calls += warm + samples;
    seconds += warm * per_call + std::min(samples * per_call, std::max(max_time, mn * per_call));
  }
  // Generating the inputs: about 20 ns per element on one core (a normal draw and a store).
  seconds += (q + k + vv) * 2e-8;
  e.seconds = seconds;
  if (host_avail > 0 && e.host_bytes > host_avail)
    e.skip = "needs " + human_bytes(e.host_bytes) + " of host memory (inputs " + human_bytes((q + k + vv) * 4) +
             ", outputs " + human_bytes((o + lse) * 4) + ", metrics " + human_bytes(metric) + "); " +
             human_bytes(host_avail) + " available";
  else if (!backend_is_host && device_avail > 0 && e.device_bytes > device_avail)
    e.skip = "needs " + human_bytes(e.device_bytes) + " of device memory (inputs " + human_bytes(e.input_bytes) +
             ", outputs " + human_bytes(e.output_bytes) + ", metrics " + human_bytes(cold ? metric : 0) + "); " +
             human_bytes(device_avail) + " on the device";
  return e;
}

double print_preflight(const Experiment& ex, const std::vector<const Case*>& cases, Backend& backend,
                       size_t show, std::FILE* out) {
  return print_preflight(ex, cases.size(), [&](size_t i) { return *cases[i]; }, backend, show, out);
}

double print_preflight(const Experiment& ex, size_t n, const std::function<Case(size_t)>& case_of, Backend& backend,
                       size_t show, std::FILE* out) {
  const Rates rates = measure_rates(backend);
  const bool host = backend.name() == "cpu";
  const double havail = host_memory_available(), davail = device_memory_available(backend);
  double total_s = 0, total_flops = 0, peak_host = 0, peak_dev = 0;
  size_t skipped = 0, mem_skipped = 0, shown = 0;
  std::fprintf(out, "pre-flight on %s (measured: %.3g GFLOP/s attention, %.3g GB/s memory; %s host memory available%s):\n",
               backend.name().c_str(), rates.flops_per_s * 1e-9, rates.bytes_per_s * 1e-9,
               human_bytes(havail).c_str(), host ? "" : (", " + human_bytes(davail) + " device memory").c_str());
  for (size_t i = 0; i < n; ++i) {
    const Case cc = case_of(i);
    const Case* c = &cc;
    const CaseEstimate e = estimate_case(ex, *c, rates, host, havail, davail);
    if (!e.skip.empty()) {
      ++skipped;
      if (c->skip_reason.empty()) ++mem_skipped;
    } else {
      total_s += e.seconds;
      total_flops += e.flops * e.calls;
      peak_host = std::max(peak_host, e.host_bytes);
      peak_dev = std::max(peak_dev, e.device_bytes);
    }
    if (shown < show) {
      ++shown;
      if (!e.skip.empty() && c->skip_reason.empty())
        std::fprintf(out, "  %s: host %s, device %s, %s/call -> skipped: %s\n", c->id.c_str(), human_bytes(e.host_bytes).c_str(),
                     human_bytes(e.device_bytes).c_str(), human_flops(e.flops).c_str(), e.skip.c_str());
      else if (!e.skip.empty())
        std::fprintf(out, "  %s: skipped: %s\n", c->id.c_str(), e.skip.c_str());
      else
        std::fprintf(out, "  %s: host %s, device %s (inputs %s, outputs %s, metrics %s), %s/call, ~%s\n", c->id.c_str(),
                     human_bytes(e.host_bytes).c_str(), human_bytes(e.device_bytes).c_str(), human_bytes(e.input_bytes).c_str(),
                     human_bytes(e.output_bytes).c_str(), human_bytes(e.metric_bytes).c_str(), human_flops(e.flops).c_str(),
                     human_seconds(e.seconds).c_str());
    }
  }
  if (shown < n) std::fprintf(out, "  ... and %zu more\n", n - shown);
  std::fprintf(out, "total: %zu cases, %zu to run, %zu skipped (%zu for memory); peak host %s, peak device %s; %s; estimated %s\n",
               n, n - skipped, skipped, mem_skipped, human_bytes(peak_host).c_str(),
               human_bytes(peak_dev).c_str(), human_flops(total_flops).c_str(), human_seconds(total_s).c_str());
  return total_s;
}

}  // namespace ab
