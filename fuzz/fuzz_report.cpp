// libFuzzer harness: the report reader `table` and `compare` use (load_report), then a table
// and a comparison of the report against itself, as the CLI does. Every input must be
// processed or refused with ab::InputError.
#include <cstddef>
#include <cstdint>

#include "analysis/compare.hpp"
#include "analysis/table.hpp"
#include "core/errors.hpp"
#include "fuzz_tensor_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_input(data, size, ".json");
  try {
    const ab::analysis::Report r = ab::analysis::load_report(path);
    try {
      const ab::analysis::Table t = ab::analysis::build_table({r}, {});
      (void)ab::analysis::render_markdown(t);
      (void)ab::analysis::render_csv(t);
      (void)ab::analysis::render_latex(t);
    } catch (const ab::InputError&) {
    }
    const ab::analysis::Comparison c = ab::analysis::compare_reports(r, r, {});
    (void)ab::analysis::render_comparison(c);
  } catch (const ab::InputError&) {
  }
  return 0;
}
