#include "runner/pool.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "backends/backends.hpp"
#include "core/errors.hpp"
#include "runner/runner.hpp"

namespace ab {

using json = nlohmann::ordered_json;

struct CaseWorkers::Running {
  pid_t pid = -1;
  const Case* c = nullptr;
  const WorkerSlot* slot = nullptr;
  std::chrono::steady_clock::time_point t0;
  std::string result, errf;
};

CaseWorkers::CaseWorkers(const Experiment& ex, std::vector<std::string> overrides, std::string device, double timeout_s)
    : ex_(ex), overrides_(std::move(overrides)), device_(std::move(device)), timeout_s_(timeout_s) {
  char tmpl[] = "/tmp/attn-bench-workers-XXXXXX";
  if (!mkdtemp(tmpl)) throw RuntimeFailure(std::string("workers: cannot make a temp directory: ") + std::strerror(errno));
  dir_ = tmpl;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) throw RuntimeFailure("workers: cannot find this program's path (/proc/self/exe)");
  self_.assign(self, static_cast<size_t>(n));
}

CaseWorkers::~CaseWorkers() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void CaseWorkers::launch(Running& r, const Case& c, const WorkerSlot& slot) {
  r.c = &c;
  r.slot = &slot;
  r.result = dir_ + "/case-" + std::to_string(c.index) + ".json";
  r.errf = dir_ + "/case-" + std::to_string(c.index) + ".stderr";
  std::vector<std::string> args = {self_, "__case", ex_.path, "--index", std::to_string(c.index),
                                   "--device", device_, "--threads", std::to_string(slot.threads),
                                   "--sha256", ex_.sha256, "--result", r.result};
  for (const auto& o : overrides_) args.insert(args.end(), {"--set", o});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : slot.cpus) CPU_SET(cpu, &set);
  const bool pin = !slot.cpus.empty();
  // The environment, with the slot's CUDA_VISIBLE_DEVICES, built here (setenv after fork is
  // not safe in a process with threads).
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e)
    if (slot.cuda_visible_devices.empty() || std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0) env_strings.emplace_back(*e);
  if (!slot.cuda_visible_devices.empty()) env_strings.push_back("CUDA_VISIBLE_DEVICES=" + slot.cuda_visible_devices);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  r.t0 = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid < 0) throw RuntimeFailure(std::string("workers: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);  // its own process group: a timeout kills whatever it started too
    const int fd = ::open(r.errf.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, STDERR_FILENO);
    const int nul = ::open("/dev/null", O_WRONLY);
    if (nul >= 0) dup2(nul, STDOUT_FILENO);
    if (pin) sched_setaffinity(0, sizeof set, &set);  // inherited across exec
    execve(self_.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  setpgid(pid, pid);
  r.pid = pid;
}

namespace {

std::string signal_text(int sig) {
  const char* d = strsignal(sig);
  return d ? d : "signal";
}

std::string stderr_tail(const std::string& path, int lines) {
  std::ifstream f(path, std::ios::binary);
  std::vector<std::string> all;
  for (std::string l; std::getline(f, l);) {
    if (l.size() > 300) l = l.substr(0, 297) + "...";
    all.push_back(l);
    if (all.size() > static_cast<size_t>(lines)) all.erase(all.begin());
  }
  std::string out;
  for (const auto& l : all) out += (out.empty() ? "" : "\n") + l;
  return out;
}

}  // namespace

json CaseWorkers::collect(const Running& run, int status, bool timed_out) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.t0).count();
  json r;
  if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::ifstream f(run.result, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    try {
      r = json::parse(ss.str());
    } catch (const json::exception&) {
      r = nullptr;
    }
  }
  if (!r.is_object()) {
    std::string cause;
    if (timed_out) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "timed out after %.3g s (--timeout), killed", timeout_s_);
      cause = buf;
    } else if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      cause = "the worker was killed by signal " + std::to_string(sig) + " (" + signal_text(sig) + ")";
      if (sig == SIGKILL) cause += ": out of memory (the kernel's OOM killer) or killed from outside";
      if (sig == SIGABRT) cause += ": an abort (a failed assertion or std::terminate)";
    } else if (WIFEXITED(status)) {
      cause = "the worker exited with code " + std::to_string(WEXITSTATUS(status));
    } else {
      cause = "the worker ended abnormally";
    }
    const std::string tail = stderr_tail(run.errf, 12);
    r = case_entry_stub(*run.c, device_);
    r["status"] = "failed";
    r["reason"] = cause + (tail.empty() ? "" : "; last lines of its stderr:\n" + tail);
  }
  r["isolation"] = {{"worker_s", elapsed}};
  if (!run.slot->name.empty()) r["isolation"]["worker"] = run.slot->name;
  std::remove(run.result.c_str());
  std::remove(run.errf.c_str());
  return r;
}

