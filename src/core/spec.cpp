#include "core/spec.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/errors.hpp"
#include "core/registry.hpp"
#include "metrics/metrics.hpp"
#include "workloads/workloads.hpp"

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

void check_keys(const Where& w, const YAML::Node& map, const std::string& path,
                const std::vector<std::string>& allowed) {
  for (const auto& kv : map) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      w.fail(kv.first, path.empty() ? k : path + "." + k, "unknown key: " + suggest(k, allowed));
  }
}

// Scalars --------------------------------------------------------------------------------
int64_t as_int(const Where& w, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) w.fail(n, path, "expected an integer");
  try {
    // Accept 1k/4k/1M shorthands: lengths read better that way in specs.
    std::string s = n.Scalar();
    int64_t mult = 1;
    if (!s.empty() && (s.back() == 'k' || s.back() == 'K')) mult = 1024, s.pop_back();
    else if (!s.empty() && s.back() == 'M') mult = 1024 * 1024, s.pop_back();
    size_t pos = 0;
    const long long v = std::stoll(s, &pos);
    if (pos != s.size()) throw std::invalid_argument(s);
    return v * mult;
  } catch (const std::exception&) {
    w.fail(n, path, "expected an integer, got '" + n.Scalar() + "'");
  }
}

double as_double(const Where& w, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) w.fail(n, path, "expected a number");
  try {
    size_t pos = 0;
    const double v = std::stod(n.Scalar(), &pos);
    if (pos != n.Scalar().size()) throw std::invalid_argument(n.Scalar());
    return v;
  } catch (const std::exception&) {
    w.fail(n, path, "expected a number, got '" + n.Scalar() + "'");
  }
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

// An axis may be a scalar or a list (swept).
std::vector<YAML::Node> axis(const YAML::Node& n) {
  std::vector<YAML::Node> v;
  if (n.IsSequence())
    for (const auto& e : n) v.push_back(e);
  else
    v.push_back(n);
  return v;
}

// Scalar -> ParamValue, typed by the parameter's schema.
ParamValue param_value(const Where& w, const YAML::Node& n, const std::string& path,
                       const ParamSpec* spec) {
  if (!n.IsScalar()) w.fail(n, path, "expected a scalar parameter value");
  const ParamType t = spec ? spec->type : ParamType::string;
  switch (t) {
    case ParamType::integer: return as_int(w, n, path);
    case ParamType::number: return as_double(w, n, path);
    case ParamType::boolean: return as_bool(w, n, path);
    case ParamType::string: return n.Scalar();
  }
  return n.Scalar();
}

// YAML -> JSON for metric and input options (scalars typed by a best guess).
json to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    json j = json::object();
    for (const auto& kv : n) j[kv.first.as<std::string>()] = to_json(kv.second);
    return j;
  }
  if (n.IsSequence()) {
    json j = json::array();
    for (const auto& e : n) j.push_back(to_json(e));
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
    const double d = std::stod(s, &pos);
    if (pos == s.size()) return d;
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
    const std::string k = kv.first.as<std::string>();
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

// --set KEY=VALUE: VALUE is YAML ("[1024,4096]", "true", "gqa").
void apply_override(YAML::Node root, const std::string& kv, Where& w) {
  const auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError("--set " + kv + ": expected KEY=VALUE (e.g. problem.seq_len=[1024,4096])");
  const std::string key = kv.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(kv.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw InputError("--set " + key + ": value is not valid YAML: " + e.msg);
  }
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  // Walk with fresh handles: yaml-cpp nodes are references, so assigning through a copied
  // handle writes into the tree.
  std::function<void(YAML::Node, size_t)> set = [&](YAML::Node n, size_t i) {
    if (i + 1 == parts.size()) {
      n[parts[i]] = value;
      return;
    }
    if (!n[parts[i]] || !n[parts[i]].IsMap()) n[parts[i]] = YAML::Node(YAML::NodeType::Map);
    set(n[parts[i]], i + 1);
  };
  set(root, 0);
  w.overridden.insert(key);
}

struct ProblemAxes {
  std::vector<std::pair<std::string, std::vector<YAML::Node>>> axes;  // in kProblemKeys order
};

}  // namespace

std::string sha256_hex(const std::string& bytes);  // below

