#pragma once
// Worker processes (docs/cluster.md, "One host, several devices"; docs/reliability.md): each case
// runs in a fresh process of this binary (the hidden `__case` subcommand, exec'd, so that no
// OpenMP pool or CUDA context is shared and a crash, an abort, a sticky CUDA error or a hang
// fails that case only). `run --isolate` uses one slot; `run --workers N` (CPU) and
// `run --gpus` use one slot per core group or per GPU, fed from one queue, largest case first.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spec/spec.hpp"

namespace ab {

// Where a worker runs: a slot runs one case at a time.
struct WorkerSlot {
  std::string name;                  // "worker 0 (cpus 0-7)", "gpu 1"; "" for --isolate
  std::string cuda_visible_devices;  // set in the worker's environment; "" = inherited
  std::vector<int> cpus;             // the worker's CPU affinity; empty = inherited
  int threads = 0;                   // the worker's --threads (0 = every core it may use)
};

class CaseWorkers {
 public:
  // device: the worker's --device; overrides: the --set strings the spec was loaded with;
  // timeout_s: per case, 0 = none.
  CaseWorkers(const Experiment& ex, std::vector<std::string> overrides, std::string device, double timeout_s);
  ~CaseWorkers();
  CaseWorkers(const CaseWorkers&) = delete;
  CaseWorkers& operator=(const CaseWorkers&) = delete;

  // Runs `cases` in the order given over the slots. before(c), called as a case is taken from
  // the queue, may return its entry without a worker (a pre-flight skip); started(c, slot) as
  // its worker starts; done(c, entry, slot) as it finishes, all on this thread. When stop()
  // turns true the running workers are killed and their cases are not reported.
  void run(const std::vector<const Case*>& cases, const std::vector<WorkerSlot>& slots,
           const std::function<std::optional<nlohmann::ordered_json>(const Case&)>& before,
           const std::function<void(const Case&, const WorkerSlot&)>& started,
           const std::function<void(const Case&, nlohmann::ordered_json, const WorkerSlot&)>& done,
           const std::function<bool()>& stop);

 private:
  struct Running;
  void launch(Running& r, const Case& c, const WorkerSlot& slot);
  nlohmann::ordered_json collect(const Running& r, int status, bool timed_out);
  const Experiment& ex_;
  std::vector<std::string> overrides_;
  std::string device_;
  double timeout_s_;
  std::string dir_, self_;
};

// --workers N on the CPU: this process's cores (its affinity mask) in N contiguous groups, one
// worker pinned to each; `threads` > 0 caps each worker's threads. InputError when N exceeds
// the cores.
std::vector<WorkerSlot> cpu_worker_slots(int workers, int threads);

// The CUDA devices this process may use, counted in a child process so that this one
// initializes no CUDA (it may still choose its device with CUDA_VISIBLE_DEVICES). 0 with the
// reason in `why` when there is none (or CUDA is not in this build).
int count_cuda_devices(std::string* why);

// --gpus all | 0,1,...: one slot per GPU (ordinals as this process sees them: within an
// inherited CUDA_VISIBLE_DEVICES, its entries). InputError without a usable GPU, for an
// ordinal out of range, or a repeated one.
std::vector<WorkerSlot> gpu_worker_slots(const std::string& gpus, int threads);

}  // namespace ab
