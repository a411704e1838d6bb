#pragma once
// Executing a variant on a backend: upload inputs, allocate and poison outputs, plan, run.
// Used by the runner for a case and by metrics that run their own trials (NIAH).
#include <functional>
#include <memory>
#include <vector>

#include "core/variant.hpp"

namespace ab {

struct Execution {
  std::vector<Inputs> rotation;  // copies of the inputs to rotate through while timing
  std::vector<Plan> plans;       // one per copy
  Outputs out;
};

// Uploads `copies` copies of the host inputs and allocates O and LSE (poisoned).
Execution prepare_execution(const Variant& v, Backend& b, const AttnShape& s,
                            std::shared_ptr<const HostInputs> host, int copies);
// Plans every copy, then runs copy 0 once and synchronises.
void plan_and_run(Variant& v, Backend& b, Execution& e);
// Frees everything prepare_execution allocated.
void release_execution(Backend& b, Execution& e);

// One run on fresh host inputs; returns O and LSE on the host and the plan (with its
// selection). Frees its device buffers before returning.
struct HostRun {
  HostTensor o, lse;
  Plan plan;
};
HostRun run_once(Variant& v, Backend& b, const AttnShape& s, std::shared_ptr<const HostInputs> host);

// When v.prompt_queries(s) = M > 0: the queries of the M prompt positions before the case's
// first query row (positions kv_len − q_len − M …), made by the workload that made `host`
// (`generate` over a shape with M more query rows; its K/V are discarded), stored as
// host.extra["q_prompt"] (B, Hq, M, D). No-op otherwise.
void add_prompt_queries(const Variant& v, const AttnShape& s,
                        const std::function<HostInputs(const AttnShape&)>& generate, HostInputs& host);

}  // namespace ab