Experiment parse_experiment(const std::string& text, const std::string& path,
                            const std::vector<std::string>& overrides) {
  Where w{path, {}};
  YAML::Node root;
  try {
    root = YAML::Load(text);
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
  for (const auto& o : overrides) apply_override(root, o, w);
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
    if (ex.device != "cpu" && ex.device != "cuda" && ex.device != "auto")
      w.fail(root["device"], "device", "unknown device '" + ex.device + "': " +
                                           suggest(ex.device, {"cpu", "cuda", "auto"}));
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
    for (const auto& n : axis(root["dtype"])) {
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
    if (prob[k]) axes.push_back({k, axis(prob[k])});

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
      auto positive = [&](int64_t v) {
        if (v <= 0) w.fail(n, path, "must be a positive integer, got " + std::to_string(v));
        return v;
      };
      if (k == "batch") p.batch = static_cast<int>(positive(as_int(w, n, path)));
      else if (k == "heads") p.heads = static_cast<int>(positive(as_int(w, n, path)));
      else if (k == "kv_heads") p.kv_heads = static_cast<int>(positive(as_int(w, n, path))), h_kv_given = true;
      else if (k == "head_dim") p.head_dim = static_cast<int>(positive(as_int(w, n, path)));
      else if (k == "v_dim") p.v_dim = static_cast<int>(positive(as_int(w, n, path))), dv_given = true;
      else if (k == "seq_len") seq = positive(as_int(w, n, path));
      else if (k == "kv_len") seq = positive(as_int(w, n, path));
      else if (k == "q_len") p.q_len = positive(as_int(w, n, path)), q_given = true;
      else if (k == "causal") p.causal = as_bool(w, n, path), causal_given = true;
      else if (k == "steps") p.steps = positive(as_int(w, n, path)), steps_node = &n, steps_path = path;
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
        const std::string k = kv.first.as<std::string>();
        if (k == "name" || k == "label") continue;
        const ParamSpec* spec = nullptr;
        for (const auto& ps : entry->info.params)
          if (ps.name == k) spec = &ps;
        if (!spec) {
          std::vector<std::string> allowed = {"name", "label"};
          for (const auto& ps : entry->info.params) allowed.push_back(ps.name);
          w.fail(kv.first, vpath + "." + k, "variant '" + name + "' has no parameter '" + k + "': " + suggest(k, allowed));
        }
        sweeps.push_back({k, axis(kv.second)});
      }
    }
    // Cartesian product of swept parameters.
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
    ex.metrics[name] = merge_options(w, opts, "metrics." + name, def->defaults);
    if (def->validate) {
      try {
        def->validate(ex.metrics[name]);
      } catch (const InputError& e) {
        w.fail(opts.IsDefined() && !opts.IsNull() ? opts : key, "metrics." + name, e.what());
      }
    }
  };
  if (!mets) {
    for (const char* m : {"flops", "latency", "accuracy"}) ex.metrics[m] = find_metric(m)->defaults;
  } else if (mets.IsSequence()) {
    for (size_t i = 0; i < mets.size(); ++i) {
      const YAML::Node m = mets[i];
      if (m.IsScalar()) add_metric(m, m.Scalar(), YAML::Node());
      else if (m.IsMap() && m.size() == 1) add_metric(m.begin()->first, m.begin()->first.as<std::string>(), m.begin()->second);
      else w.fail(m, "metrics[" + std::to_string(i) + "]", "expected a metric name or {name: {options}}");
    }
  } else if (mets.IsMap()) {
    for (const auto& kv : mets) add_metric(kv.first, kv.first.as<std::string>(), kv.second);
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
    ex.input = merge_options(w, opts, "input", def->defaults);
    ex.input["kind"] = kind;
  }

  // cases --------------------------------------------------------------------------------
  int index = 0;
  std::set<std::string> validated_shapes;
  for (DType dt : dtypes) {
    for (Problem p : problems) {
      p.dtype = dt;
      for (const auto& c : choices) {
        const RegistryEntry* entry = find_variant(c.name);
        auto variant = entry->make(c.params);
        const auto& modes = entry->info.modes;
        if (std::find(modes.begin(), modes.end(), p.mode) == modes.end())
          throw InputError(path + ": variant '" + c.label + "' does not support mode " + std::string(mode_name(p.mode)));
        try {
          const AttnShape shape = variant->shape(p);  // impossible parameters fail here, before any case runs
          // Inputs that can be wrong for a shape (a file that does not match) fail here too,
          // once per distinct shape.
          const WorkloadDef* wdef = find_workload(ex.input["kind"].get<std::string>());
          const std::string skey = p.key() + "/" + std::to_string(shape.q_heads) + "/" + std::to_string(shape.kv_heads) +
                                   "/" + std::to_string(shape.head_dim) + "/" + std::to_string(shape.v_dim) +
                                   "/" + std::to_string(shape.q_len) + "/" + std::to_string(shape.kv_len);
          if (wdef->validate && validated_shapes.insert(skey).second) {
            try {
              wdef->validate(shape, ex.input);
            } catch (const InputError& e) {
              throw InputError(std::string(e.what()) + " (variant '" + c.label + "')");
            }
          }
        } catch (const InputError& e) {
          throw InputError(path + ": " + e.what() + " (problem " + p.key() + ")");
        }
        Case cs;
        cs.index = index++;
        cs.problem = p;
        cs.variant = c;
        cs.id = c.label + "/" + p.key();
        ex.cases.push_back(std::move(cs));
      }
    }
  }
  if (ex.name.empty()) {
    const auto slash = path.find_last_of('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    const auto dot = base.find_last_of('.');
    ex.name = dot == std::string::npos ? base : base.substr(0, dot);
  }
  return ex;
}

Experiment load_experiment(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path + ": cannot open the spec file: " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_experiment(ss.str(), path, overrides);
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
