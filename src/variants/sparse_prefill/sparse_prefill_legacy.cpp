// The executed-pairs count of op 2 without a Backend, for the sparse prefill variants that do
// not plan through Backend ops yet (dhsa, sea, hyperattention): the CPU kernel's tile walk, as
// before. The variants on ops ask Backend::sparse_prefill_executed_pairs (sparse_prefill_base).
// Remove this file, and its entry in cmake/check_layers.cmake, when the last of them has moved.
#include "cpu/sparse_prefill.hpp"
#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {

double SparsePrefillVariant::executed_pairs(const Inputs& in, const HostIndexLists& lists) {
  return cpu::sparse_prefill_executed_pairs(op_args(in, lists));
}

double SparsePrefillVariant::executed_pairs(const Inputs& in, const HostBlockLists& lists) {
  return cpu::sparse_prefill_executed_pairs(op_args(in, lists));
}

}  // namespace ab
