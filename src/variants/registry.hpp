#pragma once
// The variant registry: an explicit list (src/variants/variants.def), not static-initialiser
// self-registration, which a linker may drop from a static library (docs/architecture.md).
#include <memory>
#include <string>
#include <vector>

#include "core/variant.hpp"

namespace ab {

struct RegistryEntry {
  VariantInfo info;
  VariantFactory make;
};

const std::vector<RegistryEntry>& registry();
// A variant only a test executable has (its fault-injecting fixture): registered from that
// executable's static initialisers, before the first registry() call.
void add_test_variant(VariantFactory make);
const RegistryEntry* find_variant(const std::string& name);
std::vector<std::string> variant_names();

// Check values against the variant's schema and fill defaults; throws InputError naming the
// parameter and the rule (unknown name -> closest names).
ParamSet resolve_params(const VariantInfo& info, const std::map<std::string, ParamValue>& given);

}  // namespace ab
