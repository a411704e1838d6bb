// `attn-bench ab A B SPEC`: two builds on one spec in one command (docs/ci.md). A and B are
// each an executable attn-bench or a commit of the enclosing git repository (built in a
// temporary worktree with that commit's scripts/build.sh, then removed). The two run in
// interleaved rounds, ABBA…: round 1 runs A then B, round 2 B then A, and so on, each run a
// fresh process with the cases in an order shuffled per round, so what drifts on the machine
// hits both sides alike. The runs are compared with analysis/compare.hpp, paired by round.
// `--aa`: A against itself, to measure the machine's noise floor per case (--save-noise).
// Exit 0: no regression; 1: a regression (for --aa: a false alarm); 2: bad input; 3: a run
// or build failed; 130: interrupted.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/compare.hpp"
#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "core/host_info.hpp"
#include "spec/spec.hpp"
#include "runner/runner.hpp"

extern char** environ;

namespace ab::cli {

namespace {

namespace fs = std::filesystem;

struct AbOptions {
  std::vector<std::string> args;  // A B SPEC, or A SPEC with --aa
  bool aa = false;
  // 12 rounds: on the 2-core machine here, the stored runs of 40 real 5% slowdowns of one
  // variant, regrouped into decisions of 8, 10 and 12 rounds, were detected in 35%, 50% and 77%
  // of them (scripts/gate_experiment.py --regroup); one decision on configs/quick.yaml takes
  // about 100 s (docs/ci.md, "Measurements").
  int rounds = 12;
  std::string sampling = "short";
  std::string out;
  std::vector<std::string> sets;
  int threads = -1;
  std::string filter;
  bool no_shuffle = false;
  std::vector<std::string> metrics{"latency"};
  std::string max_slowdown = "3%";  // analysis::CompareOptions::max_slowdown says why
  double alpha = 0.05;
  double aggregate_share = 0.5;
  std::string noise;
  std::string save_noise;
  std::string markdown, json;
  std::string cmake_args = "-DATTN_CUDA=OFF -DATTN_BUILD_TESTS=OFF";
  bool no_adjust = false;
  bool no_moderate = false;
};

// `--sampling short`: each run samples briefly. Between-run variance dominates a run's median
// (docs/ci.md, "Short runs"), so the time goes further as more rounds than as more samples
// per run. Every case gets at least kShortMinTime seconds of samples (a 0.4 ms decode call: a
// few hundred; a 100 ms prefill: 3), since a median of three sub-millisecond samples moved
// between runs by more than the threshold. Put before the user's --set, which win.
const std::vector<std::string> kShortSampling = {
    "metrics.latency.warmup=1", "metrics.latency.min_samples=3", "metrics.latency.max_samples=1000",
    "metrics.latency.max_time=0.25"};
const std::string kShortMinTime = "metrics.latency.min_time=0.1";

std::atomic<bool> g_interrupted{false};
extern "C" void ab_on_sigint(int) { g_interrupted.store(true); }

// Runs argv (argv[0] looked up in PATH) with stdout and stderr appended to `log` ("" = inherit),
// `extra_env` added to the environment. Returns the exit status (128 + signal when killed).
int run_process(const std::vector<std::string>& argv, const std::string& log,
                const std::vector<std::string>& extra_env = {}) {
  std::vector<char*> av;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  std::vector<std::string> env_store(extra_env);
  std::vector<char*> ev;
  for (char** e = environ; *e; ++e) ev.push_back(*e);
  for (auto& e : env_store) ev.push_back(e.data());
  ev.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!log.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw RuntimeFailure(fmt::format("cannot start '{}': {}", argv[0], std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw RuntimeFailure(fmt::format("waiting for '{}' failed", argv[0]));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// stdout of a command (git), trimmed; nullopt when it fails.
std::optional<std::string> capture(const std::vector<std::string>& argv) {
  char tmpl[] = "/tmp/attn-ab-capture-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0) return std::nullopt;
  close(fd);
  std::vector<std::string> args = argv;
  const int rc = run_process(args, tmpl);
  std::ifstream f(tmpl);
  std::stringstream ss;
  ss << f.rdbuf();
  std::remove(tmpl);
  if (rc != 0) return std::nullopt;
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string tail_of(const std::string& path, std::size_t lines) {
  std::ifstream f(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(f, l);) all.push_back(l);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "    | " + all[i] + "\n";
  return out;
}

bool is_executable_file(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The temporary worktrees and builds of commits; removed when ab ends, however it ends.
class Builds {
 public:
  ~Builds() { cleanup(); }
  // The attn-bench built from `sha` of the repository at `repo` (once per sha).
  std::string binary_for(const std::string& repo, const std::string& sha, const std::string& label,
                         const std::string& cmake_args, const std::string& log) {
    for (const auto& b : built_)
      if (b.sha == sha) return b.binary;
    if (tmp_.empty()) {
      const char* base = std::getenv("TMPDIR");
      std::string tmpl = std::string(base && *base ? base : "/tmp") + "/attn-ab-XXXXXX";
      if (!mkdtemp(tmpl.data())) throw RuntimeFailure("cannot make a temporary directory for the builds");
      tmp_ = tmpl;
    }
    repo_ = repo;
    const std::string src = tmp_ + "/src-" + sha.substr(0, 12);
    const std::string build = tmp_ + "/build-" + sha.substr(0, 12);
    std::fprintf(stderr, "ab: building %s (%s) in %s (log %s)\n", label.c_str(), sha.substr(0, 12).c_str(),
                 src.c_str(), log.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    if (run_process({"git", "-C", repo, "worktree", "add", "--detach", "--quiet", src, sha}, log) != 0)
      throw RuntimeFailure(fmt::format("git worktree add for {} failed:\n{}", label, tail_of(log, 20)));
    worktrees_.push_back(src);
    std::vector<std::string> cmd = {"bash", src + "/scripts/build.sh"};
    for (auto& w : split_words(cmake_args)) cmd.push_back(w);
    const int rc = run_process(cmd, log, {"ATTN_BUILD_DIR=" + build});
    if (g_interrupted.load()) throw RuntimeFailure("interrupted while building");
    const std::string bin = build + "/attn-bench";
    if (rc != 0 || !is_executable_file(bin))
      throw RuntimeFailure(fmt::format("building {} ({}) failed (exit {}); the end of {}:\n{}", label,
                                       sha.substr(0, 12), rc, log, tail_of(log, 30)));
    std::fprintf(stderr, "ab: built %s in %.0f s\n", label.c_str(), seconds_since(t0));
    built_.push_back({sha, bin});
    return bin;
  }
  void cleanup() {
    for (const auto& w : worktrees_)
      run_process({"git", "-C", repo_, "worktree", "remove", "--force", w}, "/dev/null");
    if (!worktrees_.empty()) run_process({"git", "-C", repo_, "worktree", "prune"}, "/dev/null");
    worktrees_.clear();
    if (!tmp_.empty()) {
      std::error_code ec;
      fs::remove_all(tmp_, ec);
      tmp_.clear();
    }
  }

 private:
  struct Built {
    std::string sha, binary;
  };
  std::string tmp_, repo_;
  std::vector<std::string> worktrees_;
  std::vector<Built> built_;
};

struct SideSpec {
  std::string label;   // A or B
  std::string given;   // as typed
  std::string binary;  // absolute path of the attn-bench to run
  std::string commit;  // the sha when built from a commit
};

// An executable path is a binary; anything else must name a commit of the repository around
// the working directory.
SideSpec resolve_side(const std::string& label, const std::string& given, Builds& builds,
                      const std::string& cmake_args, const std::string& out) {
  SideSpec s{label, given, "", ""};
  if (is_executable_file(given)) {
    s.binary = fs::absolute(given).string();
    return s;
  }
  if (fs::exists(given))
    throw InputError(fmt::format("{} '{}' is a file but not executable (give an attn-bench binary or a commit)",
                                 label, given));
  const auto repo = capture({"git", "rev-parse", "--show-toplevel"});
  if (!repo)
    throw InputError(fmt::format("{} '{}' is neither an executable nor a commit: the working directory "
                                 "is not inside a git repository",
                                 label, given));
  const auto sha = capture({"git", "rev-parse", "--verify", "--quiet", given + "^{commit}"});
  if (!sha)
    throw InputError(fmt::format("{} '{}' is neither an executable file nor a commit of {}", label,
                                 given, *repo));
  s.commit = *sha;
  s.binary = builds.binary_for(*repo, *sha, label + " " + given, cmake_args,
                               out + "/logs/build-" + label + ".log");
  return s;
}

std::string utc_stamp_for_path() {
  std::string s = utc_timestamp();
  for (auto& ch : s)
    if (ch == ':') ch = '-';
  return s;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  if (!f) throw InputError(fmt::format("cannot write '{}'", path));
  f << text;
}

int run_ab(const AbOptions& o) {
  const std::size_t want = o.aa ? 2 : 3;
  if (o.args.size() != want)
    throw InputError(o.aa ? "usage: attn-bench ab --aa A SPEC (A: an attn-bench binary or a commit)"
                          : "usage: attn-bench ab A B SPEC (A, B: attn-bench binaries or commits)");
  if (o.rounds < 1) throw InputError("--rounds must be >= 1");
  const std::string spec = fs::absolute(o.args.back()).string();
  if (!fs::is_regular_file(spec)) throw InputError(fmt::format("spec '{}' not found", o.args.back()));
  analysis::CompareOptions copt;
  copt.max_slowdown = analysis::parse_fraction(o.max_slowdown, "--max-slowdown");
  copt.alpha = o.alpha;
  copt.aggregate_share = o.aggregate_share;
  copt.allow_mismatch = true;  // both sides run here, now; build differences are printed
  copt.adjust_common_shift = !o.no_adjust;
  copt.moderate = !o.no_moderate;
  if (o.sampling != "short" && o.sampling != "spec")
    throw InputError(fmt::format("--sampling '{}': expected short or spec", o.sampling));
  std::vector<std::string> sets;
  {
    const Experiment ex = load_experiment(spec, o.sets);  // bad spec or --set: exit 2 here
    if (o.sampling == "short" && ex.metrics.contains("latency")) {
      sets = kShortSampling;
      sets.push_back(kShortMinTime);
    }
    if (!o.filter.empty() && select_cases(ex, o.filter).empty())
      throw InputError(fmt::format("--filter '{}' matches none of the spec's {} case ids", o.filter,
                                   ex.cases.size()));
  }
  sets.insert(sets.end(), o.sets.begin(), o.sets.end());
  const auto names = analysis::compare_metric_names();
  for (const auto& m : o.metrics)
    if (std::find(names.begin(), names.end(), m) == names.end())
      throw InputError(fmt::format("--metric '{}': {}", m, suggest(m, names)));
  std::optional<analysis::NoiseCalibration> noise;
  if (!o.noise.empty()) {
    noise = analysis::load_noise(o.noise);
    copt.noise = &*noise;
  }
  const std::string out = o.out.empty() ? "results/ab/" + utc_stamp_for_path() : o.out;
  for (const char* sub : {"/A", "/B"})
    if (fs::exists(out + sub))
      throw InputError(fmt::format("'{}' already holds runs ({} exists); give a fresh --out", out, out + sub));
  fs::create_directories(out + "/logs");

  g_interrupted.store(false);
  auto old_handler = std::signal(SIGINT, ab_on_sigint);
  struct Restore {
    decltype(old_handler) h;
    ~Restore() { std::signal(SIGINT, h); }
  } restore{old_handler};

  Builds builds;
  const auto t_build = std::chrono::steady_clock::now();
  const SideSpec a = resolve_side("A", o.args[0], builds, o.cmake_args, out);
  const SideSpec b = o.aa ? SideSpec{"B", o.args[0], a.binary, a.commit}
                          : resolve_side("B", o.args[1], builds, o.cmake_args, out);
  const double build_s = seconds_since(t_build);
  fs::create_directories(out + "/A");
  fs::create_directories(out + "/B");

  // An older binary may not know --shuffle: then the spec's order is kept, and said.
  auto knows_shuffle = [&](const SideSpec& s) {
    const std::string log = out + "/logs/help-" + s.label + ".txt";
    run_process({s.binary, "run", "--help"}, log);
    std::ifstream f(log);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str().find("--shuffle") != std::string::npos;
  };
  const bool shuffle = !o.no_shuffle && knows_shuffle(a) && knows_shuffle(b);
  if (!o.no_shuffle && !shuffle)
    std::fprintf(stderr, "ab: note: a side's attn-bench has no `run --shuffle`; cases run in the spec's order\n");
  // An older binary may not know metrics.latency.min_time: then both sides sample without it.
  if (std::find(sets.begin(), sets.end(), kShortMinTime) != sets.end()) {
    auto knows_min_time = [&](const SideSpec& s) {
      const std::string log = out + "/logs/min-time-" + s.label + ".txt";
      return run_process({s.binary, "validate", spec, "--set", kShortMinTime}, log) == 0;
    };
    if (!knows_min_time(a) || !knows_min_time(b)) {
      sets.erase(std::find(sets.begin(), sets.end(), kShortMinTime));
      std::fprintf(stderr, "ab: note: a side's attn-bench has no metrics.latency.min_time; runs sample without it\n");
    }
  }

  const auto t_runs = std::chrono::steady_clock::now();
  for (int r = 0; r < o.rounds; ++r) {
    const SideSpec* order[2] = {&a, &b};
    if (r % 2) std::swap(order[0], order[1]);  // ABBA: drift within a round hits both sides alike
    for (const SideSpec* s : order) {
      if (g_interrupted.load()) break;
      const std::string report = fmt::format("{}/{}/run-{:02d}.json", out, s->label, r + 1);
      const std::string log = fmt::format("{}/logs/run-{}-{:02d}.log", out, s->label, r + 1);
      std::vector<std::string> cmd = {s->binary, "run", spec, "-o", report, "-q"};
      for (const auto& kv : sets) {
        cmd.push_back("--set");
        cmd.push_back(kv);
      }
      if (o.threads >= 0) {
        cmd.push_back("--threads");
        cmd.push_back(std::to_string(o.threads));
      }
      if (!o.filter.empty()) {
        cmd.push_back("--filter");
        cmd.push_back(o.filter);
      }
      if (shuffle) {
        cmd.push_back("--shuffle");
        cmd.push_back(std::to_string(1000 + r));
      }
      const auto t0 = std::chrono::steady_clock::now();
      const int rc = run_process(cmd, log);
      if (g_interrupted.load() || rc == 130) {
        g_interrupted.store(true);
        break;
      }
      std::fprintf(stderr, "ab: round %d/%d %s %.1f s%s\n", r + 1, o.rounds, s->label.c_str(),
                   seconds_since(t0), rc == 1 ? " (some cases failed)" : "");
      if (rc == 2)
        throw InputError(fmt::format("{} refused the spec or the options (exit 2); {}:\n{}", s->label, log,
                                     tail_of(log, 15)));
      if (rc != 0 && rc != 1)
        throw RuntimeFailure(fmt::format("{}'s run failed (exit {}); {}:\n{}", s->label, rc, log, tail_of(log, 15)));
    }
    if (g_interrupted.load()) break;
  }
  if (g_interrupted.load()) {
    std::fprintf(stderr, "ab: interrupted; the finished runs are in %s\n", out.c_str());
    return 130;
  }
  const double runs_s = seconds_since(t_runs);
  builds.cleanup();

  const auto base = analysis::load_runs(out + "/A");
  const auto next = analysis::load_runs(out + "/B");
  std::string text = fmt::format("ab: A = {}{}\n    B = {}{}\n    spec {}, {} round(s) ABBA, {}; "
                                 "runs took {:.0f} s{}\n\n",
                                 a.given, a.commit.empty() ? "" : " (" + a.commit.substr(0, 12) + ")",
                                 o.aa ? a.given + " again (A/A)" : b.given,
                                 b.commit.empty() || o.aa ? "" : " (" + b.commit.substr(0, 12) + ")",
                                 o.args.back(), o.rounds, shuffle ? "cases shuffled per round" : "spec order",
                                 runs_s, build_s > 1 ? fmt::format(", builds {:.0f} s", build_s) : "");
  std::string markdown, json_text;
  analysis::Json json_all = analysis::Json::array();
  int rc = 0;
  for (const auto& metric : o.metrics) {
    analysis::CompareOptions c = copt;
    c.metric = metric;
    const analysis::Comparison cmp = analysis::compare_runs(base, next, c);
    text += analysis::render_comparison(cmp) + "\n";
    markdown += analysis::render_comparison_markdown(cmp) + "\n";
    json_all.push_back(analysis::comparison_json(cmp));
    rc = std::max(rc, analysis::comparison_exit_code(cmp));
  }
  if (o.aa) {
    analysis::Json meta = {{"spec", {{"path", spec}, {"sha256", analysis::lookup_text(base.front().doc, "meta.spec.sha256")}}},
                           {"host", base.front().doc["meta"].value("host", analysis::Json::object())},
                           {"threads", analysis::lookup_text(base.front().doc, "meta.run.threads")},
                           {"binary", a.given},
                           {"rounds", o.rounds},
                           {"sets", sets},
                           {"created", utc_timestamp()},
                           {"runs", out}};
    const analysis::Json noise_doc = analysis::noise_from_aa(base, next, meta);
    write_text(out + "/noise.json", noise_doc.dump(2) + "\n");
    if (!o.save_noise.empty()) write_text(o.save_noise, noise_doc.dump(2) + "\n");
    text += fmt::format("A/A noise calibration: {}{} ({} cases; median sigma {:.2f}%, max {:.2f}%). "
                        "Give it to `compare`/`ab` with --noise.\n",
                        out + "/noise.json", o.save_noise.empty() ? "" : " and " + o.save_noise,
                        noise_doc["cases"].size(),
                        noise_doc.contains("summary") ? noise_doc["summary"]["median_sigma"].get<double>() * 100 : 0.0,
                        noise_doc.contains("summary") ? noise_doc["summary"]["max_sigma"].get<double>() * 100 : 0.0);
    if (rc == 1)
      text += "A/A FALSE ALARM: the gate flagged a binary against itself; its threshold is below this "
              "machine's noise (docs/ci.md, \"Choosing a threshold\")\n";
  }
  if (o.noise.empty() && !o.aa && o.rounds < 6)
    text += fmt::format("note: no noise calibration: each case's interval rests on {} rounds ({} degrees "
                        "of freedom). `attn-bench ab --aa A SPEC --save-noise F` once, then `--noise F`, "
                        "narrows them (docs/ci.md)\n",
                        o.rounds, o.rounds - 1);
  std::cout << text;
  std::cout.flush();
  write_text(out + "/verdict.txt", text);
  write_text(out + "/verdict.md", markdown);
  write_text(out + "/verdict.json", json_all.dump(2) + "\n");
  if (!o.markdown.empty()) write_text(o.markdown, markdown);
  if (!o.json.empty()) write_text(o.json, json_all.dump(2) + "\n");
  std::fprintf(stderr, "ab: runs and verdict in %s\n", out.c_str());
  return rc;
}

}  // namespace

void setup_ab(CLI::App& app, Action& action) {
  auto o = std::make_shared<AbOptions>();
  CLI::App* sub = app.add_subcommand(
      "ab", "Run two builds (binaries or commits) on one spec in interleaved rounds and compare them; "
            "exit 1 on a regression");
  sub->add_option("args", o->args, "A B SPEC (or A SPEC with --aa); A, B: an attn-bench binary or a commit")
      ->required();
  sub->add_flag("--aa", o->aa, "A against itself: measure this machine's noise floor per case");
  sub->add_option("--rounds,-r", o->rounds, "ABBA rounds (each runs both sides once)")->capture_default_str();
  sub->add_option("-o,--out", o->out, "directory for the runs and the verdict (default results/ab/<time>)");
  sub->add_option("--set", o->sets, "override a spec key in every run: KEY=VALUE");
  sub->add_option("--threads", o->threads, "CPU threads of every run (0 = every core)")->check(CLI::Range(0, 4096));
  sub->add_option("--filter", o->filter, "run only cases whose id matches this regex");
  sub->add_flag("--no-shuffle", o->no_shuffle, "run cases in the spec's order");
  sub->add_option("--sampling", o->sampling,
                  "short: every run samples briefly (warmup 1, min_samples 3, max_time 0.25 s), "
                  "so time goes to rounds; spec: the spec's latency settings")
      ->capture_default_str();
  sub->add_flag("--no-adjust", o->no_adjust, "latency: do not take out each run's common shift over cases");
  sub->add_flag("--no-moderate", o->no_moderate,
                "latency: each case's interval from its own runs only (no variance pooled over cases)");
  sub->add_option("--metric,-m", o->metrics,
                  "what to gate on, repeatable: latency, flops, bytes, density, recall, error")
      ->capture_default_str();
  sub->add_option("--max-slowdown", o->max_slowdown,
                  "latency: REGRESSED when new/base exceeds 1 + this and its interval lies above 1")
      ->capture_default_str();
  sub->add_option("--alpha", o->alpha,
                  "latency: the chance that identical code fails the gate stays below this (split over the tests)")
      ->capture_default_str();
  sub->add_option("--aggregate-share", o->aggregate_share,
                  "latency: the share of alpha spent on the per-variant and summary tests")
      ->capture_default_str();
  sub->add_option("--noise", o->noise, "a noise calibration (from --aa) pooled into the run-to-run variance");
  sub->add_option("--save-noise", o->save_noise, "--aa: also write the calibration here");
  sub->add_option("--markdown", o->markdown, "also write the verdict as markdown (a PR comment)");
  sub->add_option("--json", o->json, "also write the verdict as JSON");
  sub->add_option("--cmake-args", o->cmake_args, "configure arguments for building commits")
      ->capture_default_str();
  sub->callback([o, &action] { action = [o] { return run_ab(*o); }; });
}

}  // namespace ab::cli
