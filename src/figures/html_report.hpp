#pragma once
// `attn-bench report`: one self-contained HTML page (inline SVG and CSS, no script, nothing
// fetched) with the provenance of each report, every figure of docs/figures.md, the fidelity
// of each variant shown, and the failed and skipped cases with their reasons.
#include <string>
#include <vector>

#include "analysis/table.hpp"
#include "figures/report_figures.hpp"

namespace ab::figures {

std::string html_report(const std::vector<analysis::Report>& reports, const FigureOptions& opts);

}  // namespace ab::figures
