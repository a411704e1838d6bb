#include "spec/spec.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/errors.hpp"
#include "variants/registry.hpp"
#include "metrics/metrics.hpp"
#include "workloads/workloads.hpp"
#include "workloads/extra_inputs.hpp"

namespace ab {
namespace {

using json = nlohmann::ordered_json;

// Locates nodes for messages: "spec.yaml:12:5: problem.kv_heads: ...". Values that came from
// --set are named by their override instead of a file position.
struct Where {
  std::string file;
  std::set<std::string> overridden;  // dotted paths set on the command line

  std::string at(const YAML::Node& n, const std::string& path) const {
    for (const auto& o : overridden)
      if (path == o || path.rfind(o + ".", 0) == 0 || path.rfind(o + "[", 0) == 0)
        return "--set " + o + ": " + path;
    std::string loc = file;
    if (n.IsDefined() && n.Mark().line >= 0)
      loc += ":" + std::to_string(n.Mark().line + 1) + ":" + std::to_string(n.Mark().column + 1);
    return loc + ": " + path;
  }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& path, const std::string& msg) const {
    throw InputError(at(n, path) + ": " + msg);
  }
};

const std::vector<std::string> kTopKeys = {"name",   "description", "seed",    "device",
                                           "dtype",  "threads",     "problem", "variants",
                                           "metrics", "baseline",   "input"};
const std::vector<std::string> kProblemKeys = {"batch",  "heads",  "kv_heads", "head_dim",
                                               "v_dim",  "seq_len", "q_len",   "kv_len",
                                               "causal", "mode",    "steps"};

// A map key as a string. check_tree has refused non-scalar keys before any of this runs.
std::string key_of(const YAML::Node& k) { return k.IsScalar() ? k.Scalar() : std::string(); }

constexpr int64_t kMaxInt32 = 2147483647;
// A spec is a few levels deep (variants[1].param, metrics.niah.depths[0]); these bounds stop
// a recursive YAML alias (&a [*a]) or an alias bomb before anything walks the tree.
constexpr int kMaxDepth = 32;
constexpr int64_t kMaxNodes = 200000;

// Walks the whole tree once, before anything reads it: map keys must be scalars, a key must
// not repeat within a map (YAML 1.2 §3.2.1.1 requires unique keys; yaml-cpp keeps both and
// lookups see the first), and the tree (aliases expanded) must stay within kMaxDepth levels
// and kMaxNodes nodes.
void check_tree(const Where& w, const YAML::Node& n, const std::string& path, int depth, int64_t& budget) {
  if (depth > kMaxDepth)
    w.fail(n, path, "nested deeper than " + std::to_string(kMaxDepth) + " levels (a recursive alias?)");
  if (--budget < 0)
    w.fail(n, path, "the spec expands to more than " + std::to_string(kMaxNodes) +
                        " values (aliases that expand exponentially?)");
  if (n.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar())
        w.fail(kv.first, path.empty() ? "(key)" : path + ".(key)",
               std::string("a key must be a plain name, not a ") + (kv.first.IsMap() ? "map" : kv.first.IsSequence() ? "list" : "null"));
      const std::string k = kv.first.Scalar();
      const std::string kp = path.empty() ? k : path + "." + k;
      const auto [it, fresh] = seen.emplace(k, kv.first.Mark());
      if (!fresh)
        w.fail(kv.first, kp, "duplicate key '" + k + "' (first at " + w.file + ":" + std::to_string(it->second.line + 1) +
                                 ":" + std::to_string(it->second.column + 1) + "); a key may appear once per map");
      check_tree(w, kv.second, kp, depth + 1, budget);
    }
  } else if (n.IsSequence()) {
    size_t i = 0;
    for (const auto& e : n) check_tree(w, e, path + "[" + std::to_string(i++) + "]", depth + 1, budget);
  }
}

void check_keys(const Where& w, const YAML::Node& map, const std::string& path,
                const std::vector<std::string>& allowed) {
  for (const auto& kv : map) {
    const std::string k = key_of(kv.first);
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      w.fail(kv.first, path.empty() ? k : path + "." + k, "unknown key: " + suggest(k, allowed));
  }
}

// Scalars --------------------------------------------------------------------------------
int64_t as_int(const Where& w, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) w.fail(n, path, "expected an integer");
  // Accept 1k/4k/1M shorthands: lengths read better that way in specs.
  std::string s = n.Scalar();
  int64_t mult = 1;
  if (!s.empty() && (s.back() == 'k' || s.back() == 'K')) mult = 1024, s.pop_back();
  else if (!s.empty() && s.back() == 'M') mult = 1024 * 1024, s.pop_back();
  long long v = 0;
  try {
    size_t pos = 0;
    v = std::stoll(s, &pos);
    if (pos != s.size() || s.empty() || std::isspace(static_cast<unsigned char>(s[0])))
      throw std::invalid_argument(s);
  } catch (const std::out_of_range&) {
    w.fail(n, path, "'" + n.Scalar() + "' is out of range (integers here are below 2^63)");
  } catch (const std::exception&) {
    w.fail(n, path, "expected an integer, got '" + n.Scalar() + "'");
  }
  int64_t out = 0;
  if (__builtin_mul_overflow(static_cast<int64_t>(v), mult, &out))
    w.fail(n, path, "'" + n.Scalar() + "' is out of range (integers here are below 2^63)");
  return out;
}

