#pragma once
// Inputs a variant takes from files (Variant::extra_input_files): checked when the spec is
// validated, read when a case's inputs are made, so variants do no file I/O of their own.
#include "core/variant.hpp"

namespace ab {

// Throws InputError naming the spec field when a file is missing, lacks the tensor, or has
// another shape than the variant expects for `s`.
void check_extra_input_files(const Variant& v, const AttnShape& s);
// Reads every file into host.extra[name], values rounded to s.dtype; throws as above.
void load_extra_input_files(const Variant& v, const AttnShape& s, HostInputs& host);

}  // namespace ab
