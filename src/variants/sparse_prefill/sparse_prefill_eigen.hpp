#pragma once
// Eigen for the prefill variants' dense estimation products, row-major as the host tensors.
// GCC 12 warns -Wmaybe-uninitialized inside its AVX-512 headers when Eigen's packet math is
// inlined (a false positive on _mm512_undefined_*, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>

namespace ab {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMapRM = Eigen::Map<const RowMat>;

}  // namespace ab