double as_double(const Where& w, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) w.fail(n, path, "expected a number");
  double v = 0;
  try {
    size_t pos = 0;
    v = std::stod(n.Scalar(), &pos);
    if (pos != n.Scalar().size()) throw std::invalid_argument(n.Scalar());
  } catch (const std::exception&) {
    w.fail(n, path, "expected a number, got '" + n.Scalar() + "'");
  }
  // NaN and infinities (std::stod reads "nan", "inf") are never a meaningful option here.
  if (!std::isfinite(v)) w.fail(n, path, "expected a finite number, got '" + n.Scalar() + "'");
  return v;
}

bool as_bool(const Where& w, const YAML::Node& n, const std::string& path) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  w.fail(n, path, "expected true or false");
}

std::string as_string(const Where& w, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) w.fail(n, path, "expected a string");
  return n.Scalar();
}

// An axis may be a scalar or a non-empty list (swept).
std::vector<YAML::Node> axis(const Where& w, const YAML::Node& n, const std::string& path) {
  std::vector<YAML::Node> v;
  if (n.IsSequence()) {
    if (n.size() == 0) w.fail(n, path, "an empty list sweeps nothing: give a value or a list of values");
    for (const auto& e : n) v.push_back(e);
  } else {
    v.push_back(n);
  }
  return v;
}

// Scalar -> ParamValue, typed by the parameter's schema.
ParamValue param_value(const Where& w, const YAML::Node& n, const std::string& path,
                       const ParamSpec* spec) {
  if (!n.IsScalar()) w.fail(n, path, "expected a scalar parameter value");
  const ParamType t = spec ? spec->type : ParamType::string;
  switch (t) {
    case ParamType::integer: {
      // Variant parameters (block sizes, windows, head counts) are used as int: a value that
      // would be truncated on the way is refused here rather than silently wrapped.
      const int64_t v = as_int(w, n, path);
      if (v > kMaxInt32 || v < -kMaxInt32)
        w.fail(n, path, std::to_string(v) + " is out of range (|value| <= 2^31 - 1)");
      return v;
    }
    case ParamType::number: return as_double(w, n, path);
    case ParamType::boolean: return as_bool(w, n, path);
    case ParamType::string: return n.Scalar();
  }
  return n.Scalar();
}

// YAML -> JSON for metric and input options (scalars typed by a best guess). check_tree has
// bounded the depth and size of the tree; the depth guard here keeps this function safe alone.
json to_json(const YAML::Node& n, int depth = 0) {
  if (depth > kMaxDepth) throw InputError("value nested deeper than " + std::to_string(kMaxDepth) + " levels");
  if (n.IsMap()) {
    json j = json::object();
    for (const auto& kv : n) j[key_of(kv.first)] = to_json(kv.second, depth + 1);
    return j;
  }
  if (n.IsSequence()) {
    json j = json::array();
    for (const auto& e : n) j.push_back(to_json(e, depth + 1));
    return j;
  }
  if (n.IsNull() || !n.IsDefined()) return nullptr;
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  if (s == "true" || s == "false") return s == "true";
  try {
    size_t pos = 0;
    const long long i = std::stoll(s, &pos);
    if (pos == s.size()) return static_cast<int64_t>(i);
  } catch (const std::exception&) {
  }
  try {
    size_t pos = 0;
    const double d = std::stod(s, &pos);
    // Non-finite values stay strings: an option typed as a number then refuses them.
    if (pos == s.size() && std::isfinite(d)) return d;
  } catch (const std::exception&) {
  }
  return s;
}

// Options checked against defaults: unknown keys refused, types must match the default's.
json merge_options(const Where& w, const YAML::Node& node, const std::string& path,
                   const json& defaults) {
  json out = defaults;
  if (!node.IsDefined() || node.IsNull()) return out;
  if (!node.IsMap()) w.fail(node, path, "expected a map of options");
  std::vector<std::string> allowed;
  for (auto it = defaults.begin(); it != defaults.end(); ++it) allowed.push_back(it.key());
  for (const auto& kv : node) {
    const std::string k = key_of(kv.first);
    if (!defaults.contains(k))
      w.fail(kv.first, path + "." + k, "unknown option: " + suggest(k, allowed));
    json v = to_json(kv.second);
    const json& d = defaults[k];
    const bool num_ok = d.is_number() && v.is_number();
    const bool same = d.is_null() || num_ok || d.type() == v.type() ||
                      (d.is_string() && !v.is_object() && !v.is_array());
    if (!same) w.fail(kv.second, path + "." + k, "expected a value like " + d.dump());
    if (d.is_string() && !v.is_string()) v = kv.second.Scalar();
    if (d.is_number_float() && v.is_number_integer()) v = v.get<double>();
    if (d.is_number_integer() && v.is_number_float())
      w.fail(kv.second, path + "." + k, "expected an integer");
    out[k] = v;
  }
  return out;
}

