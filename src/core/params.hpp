#pragma once
// Variant parameters: a schema (for `list` and validation) and the values of one case.
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace ab {

enum class ParamType { integer, number, boolean, string };
std::string_view param_type_name(ParamType t);

using ParamValue = std::variant<bool, int64_t, double, std::string>;
std::string param_value_str(const ParamValue& v);

struct ParamSpec {
  std::string name;
  ParamType type;
  ParamValue def;
  std::string meaning;
  std::vector<std::string> choices = {};  // for strings: the allowed values (empty = any)
};

// Values of one case, already checked against the schema (missing ones take the default).
class ParamSet {
 public:
  ParamSet() = default;
  ParamSet(std::map<std::string, ParamValue> v) : values_(std::move(v)) {}
  int64_t integer(const std::string& k) const;
  double number(const std::string& k) const;  // integers widen
  bool boolean(const std::string& k) const;
  const std::string& string(const std::string& k) const;
  bool has(const std::string& k) const { return values_.count(k) != 0; }
  const std::map<std::string, ParamValue>& values() const { return values_; }
  void set(const std::string& k, ParamValue v) { values_[k] = std::move(v); }

 private:
  const ParamValue& at(const std::string& k) const;
  std::map<std::string, ParamValue> values_;
};

}  // namespace ab