void CaseWorkers::run(const std::vector<const Case*>& cases, const std::vector<WorkerSlot>& slots,
                      const std::function<std::optional<json>(const Case&)>& before,
                      const std::function<void(const Case&, const WorkerSlot&)>& started,
                      const std::function<void(const Case&, json, const WorkerSlot&)>& done,
                      const std::function<bool()>& stop) {
  if (slots.empty()) throw RuntimeFailure("workers: no worker slot");
  std::deque<const Case*> queue(cases.begin(), cases.end());
  std::vector<Running> running(slots.size());
  size_t busy = 0;
  auto kill_all = [&] {
    for (auto& r : running)
      if (r.pid > 0) {
        kill(-r.pid, SIGKILL);
        kill(r.pid, SIGKILL);
        int st = 0;
        while (waitpid(r.pid, &st, 0) < 0 && errno == EINTR) {
        }
        std::remove(r.result.c_str());
        std::remove(r.errf.c_str());
        r.pid = -1;
      }
  };
  try {
    while (true) {
      if (stop && stop()) {
        kill_all();
        return;
      }
      // Fill the idle slots from the queue.
      for (size_t s = 0; s < slots.size() && !queue.empty(); ++s) {
        if (running[s].pid > 0) continue;
        while (!queue.empty() && running[s].pid <= 0) {
          const Case* c = queue.front();
          queue.pop_front();
          if (before) {
            if (std::optional<json> e = before(*c)) {
              done(*c, std::move(*e), slots[s]);
              continue;
            }
          }
          if (started) started(*c, slots[s]);
          launch(running[s], *c, slots[s]);
          ++busy;
        }
      }
      if (busy == 0 && queue.empty()) return;
      // Reap whatever finished; kill what ran past the timeout.
      bool any = false;
      for (size_t s = 0; s < slots.size(); ++s) {
        Running& r = running[s];
        if (r.pid <= 0) continue;
        int status = 0;
        const pid_t w = waitpid(r.pid, &status, WNOHANG);
        bool timed_out = false;
        if (w == 0) {
          const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.t0).count();
          if (timeout_s_ <= 0 || el <= timeout_s_) continue;
          timed_out = true;
          kill(-r.pid, SIGKILL);
          kill(r.pid, SIGKILL);
          while (waitpid(r.pid, &status, 0) < 0 && errno == EINTR) {
          }
        } else if (w < 0) {
          if (errno == EINTR) continue;
          status = 0;  // lost: reported as an abnormal end
        }
        if (stop && stop()) {  // a case cut short is not a finished case
          r.pid = -1;
          --busy;
          std::remove(r.result.c_str());
          std::remove(r.errf.c_str());
          continue;
        }
        json entry = collect(r, status, timed_out);
        const Case* c = r.c;
        r.pid = -1;
        --busy;
        any = true;
        done(*c, std::move(entry), slots[s]);
      }
      if (!any) usleep(5000);
    }
  } catch (...) {
    kill_all();
    throw;
  }
}

std::vector<WorkerSlot> cpu_worker_slots(int workers, int threads) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    throw RuntimeFailure(std::string("--workers: cannot read this process's CPU affinity: ") + std::strerror(errno));
  std::vector<int> cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &set)) cpus.push_back(i);
  if (workers < 1) throw InputError("--workers: at least 1");
  if (static_cast<size_t>(workers) > cpus.size())
    throw InputError("--workers " + std::to_string(workers) + ": this process may use " + std::to_string(cpus.size()) +
                     " core(s); each worker needs its own");
  std::vector<WorkerSlot> slots;
  const size_t per = cpus.size() / static_cast<size_t>(workers), extra = cpus.size() % static_cast<size_t>(workers);
  size_t at = 0;
  for (int w = 0; w < workers; ++w) {
    WorkerSlot s;
    const size_t n = per + (static_cast<size_t>(w) < extra ? 1 : 0);
    s.cpus.assign(cpus.begin() + static_cast<std::ptrdiff_t>(at), cpus.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
    s.threads = threads > 0 ? std::min<int>(threads, static_cast<int>(n)) : static_cast<int>(n);
    std::string range = std::to_string(s.cpus.front());
    if (s.cpus.size() > 1) range += "-" + std::to_string(s.cpus.back());
    s.name = "worker " + std::to_string(w) + " (cpus " + range + ")";
    slots.push_back(std::move(s));
  }
  return slots;
}

