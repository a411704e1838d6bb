#include "workloads/extra_inputs.hpp"

#include <filesystem>

#include "core/dtype.hpp"
#include "core/errors.hpp"
#include "workloads/tensor_file.hpp"

namespace ab {
namespace {

TensorInfo checked_header(const ExtraInputFile& f) {
  const std::string what = f.field + " = '" + f.path + "'";
  if (!std::filesystem::exists(f.path)) throw InputError(what + ": no such file");
  TensorInfo t;
  if (f.path.size() >= 12 && f.path.substr(f.path.size() - 12) == ".safetensors") {
    const SafetensorsHeader h = read_safetensors_header(f.path);
    const TensorInfo* g = h.find(f.tensor);
    if (!g) throw InputError(what + ": no tensor named '" + f.tensor + "'");
    t = *g;
  } else {
    t = read_npy_header(f.path);
  }
  const std::vector<int64_t> want(f.shape.begin(), f.shape.end());
  if (t.shape != want) {
    throw InputError(what + ": shape " + shape_str(t.shape) + ", expected " + shape_str(want) +
                     (f.shape_note.empty() ? "" : " (" + f.shape_note + ")"));
  }
  return t;
}

}  // namespace

void check_extra_input_files(const Variant& v, const AttnShape& s) {
  for (const ExtraInputFile& f : v.extra_input_files(s)) checked_header(f);
}

void load_extra_input_files(const Variant& v, const AttnShape& s, HostInputs& host) {
  for (const ExtraInputFile& f : v.extra_input_files(s)) {
    HostTensor t(f.shape);
    t.data = read_tensor(checked_header(f));
    for (float& x : t.data) x = round_to(s.dtype, x);
    host.extra[f.name] = std::move(t);
  }
}

}  // namespace ab
