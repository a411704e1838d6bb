#include "variants/registry.hpp"

#include "core/errors.hpp"

namespace ab {

// Each line of variants.def: ATTN_VARIANT(factory_function)
#define ATTN_VARIANT(fn) std::unique_ptr<Variant> fn(const ParamSet&);
#include "variants/variants.def"
#undef ATTN_VARIANT

namespace {
std::vector<VariantFactory>& test_variants() {
  static std::vector<VariantFactory> v;
  return v;
}
}  // namespace

void add_test_variant(VariantFactory make) { test_variants().push_back(make); }

const std::vector<RegistryEntry>& registry() {
  static const std::vector<RegistryEntry> entries = [] {
    std::vector<RegistryEntry> v;
#define ATTN_VARIANT(fn) v.push_back({fn(ParamSet{})->info(), &fn});
#include "variants/variants.def"
#undef ATTN_VARIANT
    for (VariantFactory f : test_variants()) v.push_back({f(ParamSet{})->info(), f});
    return v;
  }();
  return entries;
}

const RegistryEntry* find_variant(const std::string& name) {
  for (const auto& e : registry())
    if (e.info.name == name) return &e;
  return nullptr;
}

std::vector<std::string> variant_names() {
  std::vector<std::string> n;
  for (const auto& e : registry()) n.push_back(e.info.name);
  return n;
}

ParamSet resolve_params(const VariantInfo& info, const std::map<std::string, ParamValue>& given) {
  std::map<std::string, ParamValue> out;
  std::vector<std::string> names;
  for (const auto& p : info.params) {
    names.push_back(p.name);
    out[p.name] = p.def;
  }
  for (const auto& [k, v] : given) {
    const ParamSpec* spec = nullptr;
    for (const auto& p : info.params)
      if (p.name == k) spec = &p;
    if (!spec)
      throw InputError("variant '" + info.name + "' has no parameter '" + k + "': " +
                       suggest(k, names));
    ParamValue val = v;
    // Widen integers given for float parameters.
    if (spec->type == ParamType::number)
      if (auto* i = std::get_if<int64_t>(&v)) val = static_cast<double>(*i);
    const bool ok = (spec->type == ParamType::integer && std::holds_alternative<int64_t>(val)) ||
                    (spec->type == ParamType::number && std::holds_alternative<double>(val)) ||
                    (spec->type == ParamType::boolean && std::holds_alternative<bool>(val)) ||
                    (spec->type == ParamType::string && std::holds_alternative<std::string>(val));
    if (!ok)
      throw InputError("variant '" + info.name + "': parameter '" + k + "' must be of type " +
                       std::string(param_type_name(spec->type)) + ", got '" +
                       param_value_str(v) + "'");
    if (spec->type == ParamType::string && !spec->choices.empty()) {
      const auto& s = std::get<std::string>(val);
      bool found = false;
      for (const auto& c : spec->choices) found |= c == s;
      if (!found)
        throw InputError("variant '" + info.name + "': parameter '" + k + "' = '" + s +
                         "' is not allowed: " + suggest(s, spec->choices));
    }
    out[k] = val;
  }
  return ParamSet(std::move(out));
}

}  // namespace ab
