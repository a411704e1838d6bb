// attn-bench merge A.json B.json ... -o all.json: the reports of one spec's shards (run --shard,
// a Slurm array) as one report (docs/cluster.md). Refuses reports of different specs, of
// different attn-bench versions (unless --allow-mixed), duplicate case ids, incomplete reports
// and a missing or repeated shard, naming which; records every source's provenance in
// meta.merge.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "core/errors.hpp"
#include "core/host_info.hpp"
#include "core/report.hpp"
#include "spec/spec.hpp"

namespace ab::cli {

namespace {

using json = nlohmann::ordered_json;

struct MergeOptions {
  std::vector<std::string> inputs;
  std::string output;
  bool allow_mixed = false;
  bool quiet = false;
};

struct Source {
  std::string path;
  std::string file_sha256;
  json doc;
};

Source read_source(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("merge: cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  Source s;
  s.path = path;
  const std::string text = ss.str();
  try {
    s.doc = json::parse(text, [&](int depth, json::parse_event_t, json&) {
      if (depth > 64) throw InputError("merge: '" + path + "' nests deeper than 64 levels: not a report");
      return true;
    });
  } catch (const json::exception& e) {
    throw InputError("merge: '" + path + "' is not valid JSON: " + e.what());
  }
  const json& d = s.doc;
  if (!d.is_object() || !d.contains("schema_version") || !d["schema_version"].is_string() || !d.contains("meta") ||
      !d["meta"].is_object() || !d.contains("cases") || !d["cases"].is_array())
    throw InputError("merge: '" + path + "' is not an attn-bench report (no schema_version, meta or cases)");
  const std::string v = d["schema_version"].get<std::string>();
  if (v.substr(0, v.find('.')) != std::string(kSchemaVersion).substr(0, std::string(kSchemaVersion).find('.')))
    throw InputError("merge: '" + path + "' has schema_version " + v + "; this attn-bench writes " + kSchemaVersion);
  s.file_sha256 = sha256_hex(text);
  return s;
}

// meta.a.b as a string, "" when absent.
std::string meta_str(const json& meta, const char* a, const char* b) {
  if (!meta.contains(a) || !meta[a].is_object() || !meta[a].contains(b) || !meta[a][b].is_string()) return "";
  return meta[a][b].get<std::string>();
}

json meta_at(const json& meta, const char* a, const char* b) {
  if (!meta.contains(a) || !meta[a].is_object() || !meta[a].contains(b)) return nullptr;
  return meta[a][b];
}

int run_merge(const MergeOptions& opt) {
  if (opt.inputs.size() < 1) throw InputError("merge: give the reports to merge");
  std::vector<Source> src;
  for (const auto& p : opt.inputs) src.push_back(read_source(p));
  const Source& first = src.front();
  const json& m0 = first.doc["meta"];

  // One spec (file and --set options), one filter, one tool version unless --allow-mixed.
  const std::string sha0 = meta_str(m0, "spec", "sha256");
  for (const auto& s : src) {
    const json& m = s.doc["meta"];
    if (!s.doc.value("complete", false))
      throw InputError("merge: " + s.path + " is incomplete (its run was interrupted or is still running); "
                       "finish it with `attn-bench run SPEC --resume " + s.path + "` first");
    const std::string sha = meta_str(m, "spec", "sha256");
    if (sha != sha0)
      throw InputError("merge: " + s.path + " is of another spec than " + first.path + " (spec sha256 " +
                       (sha.empty() ? "missing" : sha.substr(0, 12)) + " vs " + (sha0.empty() ? "missing" : sha0.substr(0, 12)) +
                       "); merge reports of one spec file only");
    if (meta_at(m, "spec", "overrides") != meta_at(m0, "spec", "overrides"))
      throw InputError("merge: " + s.path + " was run with --set " + meta_at(m, "spec", "overrides").dump() + ", " +
                       first.path + " with " + meta_at(m0, "spec", "overrides").dump() + ": not the same cases");
    if (meta_at(m, "run", "filter") != meta_at(m0, "run", "filter"))
      throw InputError("merge: " + s.path + " was run with --filter " + meta_at(m, "run", "filter").dump() + ", " +
                       first.path + " with " + meta_at(m0, "run", "filter").dump() + ": the shards partition different cases");
    const std::string v = meta_str(m, "tool", "version"), v0 = meta_str(m0, "tool", "version");
    if (v != v0 && !opt.allow_mixed)
      throw InputError("merge: " + s.path + " was written by attn-bench " + v + ", " + first.path + " by " + v0 +
                       "; their numbers may not be comparable (--allow-mixed merges them anyway, recording each version)");
    const std::string d = meta_str(m, "run", "device"), d0 = meta_str(m0, "run", "device");
    if (d != d0 && !opt.allow_mixed)
      throw InputError("merge: " + s.path + " ran on " + d + ", " + first.path + " on " + d0 +
                       " (--allow-mixed merges them anyway)");
  }

  // Shards: all or none of the sources are shards, of one count, each index once.
  int count = -1;
  std::map<int, std::string> shard_of;
  for (const auto& s : src) {
    const json sh = meta_at(s.doc["meta"], "run", "shard");
    if (sh.is_null()) {
      if (count >= 0) throw InputError("merge: " + s.path + " is not a shard (no meta.run.shard) but " +
                                       shard_of.begin()->second + " is; merge the shards of one sweep");
      continue;
    }
    if (!sh.is_object() || !sh.contains("index") || !sh.contains("count") || !sh["index"].is_number_integer() ||
        !sh["count"].is_number_integer())
      throw InputError("merge: " + s.path + ": meta.run.shard is malformed");
    const int i = sh["index"].get<int>(), n = sh["count"].get<int>();
    if (count < 0 && &s != &src.front())
      throw InputError("merge: " + s.path + " is a shard but " + first.path + " is not; merge the shards of one sweep");
    if (count >= 0 && n != count)
      throw InputError("merge: " + s.path + " is shard " + std::to_string(i) + "/" + std::to_string(n) + ", " +
                       shard_of.begin()->second + " one of " + std::to_string(count) + " shards");
    count = n;
    if (auto [it, fresh] = shard_of.emplace(i, s.path); !fresh)
      throw InputError("merge: shard " + std::to_string(i) + "/" + std::to_string(n) + " is given twice (" + it->second +
                       " and " + s.path + ")");
  }
  if (count >= 0) {
    std::vector<std::string> missing;
    for (int i = 0; i < count; ++i)
      if (!shard_of.count(i)) missing.push_back(std::to_string(i));
    if (!missing.empty()) {
      std::string list;
      for (const auto& x : missing) list += (list.empty() ? "" : ", ") + x;
      throw InputError("merge: missing shard" + std::string(missing.size() > 1 ? "s " : " ") + list + " of " +
                       std::to_string(count) + " (have " + std::to_string(shard_of.size()) +
                       "); run them (`attn-bench run SPEC --shard I/" + std::to_string(count) + "`) and merge all");
    }
  }

  // Cases: no id twice; in the spec's order when every case carries its index.
  std::vector<json> cases;
  std::map<std::string, std::string> seen;  // id -> source
  bool indexed = true;
  for (auto& s : src)
    for (auto& c : s.doc["cases"]) {
      if (!c.is_object() || !c.contains("id") || !c["id"].is_string())
        throw InputError("merge: " + s.path + " holds a case without an id");
      const std::string id = c["id"].get<std::string>();
      if (auto [it, fresh] = seen.emplace(id, s.path); !fresh)
        throw InputError("merge: case '" + id + "' is in both " + it->second + " and " + s.path +
                         (it->second == s.path ? " (twice)" : "") + "; each case must come from one report");
      indexed = indexed && c.contains("index") && c["index"].is_number_integer();
      cases.push_back(std::move(c));
    }
  if (indexed)
    std::stable_sort(cases.begin(), cases.end(),
                     [](const json& a, const json& b) { return a["index"].get<int64_t>() < b["index"].get<int64_t>(); });
  if (count >= 0) {  // the shards together cover the spec's (filtered) cases
    for (const auto& s : src) {
      const json sh = s.doc["meta"]["run"]["shard"];
      if (sh.contains("of_cases") && sh["of_cases"].is_number_integer() &&
          sh["of_cases"].get<size_t>() != cases.size())
        throw InputError("merge: the shards hold " + std::to_string(cases.size()) + " cases, " + s.path + " says the sweep has " +
                         std::to_string(sh["of_cases"].get<size_t>()) + " (a shard's report lacks cases)");
    }
  }

  // Provenance of every source; the merged meta is the first source's, without its shard.
  json sources = json::array();
  std::string earliest;
  for (const auto& s : src) {
    const json& m = s.doc["meta"];
    json e = {{"path", s.path}, {"sha256", s.file_sha256}, {"cases", s.doc["cases"].size()}};
    for (const char* k : {"tool", "git", "argv", "timestamp", "build", "devices"})
      if (m.contains(k)) e[k] = m[k];
    if (m.contains("host") && m["host"].is_object()) {
      e["host"] = json::object();
      for (const char* k : {"hostname", "cpu_model", "cores"})
        if (m["host"].contains(k)) e["host"][k] = m["host"][k];
    }
    if (const json sh = meta_at(m, "run", "shard"); !sh.is_null()) e["shard"] = sh;
    if (const json pl = meta_at(m, "run", "pool"); !pl.is_null()) e["pool"] = pl;
    const std::string ts = m.value("timestamp", std::string());
    if (!ts.empty() && (earliest.empty() || ts < earliest)) earliest = ts;
    sources.push_back(std::move(e));
  }
  json meta = m0;
  if (meta.contains("run") && meta["run"].is_object()) meta["run"].erase("shard");
  if (!earliest.empty()) meta["timestamp"] = earliest;
  meta["merge"] = {{"argv", program_argv()}, {"timestamp", utc_timestamp()}, {"shards", count >= 0 ? json(count) : json(nullptr)},
                   {"mixed", opt.allow_mixed}, {"sources", sources}};
  json doc;
  doc["schema_version"] = kSchemaVersion;
  doc["complete"] = true;
  doc["meta"] = std::move(meta);
  doc["cases"] = std::move(cases);

  for (const auto& s : src) {
    std::error_code ec;
    if (std::filesystem::equivalent(opt.output, s.path, ec))
      throw InputError("merge: -o " + opt.output + " is one of the inputs; it would be overwritten");
  }
  const std::string tmp = opt.output + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw InputError("merge: cannot write '" + tmp + "'");
    f << doc.dump(2) << '\n';
    if (!f.flush()) {
      std::remove(tmp.c_str());
      throw InputError("merge: writing '" + tmp + "' failed");
    }
  }
  if (std::rename(tmp.c_str(), opt.output.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError("merge: cannot move the report into '" + opt.output + "'");
  }
  if (!opt.quiet)
    std::fprintf(stderr, "merged %zu report%s (%s) into %s: %zu cases\n", src.size(), src.size() == 1 ? "" : "s",
                 count >= 0 ? (std::to_string(count) + " shards").c_str() : "no shards", opt.output.c_str(),
                 doc["cases"].size());
  return kExitOk;
}

}  // namespace

void setup_merge(CLI::App& app, Action& action) {
  auto opt = std::make_shared<MergeOptions>();
  auto* sub = app.add_subcommand("merge", "Merge the reports of one spec's shards (run --shard) into one report");
  sub->add_option("reports", opt->inputs, "the shards' reports (every shard of the sweep)")->required();
  sub->add_option("-o,--output", opt->output, "the merged report")->required();
  sub->add_flag("--allow-mixed", opt->allow_mixed, "merge reports of different attn-bench versions or devices");
  sub->add_flag("-q,--quiet", opt->quiet, "no summary line on stderr");
  sub->callback([opt, &action] { action = [opt] { return run_merge(*opt); }; });
}

}  // namespace ab::cli
