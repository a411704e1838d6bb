#include "core/params.hpp"

#include <cstdio>
#include <stdexcept>

namespace ab {

std::string_view param_type_name(ParamType t) {
  switch (t) {
    case ParamType::integer: return "int";
    case ParamType::number: return "float";
    case ParamType::boolean: return "bool";
    case ParamType::string: return "string";
  }
  return "?";
}

std::string param_value_str(const ParamValue& v) {
  struct V {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", d);
      return buf;
    }
    std::string operator()(const std::string& s) const { return s; }
  };
  return std::visit(V{}, v);
}

const ParamValue& ParamSet::at(const std::string& k) const {
  auto it = values_.find(k);
  if (it == values_.end()) throw std::logic_error("parameter '" + k + "' not in schema");
  return it->second;
}

int64_t ParamSet::integer(const std::string& k) const { return std::get<int64_t>(at(k)); }
double ParamSet::number(const std::string& k) const {
  const auto& v = at(k);
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::get<double>(v);
}
bool ParamSet::boolean(const std::string& k) const { return std::get<bool>(at(k)); }
const std::string& ParamSet::string(const std::string& k) const { return std::get<std::string>(at(k)); }

}  // namespace ab