// Checked ranges of numeric metric and input options (those whose metric or workload has no
// validate function of its own). Values outside would be accepted and then misbehave: a
// negative warmup, max_samples 0, a target_rse below zero that can never be met.
struct OptionRange {
  const char* block;  // "metrics.latency", "input.gaussian", ...
  const char* key;
  double lo, hi;
  bool lo_open;       // lo itself is excluded
};
constexpr OptionRange kOptionRanges[] = {
    {"metrics.latency", "warmup", 0, 1e6, false},
    {"metrics.latency", "min_samples", 1, 1e7, false},
    {"metrics.latency", "max_samples", 1, 1e7, false},
    {"metrics.latency", "target_rse", 0, 1, false},
    {"metrics.latency", "max_time", 0, 1e6, true},
    {"metrics.latency", "min_time", 0, 1e6, false},
    {"metrics.accuracy", "rows", 1, 1e7, false},
    {"input.gaussian", "std", 0, 1e6, true},
};

void check_ranges(const Where& w, const YAML::Node& node, const std::string& block, const json& opts) {
  auto at = [&](const std::string& k) { return node.IsMap() && node[k] ? node[k] : node; };
  for (const auto& r : kOptionRanges) {
    if (block != r.block || !opts.contains(r.key) || !opts[r.key].is_number()) continue;
    const double v = opts[r.key].get<double>();
    if (v > r.hi || v < r.lo || (r.lo_open && v == r.lo)) {
      char lo[32], hi[32];
      std::snprintf(lo, sizeof lo, "%g", r.lo);
      std::snprintf(hi, sizeof hi, "%g", r.hi);
      w.fail(at(r.key), (block.rfind("input.", 0) == 0 ? std::string("input") : block) + "." + r.key,
             opts[r.key].dump() + " is out of range: must be " + (r.lo_open ? "> " : ">= ") + lo + " and <= " + hi);
    }
  }
  if (block == "metrics.latency") {
    if (opts["min_samples"].get<double>() > opts["max_samples"].get<double>())
      w.fail(at("min_samples"), "metrics.latency.min_samples",
             "min_samples (" + opts["min_samples"].dump() + ") exceeds max_samples (" + opts["max_samples"].dump() + ")");
    if (opts["min_time"].get<double>() > opts["max_time"].get<double>())
      w.fail(at("min_time"), "metrics.latency.min_time",
             "min_time (" + opts["min_time"].dump() + ") exceeds max_time (" + opts["max_time"].dump() + ")");
    const std::string cache = opts["cache"].get<std::string>();
    if (cache != "hot" && cache != "cold")
      w.fail(at("cache"), "metrics.latency.cache", "unknown cache mode '" + cache + "': " + suggest(cache, {"hot", "cold"}));
  }
}

// YAML::LoadAll of yaml-cpp 0.7 never returns on a stream whose top level holds a stray ','
// (a flow entry outside any flow collection: ",", "[a]\n,", "a: 1\n---\n,"): its parser
// emits an empty document without consuming the token, again and again, and memory grows
// without bound (found by the spec fuzzer, fuzz/regressions/spec). A first pass over the
// parser's events stops where a document starts at the same place as the one before it.
class DocumentStarts final : public YAML::EventHandler {
 public:
  YAML::Mark start;
  void OnDocumentStart(const YAML::Mark& m) override { start = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::vector<YAML::Node> load_all_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  int previous = -1;
  while (parser.HandleNextDocument(starts)) {
    if (starts.start.pos == previous)
      throw YAML::ParserException(starts.start, "unexpected ',' outside a flow collection ([...] or {...})");
    previous = starts.start.pos;
  }
  return YAML::LoadAll(text);
}

// --set KEY=VALUE: VALUE is YAML ("[1024,4096]", "true", "gqa"). KEY is a dotted path whose
// parts may index a list: variants[1].kv_heads, problem.seq_len[0].
void apply_override(YAML::Node root, const std::string& kv, Where& w) {
  const auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError("--set " + kv + ": expected KEY=VALUE (e.g. problem.seq_len=[1024,4096])");
  const std::string key = kv.substr(0, eq);
  YAML::Node value;
  try {
    const std::vector<YAML::Node> docs = load_all_documents(kv.substr(eq + 1));
    if (docs.size() > 1) throw InputError("--set " + key + ": the value holds several YAML documents");
    value = docs.empty() ? YAML::Node() : docs[0];
  } catch (const YAML::Exception& e) {
    throw InputError("--set " + key + ": value is not valid YAML: " + e.msg);
  }
  // Parse the path: name, then any number of [index].
  struct Part {
    std::string name;  // "" for an index step
    long index = -1;
  };
  std::vector<Part> parts;
  auto bad = [&](const std::string& why) -> void {
    throw InputError("--set " + key + ": " + why + " (KEY is a dotted path such as problem.seq_len or variants[1].kv_heads)");
  };
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) {
    const auto br = p.find('[');
    const std::string name = p.substr(0, br);
    if (name.empty()) bad("empty name in the path");
    parts.push_back({name});
    for (size_t i = br; i != std::string::npos && i < p.size();) {
      const auto close = p.find(']', i);
      if (p[i] != '[' || close == std::string::npos) bad("malformed index in '" + p + "'");
      const std::string digits = p.substr(i + 1, close - i - 1);
      if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos)
        bad("list index '" + digits + "' is not a non-negative integer");
      parts.push_back({"", std::stol(digits)});
      i = close + 1;
    }
  }
  if (!key.empty() && key.back() == '.') bad("empty name in the path");
  // Walk with fresh handles: yaml-cpp nodes are references, so assigning through a copied
  // handle writes into the tree.
  std::string walked;
  std::function<void(YAML::Node, size_t)> set = [&](YAML::Node n, size_t i) {
    const Part& p = parts[i];
    const bool last = i + 1 == parts.size();
    if (p.index >= 0) {
      if (!n.IsSequence())
        bad("'" + walked + "' is not a list, so it has no entry [" + std::to_string(p.index) + "]");
      if (static_cast<size_t>(p.index) >= n.size())
        bad("'" + walked + "' has " + std::to_string(n.size()) + " entries; [" + std::to_string(p.index) + "] is past its end");
      walked += "[" + std::to_string(p.index) + "]";
      if (last) {
        n[p.index] = value;
        return;
      }
      YAML::Node e = n[p.index];
      // A list entry given by name alone (variants: [mha, gqa]) becomes {name: gqa} so that a
      // parameter can be set on it.
      if (e.IsScalar() && !parts[i + 1].name.empty()) {
        YAML::Node m(YAML::NodeType::Map);
        m["name"] = e.Scalar();
        n[p.index] = m;
      }
      set(n[p.index], i + 1);
      return;
    }
    walked += (walked.empty() ? "" : ".") + p.name;
    if (!n.IsMap()) bad("'" + walked + "': its parent is not a map");
    if (last) {
      n[p.name] = value;
      return;
    }
    const bool next_is_index = parts[i + 1].index >= 0;
    if (!n[p.name] || (!next_is_index && !n[p.name].IsMap())) {
      if (next_is_index) bad("'" + walked + "' is not in the spec, so it has no list entries to set");
      n[p.name] = YAML::Node(YAML::NodeType::Map);
    }
    set(n[p.name], i + 1);
  };
  set(root, 0);
  w.overridden.insert(key);
}