int count_cuda_devices(std::string* why) {
  // In a child: this process must not initialize CUDA before it picks its device.
  int fds[2];
  if (pipe(fds) != 0) {
    if (why) *why = std::string("pipe failed: ") + std::strerror(errno);
    return 0;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    if (why) *why = std::string("fork failed: ") + std::strerror(errno);
    return 0;
  }
  if (pid == 0) {
    close(fds[0]);
    std::string w;
    const int n = cuda_device_count(&w);
    const std::string msg = std::to_string(n) + "\n" + w;
    ssize_t off = 0;
    while (off < static_cast<ssize_t>(msg.size())) {
      const ssize_t k = write(fds[1], msg.data() + off, msg.size() - static_cast<size_t>(off));
      if (k <= 0) break;
      off += k;
    }
    _exit(0);
  }
  close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t k; (k = read(fds[0], buf, sizeof buf)) != 0;) {
    if (k < 0) {
      if (errno == EINTR) continue;
      break;
    }
    msg.append(buf, static_cast<size_t>(k));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const auto nl = msg.find('\n');
  if (nl == std::string::npos) {
    if (why) *why = "the probe of the CUDA devices ended abnormally";
    return 0;
  }
  if (why) *why = msg.substr(nl + 1);
  return std::atoi(msg.substr(0, nl).c_str());
}

std::vector<WorkerSlot> gpu_worker_slots(const std::string& gpus, int threads) {
  std::string why;
  const int n = count_cuda_devices(&why);
  if (n <= 0) throw InputError("--gpus " + gpus + ": no usable CUDA device: " + why);
  std::vector<int> ids;
  if (gpus == "all") {
    for (int i = 0; i < n; ++i) ids.push_back(i);
  } else {
    std::set<int> seen;
    std::stringstream ss(gpus);
    for (std::string tok; std::getline(ss, tok, ',');) {
      if (tok.empty() || tok.size() > 4 || tok.find_first_not_of("0123456789") != std::string::npos)
        throw InputError("--gpus '" + gpus + "': expected all or a list of device ordinals, e.g. 0,1");
      const int id = std::stoi(tok);
      if (id >= n)
        throw InputError("--gpus '" + gpus + "': there is no GPU " + tok + " (" + std::to_string(n) +
                         " visible: 0.." + std::to_string(n - 1) + ")");
      if (!seen.insert(id).second) throw InputError("--gpus '" + gpus + "': GPU " + tok + " is listed twice");
      ids.push_back(id);
    }
    if (ids.empty()) throw InputError("--gpus: expected all or a list of device ordinals, e.g. 0,1");
  }
  // Ordinals are as this process sees its devices: inside an inherited CUDA_VISIBLE_DEVICES
  // (a Slurm allocation sets one), ordinal k is its k-th entry.
  std::vector<std::string> visible;
  if (const char* env = std::getenv("CUDA_VISIBLE_DEVICES"); env && *env) {
    std::stringstream ss(env);
    for (std::string tok; std::getline(ss, tok, ',');) visible.push_back(tok);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = 1;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = std::max(1, CPU_COUNT(&set));
  std::vector<WorkerSlot> slots;
  for (int id : ids) {
    WorkerSlot s;
    s.cuda_visible_devices = static_cast<size_t>(id) < visible.size() ? visible[static_cast<size_t>(id)] : std::to_string(id);
    s.name = "gpu " + std::to_string(id);
    // The host side of each worker (inputs, references) shares the cores.
    const int share = std::max(1, cores / static_cast<int>(ids.size()));
    s.threads = threads > 0 ? threads : share;
    slots.push_back(std::move(s));
  }
  return slots;
}

}  // namespace ab
