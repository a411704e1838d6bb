#include "execution/execute.hpp"

#include <algorithm>

namespace ab {

Execution prepare_execution(const Variant& v, Backend& b, const AttnShape& s,
                            std::shared_ptr<const HostInputs> host, int copies) {
  Execution e;
  // The CPU computes on the host copies themselves (no second copy: peak memory stays near
  // Q, K, V and O); other backends get their own copy of each input.
  auto backend_copy = [&](const HostTensor& t) {
    if (auto view = b.view_host(t, s.dtype)) return *view;
    TensorRef d = b.alloc(t.shape, s.dtype);
    b.upload(t, d);
    return d;
  };
  for (int i = 0; i < copies; ++i) {
    Inputs in;
    in.shape = s;
    in.host = host;
    in.q = backend_copy(host->q);
    in.k = backend_copy(host->k);
    in.v = backend_copy(host->v);
    for (const auto& [name, t] : host->extra) in.extra[name] = backend_copy(t);
    e.rotation.push_back(std::move(in));
  }
  e.out.o = b.alloc(v.output_shape(s), s.dtype);
  e.out.lse = b.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
  b.poison(e.out.o);
  b.poison(e.out.lse);
  e.plans.resize(e.rotation.size());
  return e;
}

void plan_and_run(Variant& v, Backend& b, Execution& e) {
  for (size_t i = 0; i < e.rotation.size(); ++i) e.plans[i] = v.plan(e.rotation[i], b);
  v.run(e.rotation[0], e.plans[0], e.out, b);
  b.synchronize();
}

void release_execution(Backend& b, Execution& e) {
  for (auto& in : e.rotation) {
    b.free(in.q);
    b.free(in.k);
    b.free(in.v);
    for (auto& [name, t] : in.extra) b.free(t);
  }
  b.free(e.out.o);
  b.free(e.out.lse);
  e.rotation.clear();
}

HostRun run_once(Variant& v, Backend& b, const AttnShape& s, std::shared_ptr<const HostInputs> host) {
  Execution e = prepare_execution(v, b, s, std::move(host), 1);
  HostRun r;
  try {
    plan_and_run(v, b, e);
    r.o = b.download(e.out.o);
    r.lse = b.download(e.out.lse);
    r.plan = e.plans[0];
  } catch (...) {
    release_execution(b, e);
    throw;
  }
  release_execution(b, e);
  return r;
}

void add_prompt_queries(const Variant& v, const AttnShape& s,
                        const std::function<HostInputs(const AttnShape&)>& generate, HostInputs& host) {
  const int64_t m = std::min<int64_t>(v.prompt_queries(s), s.kv_len - s.q_len);
  if (m <= 0) return;
  AttnShape p = s;  // M more query rows before the case's: positions kv_len - q_len - M ...
  p.q_len = s.q_len + m;
  p.steps = 1;
  p.causal = true;
  const HostInputs more = generate(p);
  HostTensor q({s.batch, s.q_heads, m, s.head_dim});
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h)
      std::copy_n(more.q.row(b, h, 0), m * s.head_dim, q.row(b, h, 0));
  host.extra["q_prompt"] = std::move(q);
}

}  // namespace ab