struct ProblemAxes {
  std::vector<std::pair<std::string, std::vector<YAML::Node>>> axes;  // in kProblemKeys order
};

}  // namespace

std::string sha256_hex(const std::string& bytes);  // below

namespace {

// The byte offset of the first invalid UTF-8 sequence, or npos. Every string of a spec ends up
// in the JSON report, which must be UTF-8 (a dump of invalid UTF-8 throws).
size_t invalid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    for (int k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return i;
    i += n;
  }
  return std::string::npos;
}

// Why `c` cannot run point `p` of the sweep ("" when it can): a mode it lacks, parameters that
// do not fit the shape, input files that do not fit it. `shape` receives the shape it runs.
std::string case_refusal(const Variant& variant, const VariantChoice& c, const Problem& p, AttnShape* shape) {
  const RegistryEntry* entry = find_variant(c.name);
  const auto& modes = entry->info.modes;
  if (std::find(modes.begin(), modes.end(), p.mode) == modes.end())
    return "variant '" + c.label + "' does not support mode " + std::string(mode_name(p.mode));
  try {
    const AttnShape s = variant.shape(p);  // impossible parameters fail here, before any case runs
    check_extra_input_files(variant, s);    // and input files that do not fit it
    if (shape) *shape = s;
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

Experiment parse_tree(const std::string& text, const std::string& path,
                      const std::vector<std::string>& overrides, bool lazy) {
  Where w{path, {}};
  if (const size_t bad = invalid_utf8(text); bad != std::string::npos) {
    const size_t line = static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<long>(bad), '\n')) + 1;
    const size_t nl = text.rfind('\n', bad == 0 ? 0 : bad - 1);
    const size_t col = bad - (nl == std::string::npos || bad == 0 ? 0 : nl + 1) + 1;
    throw InputError(path + ":" + std::to_string(line) + ":" + std::to_string(col) + ": the spec is not valid UTF-8");
  }
  for (const auto& o : overrides)
    if (invalid_utf8(o) != std::string::npos) throw InputError("--set " + o.substr(0, o.find('=')) + ": not valid UTF-8");
  YAML::Node root;
  try {
    const std::vector<YAML::Node> docs = load_all_documents(text);
    if (docs.size() > 1) {
      const YAML::Mark m = docs[1].Mark();
      throw InputError(path + (m.line >= 0 ? ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) : "") +
                       ": the file holds " + std::to_string(docs.size()) +
                       " YAML documents (separated by ---); a spec is one document");
    }
    if (!docs.empty()) root = docs[0];
  } catch (const YAML::ParserException& e) {
    throw InputError(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                     std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw InputError(path + ": YAML error: " + e.msg);
  }
  if (!root.IsMap()) {
    if (!root.IsDefined() || root.IsNull()) throw InputError(path + ": the spec is empty");
    w.fail(root, "(top level)", "expected a map with keys: problem, variants, metrics, ...");
  }
  {
    int64_t budget = kMaxNodes;
    check_tree(w, root, "", 0, budget);  // before --set: duplicates are located in the file
  }
  for (const auto& o : overrides) apply_override(root, o, w);
  {
    int64_t budget = kMaxNodes;
    check_tree(w, root, "", 0, budget);  // the values --set brought in
  }
  check_keys(w, root, "", kTopKeys);

  Experiment ex;
  ex.path = path;
  ex.sha256 = sha256_hex(text);
  if (root["name"]) ex.name = as_string(w, root["name"], "name");
  if (root["description"]) ex.description = as_string(w, root["description"], "description");
  if (root["seed"]) {
    const int64_t s = as_int(w, root["seed"], "seed");
    if (s < 0) w.fail(root["seed"], "seed", "must be >= 0");
    ex.seed = static_cast<uint64_t>(s);
  }
  if (root["device"]) {
    ex.device = as_string(w, root["device"], "device");
    if (ex.device != "cpu" && ex.device != "cuda" && ex.device != "fake" && ex.device != "auto")
      w.fail(root["device"], "device", "unknown device '" + ex.device + "': " +
                                           suggest(ex.device, {"cpu", "cuda", "fake", "auto"}));
  }
  if (root["threads"]) {
    const int64_t t = as_int(w, root["threads"], "threads");
    if (t < 0 || t > 4096) w.fail(root["threads"], "threads", "must be between 0 (all cores) and 4096");
    ex.threads = static_cast<int>(t);
  }

  // dtype: one or a list (swept like a problem axis).
  std::vector<DType> dtypes = {DType::f32};
  if (root["dtype"]) {
    dtypes.clear();
    int idx = 0;
    for (const auto& n : axis(w, root["dtype"], "dtype")) {
      const std::string p = "dtype" + (root["dtype"].IsSequence() ? "[" + std::to_string(idx) + "]" : "");
      const std::string s = as_string(w, n, p);
      const auto t = parse_dtype(s);
      if (!t) w.fail(n, p, "unknown dtype '" + s + "': " + suggest(s, {"f32", "f16", "bf16"}));
      dtypes.push_back(*t);
      ++idx;
    }
  }

  // problem ------------------------------------------------------------------------------
  const YAML::Node prob = root["problem"];
  if (!prob) w.fail(root, "problem", "missing: the spec needs a problem block (heads, head_dim, seq_len, ...)");
  if (!prob.IsMap()) w.fail(prob, "problem", "expected a map of axes");
  check_keys(w, prob, "problem", kProblemKeys);
  if (!prob["seq_len"] && !prob["kv_len"])
    w.fail(prob, "problem", "needs seq_len (or kv_len, with q_len for prefill)");
  if (prob["seq_len"] && (prob["kv_len"]))
    w.fail(prob["kv_len"], "problem.kv_len", "give either seq_len or kv_len, not both");

  std::vector<std::pair<std::string, std::vector<YAML::Node>>> axes;
  for (const auto& k : kProblemKeys)
    if (prob[k]) axes.push_back({k, axis(w, prob[k], "problem." + k)});

  // The grid's axes are expanded in memory, its cases on demand when loaded lazily
  // (Experiment::case_at): refuse one too large before building it.
  constexpr uint64_t kMaxCases = 1000000;
  auto grid_size = [&](uint64_t acc, size_t n, const YAML::Node& at, const std::string& what) {
    if (n != 0 && acc > kMaxCases / n)
      w.fail(at, what, "the sweep has more than " + std::to_string(kMaxCases) + " points; split it into several specs");
    return acc * n;
  };
  uint64_t n_points = dtypes.size();
  for (const auto& [k, nodes] : axes) n_points = grid_size(n_points, nodes.size(), prob[k], "problem." + k);

  std::vector<Problem> problems;
  std::vector<size_t> idx(axes.size(), 0);
  while (true) {
    Problem p;
    bool q_given = false, h_kv_given = false, dv_given = false, causal_given = false;
    const YAML::Node* steps_node = nullptr;
    std::string steps_path;
    int64_t seq = -1;
    for (size_t a = 0; a < axes.size(); ++a) {
      const std::string& k = axes[a].first;
      const YAML::Node& n = axes[a].second[idx[a]];
      const std::string path = "problem." + k + (axes[a].second.size() > 1 ? "[" + std::to_string(idx[a]) + "]" : "");
      // Ranges: head counts and dimensions are int in every kernel; lengths are int64 but
      // bounded so that byte and FLOP counts (B*H*N*N*D) stay representable in a double with
      // integer precision for the pre-flight estimate. Anything this large is refused by the
      // pre-flight memory check long before it could run.
      auto positive = [&](int64_t v, int64_t max) {
        if (v <= 0) w.fail(n, path, "must be a positive integer, got " + std::to_string(v));
        if (v > max) w.fail(n, path, std::to_string(v) + " is out of range (at most " + std::to_string(max) + ")");
        return v;
      };
      constexpr int64_t kMaxCount = 1 << 20, kMaxDim = 1 << 16, kMaxLen = int64_t{1} << 40;
      if (k == "batch") p.batch = static_cast<int>(positive(as_int(w, n, path), kMaxCount));
      else if (k == "heads") p.heads = static_cast<int>(positive(as_int(w, n, path), kMaxCount));
      else if (k == "kv_heads") p.kv_heads = static_cast<int>(positive(as_int(w, n, path), kMaxCount)), h_kv_given = true;
      else if (k == "head_dim") p.head_dim = static_cast<int>(positive(as_int(w, n, path), kMaxDim));
      else if (k == "v_dim") p.v_dim = static_cast<int>(positive(as_int(w, n, path), kMaxDim)), dv_given = true;
      else if (k == "seq_len") seq = positive(as_int(w, n, path), kMaxLen);
      else if (k == "kv_len") seq = positive(as_int(w, n, path), kMaxLen);
      else if (k == "q_len") p.q_len = positive(as_int(w, n, path), kMaxLen), q_given = true;
      else if (k == "causal") p.causal = as_bool(w, n, path), causal_given = true;
      else if (k == "steps") p.steps = positive(as_int(w, n, path), kMaxLen), steps_node = &n, steps_path = path;
      else if (k == "mode") {
        const std::string m = as_string(w, n, path);
        if (m == "prefill") p.mode = Mode::prefill;
        else if (m == "decode") p.mode = Mode::decode;
        else w.fail(n, path, "unknown mode '" + m + "': " + suggest(m, {"prefill", "decode"}));
      }
    }
    if (!h_kv_given) p.kv_heads = p.heads;
    if (!dv_given) p.v_dim = p.head_dim;
    p.kv_len = seq;
    if (!q_given) p.q_len = p.mode == Mode::decode ? 1 : seq;
    // Multi-step decode (docs/decode.md): one query token per step against a growing cache,
    // causal by construction; kv_len is the cache at the last step.
    if (p.steps > 1) {
      const std::string sv = "problem.steps = " + std::to_string(p.steps);
      if (p.mode != Mode::decode)
        w.fail(*steps_node, steps_path, sv + ": steps > 1 needs mode: decode (prefill has no steps)");
      if (p.q_len != 1)
        w.fail(*steps_node, steps_path, sv + ": multi-step decode takes one query token per step (q_len 1, got " + std::to_string(p.q_len) + ")");
      if (causal_given && !p.causal)
        w.fail(prob["causal"], "problem.causal", "causal = false: a multi-step decode is causal (each step sees the cache up to its own token); drop `causal` or set it true");
      if (p.steps > p.kv_len)
        w.fail(*steps_node, steps_path, sv + ": must not exceed the cache length kv_len (" + std::to_string(p.kv_len) + ")");
      p.causal = true;
    }
    if (p.q_len > p.kv_len)
      w.fail(prob, "problem.q_len", "q_len (" + std::to_string(p.q_len) + ") must not exceed the key length (" + std::to_string(p.kv_len) + ")");
    if (p.kv_heads > p.heads || p.heads % p.kv_heads != 0)
      w.fail(prob["kv_heads"] ? prob["kv_heads"] : prob, "problem.kv_heads",
             "kv_heads (" + std::to_string(p.kv_heads) + ") must divide heads (" + std::to_string(p.heads) + ")");
    problems.push_back(p);
    size_t a = 0;
    for (; a < axes.size(); ++a) {
      if (++idx[a] < axes[a].second.size()) break;
      idx[a] = 0;
    }
    if (a == axes.size()) break;
  }

  // variants -----------------------------------------------------------------------------
  const YAML::Node vars = root["variants"];
  if (!vars) w.fail(root, "variants", "missing: list the variants to run (e.g. [mha, gqa])");
  if (!vars.IsSequence() || vars.size() == 0) w.fail(vars, "variants", "expected a non-empty list");
  std::vector<VariantChoice> choices;
  std::set<std::string> labels;
  for (size_t vi = 0; vi < vars.size(); ++vi) {
    const YAML::Node v = vars[vi];
    const std::string vpath = "variants[" + std::to_string(vi) + "]";
    std::string name, label;
    std::vector<std::pair<std::string, std::vector<YAML::Node>>> sweeps;
    if (v.IsScalar()) {
      name = v.Scalar();
    } else if (v.IsMap()) {
      if (!v["name"]) w.fail(v, vpath, "a variant map needs `name`");
      name = as_string(w, v["name"], vpath + ".name");
      if (v["label"]) label = as_string(w, v["label"], vpath + ".label");
    } else {
      w.fail(v, vpath, "expected a variant name or a map with `name`");
    }
    const RegistryEntry* entry = find_variant(name);
    if (!entry)
      w.fail(v.IsMap() ? v["name"] : v, vpath, "unknown variant '" + name + "': " + suggest(name, variant_names()));
    if (v.IsMap()) {
      for (const auto& kv : v) {
        const std::string k = key_of(kv.first);
        if (k == "name" || k == "label") continue;
        const ParamSpec* spec = nullptr;
        for (const auto& ps : entry->info.params)
          if (ps.name == k) spec = &ps;
        if (!spec) {
          std::vector<std::string> allowed = {"name", "label"};
          for (const auto& ps : entry->info.params) allowed.push_back(ps.name);
          w.fail(kv.first, vpath + "." + k, "variant '" + name + "' has no parameter '" + k + "': " + suggest(k, allowed));
        }
        sweeps.push_back({k, axis(w, kv.second, vpath + "." + k)});
      }
    }
    // Cartesian product of swept parameters.
    {
      uint64_t n_choices = 1;
      for (const auto& [k, nodes] : sweeps) n_choices = grid_size(n_choices, nodes.size(), v[k], vpath + "." + k);
    }
    std::vector<size_t> pi(sweeps.size(), 0);
    while (true) {
      std::map<std::string, ParamValue> given;
      std::string suffix;
      for (size_t a = 0; a < sweeps.size(); ++a) {
        const auto& [k, nodes] = sweeps[a];
        const ParamSpec* spec = nullptr;
        for (const auto& ps : entry->info.params)
          if (ps.name == k) spec = &ps;
        const std::string ppath = vpath + "." + k + (nodes.size() > 1 ? "[" + std::to_string(pi[a]) + "]" : "");
        given[k] = param_value(w, nodes[pi[a]], ppath, spec);
      }
      VariantChoice c;
      c.name = name;
      try {
        c.params = resolve_params(entry->info, given);
      } catch (const InputError& e) {
        w.fail(v, vpath, e.what());
      }
      for (const auto& [k, val] : given) {
        c.given.push_back(k);
        // Label suffix: every explicit parameter without a user label, swept ones with one.
        bool swept = false;
        for (const auto& s : sweeps)
          if (s.first == k) swept = s.second.size() > 1;
        if (label.empty() || swept) suffix += (suffix.empty() ? "" : ",") + k + "=" + param_value_str(val);
      }
      c.label = (label.empty() ? name : label) + (suffix.empty() ? "" : "(" + suffix + ")");
      if (!labels.insert(c.label).second)
        w.fail(v, vpath, "duplicate variant label '" + c.label + "': give each entry a distinct `label`");
      choices.push_back(std::move(c));
      size_t a = 0;
      for (; a < sweeps.size(); ++a) {
        if (++pi[a] < sweeps[a].second.size()) break;
        pi[a] = 0;
      }
      if (a == sweeps.size()) break;
    }
  }

  // baseline -----------------------------------------------------------------------------
  if (root["baseline"]) {
    ex.baseline = as_string(w, root["baseline"], "baseline");
    std::vector<std::string> known;
    bool found = false;
    for (const auto& c : choices) {
      known.push_back(c.label);
      if (c.name != c.label) known.push_back(c.name);
      found |= c.label == ex.baseline || c.name == ex.baseline;
    }
    if (!found)
      w.fail(root["baseline"], "baseline", "'" + ex.baseline + "' is not among the spec's variants: " + suggest(ex.baseline, known));
  } else {
    ex.baseline = choices.front().label;
  }

  // metrics ------------------------------------------------------------------------------
  std::vector<std::string> metric_names;
  for (const auto& m : metric_table()) metric_names.push_back(m.name);
  const YAML::Node mets = root["metrics"];
  auto add_metric = [&](const YAML::Node& key, const std::string& name, const YAML::Node& opts) {
    const MetricDef* def = find_metric(name);
    if (!def) w.fail(key, "metrics." + name, "unknown metric: " + suggest(name, metric_names));
    if (ex.metrics.contains(name)) w.fail(key, "metrics." + name, "metric '" + name + "' is listed twice");
    ex.metrics[name] = merge_options(w, opts, "metrics." + name, def->defaults);
    check_ranges(w, opts, "metrics." + name, ex.metrics[name]);
    if (def->validate) {
      try {
        def->validate(ex.metrics[name]);
      } catch (const InputError& e) {
        w.fail(opts.IsDefined() && !opts.IsNull() ? opts : key, "metrics." + name, e.what());
      } catch (const nlohmann::json::exception& e) {  // a value of the wrong type inside a list
        w.fail(opts.IsDefined() && !opts.IsNull() ? opts : key, "metrics." + name, std::string("invalid option value: ") + e.what());
      }
    }
  };
  if (!mets) {
    for (const char* m : {"flops", "latency", "accuracy"}) ex.metrics[m] = find_metric(m)->defaults;
  } else if (mets.IsSequence()) {
    for (size_t i = 0; i < mets.size(); ++i) {
      const YAML::Node m = mets[i];
      if (m.IsScalar()) add_metric(m, m.Scalar(), YAML::Node());
      else if (m.IsMap() && m.size() == 1) add_metric(m.begin()->first, key_of(m.begin()->first), m.begin()->second);
      else w.fail(m, "metrics[" + std::to_string(i) + "]", "expected a metric name or {name: {options}}");
    }
  } else if (mets.IsMap()) {
    for (const auto& kv : mets) add_metric(kv.first, key_of(kv.first), kv.second);
  } else {
    w.fail(mets, "metrics", "expected a list of metric names or a map of metric -> options");
  }
  // FLOPs are free to compute and every rate needs them.
  if (!ex.metrics.contains("flops")) ex.metrics["flops"] = find_metric("flops")->defaults;

  // input (workload) ---------------------------------------------------------------------
  {
    const YAML::Node in = root["input"];
    std::string kind = "gaussian";
    YAML::Node opts;
    if (in && in.IsScalar()) {
      kind = in.Scalar();
    } else if (in && in.IsMap()) {
      if (in["kind"]) kind = as_string(w, in["kind"], "input.kind");
      opts = YAML::Clone(in);
      opts.remove("kind");
    } else if (in) {
      w.fail(in, "input", "expected a workload name or a map with `kind`");
    }
    std::vector<std::string> kinds;
    for (const auto& d : workload_table()) kinds.push_back(d.name);
    const WorkloadDef* def = find_workload(kind);
    if (!def)
      w.fail(in.IsMap() ? in["kind"] : in, "input.kind", "unknown input kind '" + kind + "': " + suggest(kind, kinds));
    // nonfinite: what a case does with NaN or Inf in its inputs (docs/reliability.md):
    // refuse (the case fails, naming where) or flag (it runs, the report records them).
    std::string nonfinite = "refuse";
    if (opts.IsMap() && opts["nonfinite"]) {
      nonfinite = as_string(w, opts["nonfinite"], "input.nonfinite");
      if (nonfinite != "refuse" && nonfinite != "flag")
        w.fail(opts["nonfinite"], "input.nonfinite", "unknown value '" + nonfinite + "': " + suggest(nonfinite, {"refuse", "flag"}));
      opts.remove("nonfinite");
    }
    ex.input = merge_options(w, opts, "input", def->defaults);
    check_ranges(w, opts, "input." + kind, ex.input);
    ex.input["kind"] = kind;
    ex.input["nonfinite"] = nonfinite;
  }

  // cases --------------------------------------------------------------------------------
  // A variant that cannot run some points of the sweep (a mode it lacks, a parameter that does
  // not fit one shape) gets `skipped` cases for those points with the reason; only a variant
  // that fits no point at all is an error in the spec.
  grid_size(grid_size(1, problems.size() * dtypes.size(), prob, "problem"), choices.size(), vars, "variants");
  int index = 0;
  std::set<std::string> validated_shapes;
  std::map<std::string, std::pair<int, std::string>> fits;  // label -> (points that fit, first refusal)
  // One variant object per choice: shape() is const, so it answers every point alike.
  std::vector<std::unique_ptr<Variant>> made;
  for (const auto& c : choices) made.push_back(find_variant(c.name)->make(c.params));
  const WorkloadDef* wdef = find_workload(ex.input["kind"].get<std::string>());
  for (DType dt : dtypes) {
    for (Problem p : problems) {
      p.dtype = dt;
      ex.points.push_back(p);
      for (size_t ci = 0; ci < choices.size(); ++ci) {
        const VariantChoice& c = choices[ci];
        AttnShape shape;
        const std::string refusal = case_refusal(*made[ci], c, p, &shape);
        // Inputs that can be wrong for a shape (a file that does not match) fail here, once per
        // distinct shape: that is the input's fault, not the variant's, so it refuses the spec.
        if (refusal.empty() && wdef->validate) {
          const std::string skey = p.key() + "/" + std::to_string(shape.q_heads) + "/" + std::to_string(shape.kv_heads) +
                                   "/" + std::to_string(shape.head_dim) + "/" + std::to_string(shape.v_dim) +
                                   "/" + std::to_string(shape.q_len) + "/" + std::to_string(shape.kv_len);
          if (validated_shapes.insert(skey).second) {
            try {
              wdef->validate(shape, ex.input);
            } catch (const InputError& e) {
              throw InputError(path + ": " + e.what() + " (variant '" + c.label + "') (problem " + p.key() + ")");
            }
          }
        }
        auto& f = fits[c.label];
        if (refusal.empty()) ++f.first;
        else if (f.second.empty()) f.second = refusal + " (problem " + p.key() + ")";
        ex.skipped_cases += !refusal.empty();
        const int i = index++;
        if (lazy) continue;  // Experiment::case_at makes it when asked
        Case cs;
        cs.index = i;
        cs.problem = p;
        cs.variant = c;
        cs.id = c.label + "/" + p.key();
        cs.skip_reason = refusal;
        ex.cases.push_back(std::move(cs));
      }
    }
  }
  ex.choices = choices;
  ex.lazy = lazy;
  ex.refusal = [](const Problem& p, const VariantChoice& c) {
    return case_refusal(*find_variant(c.name)->make(c.params), c, p, nullptr);
  };
  for (const auto& c : choices)
    if (fits[c.label].first == 0) throw InputError(path + ": " + fits[c.label].second + "; it fits no point of the sweep");
  if (ex.name.empty()) {
    const auto slash = path.find_last_of('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    const auto dot = base.find_last_of('.');
    ex.name = dot == std::string::npos ? base : base.substr(0, dot);
  }
  return ex;
}

}  // namespace

