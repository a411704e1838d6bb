// Output error against the variant's own float64 reference on sampled rows.
#include <cmath>
#include <limits>

#include "metrics/metrics.hpp"

namespace ab {

json measure_accuracy(MetricContext& ctx) {
  const AttnShape& s = ctx.inputs.shape;
  const int64_t want = std::max<int64_t>(1, ctx.options.value("rows", int64_t{64}));
  const HostTensor o = ctx.backend.download(ctx.outputs.o);
  const HostTensor lse = ctx.backend.download(ctx.outputs.lse);

  // Rows spread evenly over the sequence (first and last included), heads round-robin.
  const int64_t heads = int64_t(s.batch) * s.q_heads;
  const int64_t rows = std::min<int64_t>(want, heads * s.q_len);
  double max_abs = 0, err2 = 0, ref2 = 0, lse_max_abs = 0, ref_scale = 0;
  bool nonfinite = false;
  std::vector<double> ref(static_cast<size_t>(s.v_dim));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t bh = r % heads;
    const int b = static_cast<int>(bh / s.q_heads), h = static_cast<int>(bh % s.q_heads);
    const int64_t i = rows == 1 ? s.q_len - 1 : (r * (s.q_len - 1)) / (rows - 1);
    double ref_lse = 0;
    ctx.variant.reference_row(ctx.inputs, ctx.plan, b, h, i, ref.data(), &ref_lse);
    const float* got = o.row(b, h, i);
    for (int c = 0; c < s.v_dim; ++c) {
      if (!std::isfinite(got[c])) nonfinite = true;
      const double e = std::abs(double(got[c]) - ref[c]);
      max_abs = std::max(max_abs, e);
      err2 += e * e;
      ref2 += ref[c] * ref[c];
      ref_scale = std::max(ref_scale, std::abs(ref[c]));
    }
    if (!std::isnan(ref_lse)) {
      const double g = lse.row(b, h, i)[0];
      if (std::isinf(ref_lse)) {
        if (!(std::isinf(g) && g < 0)) lse_max_abs = std::numeric_limits<double>::infinity();
      } else {
        if (!std::isfinite(g)) nonfinite = true;
        lse_max_abs = std::max(lse_max_abs, std::abs(g - ref_lse));
      }
    }
  }
  const bool gpu = ctx.backend.name() != "cpu";
  Tolerance tol = tolerance_for(s.dtype, gpu);
  // The absolute bound is set for softmax attention, whose output rows are convex combinations
  // of V rows (|o| <= max |v|). Floating-point error is relative to the magnitude of what is
  // summed, so for outputs that exceed the V scale (unnormalised linear attention, whose rows
  // are decayed sums of (q.k) v) the same bound applies relative to that excess: tol x
  // max(1, max|o*| / max|v|). Softmax variants keep the bound unchanged (the ratio is <= 1).
  double v_scale = 0;
  for (float x : ctx.inputs.host->v.data) v_scale = std::max(v_scale, double(std::abs(x)));
  const double growth = v_scale > 0 ? std::max(1.0, ref_scale / v_scale) : 1.0;
  const double lse_tol = tol.max_abs;  // LSE is a log: not scaled
  tol.max_abs *= growth;
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  // LSE is a log: its error is relative already; the same bound as max_abs applies.
  const bool pass = !nonfinite && max_abs <= tol.max_abs && rel <= tol.rel && lse_max_abs <= lse_tol;
  json j;
  j["reference"] = "float64 of the variant's own formula, on the same rounded inputs";
  j["rows"] = rows;
  j["max_abs"] = nonfinite ? std::numeric_limits<double>::infinity() : max_abs;
  j["rel"] = nonfinite ? std::numeric_limits<double>::infinity() : rel;
  j["lse_max_abs"] = lse_max_abs;
  j["tol_max_abs"] = tol.max_abs;
  if (growth > 1) j["tol_output_growth"] = growth;  // max|o*| / max|v| scaling the bound
  j["tol_rel"] = tol.rel;
  j["pass"] = pass;
  if (nonfinite) j["note"] = "non-finite output (unwritten or overflowed elements)";
  return j;
}

}  // namespace ab