Experiment parse_experiment(const std::string& text, const std::string& path,
                            const std::vector<std::string>& overrides, bool lazy) {
  try {
    return parse_tree(text, path, overrides, lazy);
  } catch (const YAML::Exception& e) {
    // A conversion yaml-cpp refused somewhere the checks above did not foresee: still bad
    // input, located where yaml-cpp says.
    const std::string at = e.mark.line >= 0 ? ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) : "";
    throw InputError(path + at + ": " + e.msg);
  }
}

Experiment load_experiment(const std::string& path, const std::vector<std::string>& overrides, bool lazy) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the spec file: " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_experiment(ss.str(), path, overrides, lazy);
}

// SHA-256 (FIPS 180-4), for the spec's fingerprint in reports.
std::string sha256_hex(const std::string& bytes) {
  static constexpr uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string m = bytes;
  const uint64_t bits = static_cast<uint64_t>(bytes.size()) * 8;
  m.push_back(static_cast<char>(0x80));
  while (m.size() % 64 != 56) m.push_back(0);
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t(uint8_t(m[off + 4 * i])) << 24) | (uint32_t(uint8_t(m[off + 4 * i + 1])) << 16) |
             (uint32_t(uint8_t(m[off + 4 * i + 2])) << 8) | uint32_t(uint8_t(m[off + 4 * i + 3]));
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const uint32_t ch = (e & f) ^ (~e & g);
      const uint32_t t1 = hh + S1 + ch + k[i] + w[i];
      const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
      const uint32_t t2 = S0 + mj;
      hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  char out[65];
  for (int i = 0; i < 8; ++i) std::snprintf(out + 8 * i, 9, "%08x", h[i]);
  return std::string(out, 64);
}

}  // namespace ab
