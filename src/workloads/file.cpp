// Real Q/K/V from files (docs/inputs.md: captured tensors are the gold standard for recall).
// Options (docs/inputs.md, "file"):
//   path    a .safetensors file (q/k/v name tensors inside it), or a directory holding .npy
//           files (q/k/v name files inside it, ".npy" appended when missing), or "" (q/k/v are
//           paths of .npy files). Relative paths are taken from the working directory.
//   layout  "auto" (the safetensors metadata "layout", e.g. "B,H,N,D", else bhnd) | "bhnd" | "bnhd"
//   dtype   "" (as stored) | "bf16" | "f16": what the bits of a uint16 .npy array are
//   slice   false: K/V must hold exactly kv_len positions; true: the first kv_len positions of
//           longer K/V are used (a prefix of the captured sequence)
// Q holds either the case's q_len rows, or the whole sequence (then the rows of the query
// positions kv_len − q_len ... kv_len − 1 are taken: causal masks are bottom-right aligned).
// Values are converted to fp32 and rounded to the case's dtype like every other input.
#include <cctype>
#include <filesystem>

#include "core/errors.hpp"
#include "workloads/tensor_file.hpp"
#include "workloads/workloads.hpp"

namespace ab {

namespace {

using json = nlohmann::ordered_json;

struct FileOptions {
  std::string path, q, k, v, layout, dtype;
  bool slice = false;
};

FileOptions read_options(const json& o) {
  FileOptions f;
  f.path = o.value("path", std::string());
  f.q = o.value("q", std::string("q"));
  f.k = o.value("k", std::string("k"));
  f.v = o.value("v", std::string("v"));
  f.layout = o.value("layout", std::string("auto"));
  f.dtype = o.value("dtype", std::string());
  f.slice = o.value("slice", false);
  return f;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The three tensors' headers, all checked, and the layout to read them in.
struct Sources {
  TensorInfo q, k, v;
  bool bnhd = false;
  std::string where;  // for messages
};

Sources open_sources(const FileOptions& f) {
  if (f.layout != "auto" && f.layout != "bhnd" && f.layout != "bnhd")
    throw InputError("input.layout = '" + f.layout + "': must be auto, bhnd or bnhd");
  if (!f.dtype.empty() && f.dtype != "bf16" && f.dtype != "f16" && f.dtype != "f32")
    throw InputError("input.dtype = '" + f.dtype + "': must be \"\" (as stored), bf16 or f16");
  Sources s;
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string layout = f.layout;
  const bool dir = !f.path.empty() && fs::is_directory(f.path, ec);
  if (f.path.empty() || dir) {
    auto npy = [&](const std::string& name, const char* role) {
      if (name.empty()) throw InputError(std::string("input.") + role + ": empty file name");
      std::string p = dir ? (fs::path(f.path) / name).string() : name;
      if (!ends_with(p, ".npy")) p += ".npy";
      return read_npy_header(p, f.dtype);
    };
    s.q = npy(f.q, "q");
    s.k = npy(f.k, "k");
    s.v = npy(f.v, "v");
    s.where = dir ? f.path : "q/k/v .npy files";
  } else {
    if (ends_with(f.path, ".npy"))
      throw InputError("input.path = '" + f.path + "': one .npy file cannot hold q, k and v: give a directory "
                       "holding q.npy, k.npy, v.npy (names set by input.q/k/v), or leave path empty and "
                       "give input.q/k/v as .npy paths");
    const SafetensorsHeader h = read_safetensors_header(f.path);
    auto pick = [&](const std::string& name, const char* role) {
      const TensorInfo* t = h.find(name);
      if (!t)
        throw InputError(f.path + ": no tensor named '" + name + "' (input." + role + "): " +
                         suggest(name, h.names()));
      if (!t->supported)
        throw InputError(f.path + ": tensor '" + name + "' has dtype " + t->stored +
                         ": attn-bench reads F32, F16 and BF16");
      return *t;
    };
    s.q = pick(f.q, "q");
    s.k = pick(f.k, "k");
    s.v = pick(f.v, "v");
    s.where = f.path;
    if (layout == "auto") {
      auto it = h.metadata.find("layout");
      if (it != h.metadata.end()) {
        std::string m;
        for (char c : it->second)
          if (std::isalpha(static_cast<unsigned char>(c))) m += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (m != "bhnd" && m != "bnhd")
          throw InputError(f.path + ": metadata layout '" + it->second + "' is neither B,H,N,D nor B,N,H,D: "
                           "set input.layout");
        layout = m;
      }
    }
  }
  s.bnhd = layout == "bnhd";
  return s;
}

struct Need {
  const char* role;
  int64_t batch, heads, rows, dim;
};

// Where the rows come from: the file's positions [first, first + rows).
int64_t check_shape(const TensorInfo& t, const Need& need, bool bnhd, bool slice, const AttnShape& s,
                    bool is_query) {
  const std::string lay = bnhd ? "bnhd" : "bhnd";
  const std::string have = shape_str(t.shape);
  const std::string want = "B=" + std::to_string(need.batch) + ", H=" + std::to_string(need.heads) +
                           ", N=" + std::to_string(need.rows) + ", D=" + std::to_string(need.dim);
  auto bad = [&](const std::string& why) -> int64_t {
    throw InputError(t.file + ": tensor '" + t.name + "' (" + need.role + ") has shape " + have + " (" + lay +
                     "): " + why + "; the case needs " + need.role + " of " + want);
  };
  if (t.shape.size() != 4) return bad("expected 4 dimensions [B,H,N,D] or [B,N,H,D]");
  const int64_t B = t.shape[0], H = bnhd ? t.shape[2] : t.shape[1], N = bnhd ? t.shape[1] : t.shape[2],
                D = t.shape[3];
  if (B != need.batch) return bad("batch " + std::to_string(B) + " differs");
  if (H != need.heads) return bad(std::to_string(H) + " heads (check the variant's head layout)");
  if (D != need.dim) return bad("head dimension " + std::to_string(D) + " differs");
  if (N == need.rows) return 0;
  const std::string slice_hint = " (set input.slice: true to use the first " + std::to_string(s.kv_len) + ")";
  if (is_query) {
    // A whole sequence's queries: the case's rows sit at positions kv_len − q_len ... kv_len − 1.
    if (N == s.kv_len) return s.kv_len - s.q_len;
    if (N > s.kv_len) return slice ? s.kv_len - s.q_len : bad(std::to_string(N) + " positions, more than the problem's " + std::to_string(s.kv_len) + slice_hint);
    return bad("only " + std::to_string(N) + " positions: the queries are rows " + std::to_string(s.kv_len - s.q_len) +
               "..." + std::to_string(s.kv_len - 1) + " of a " + std::to_string(s.kv_len) + "-token sequence");
  }
  if (N > need.rows) return slice ? 0 : bad(std::to_string(N) + " positions, more than the problem's " + std::to_string(need.rows) + slice_hint);
  return bad("only " + std::to_string(N) + " positions");
}

HostTensor load(const TensorInfo& t, const Need& need, bool bnhd, int64_t first, DType dtype) {
  const std::vector<float> raw = read_tensor(t);
  HostTensor out({need.batch, need.heads, need.rows, need.dim});
  const int64_t H = need.heads, D = need.dim;
  const int64_t N = bnhd ? t.shape[1] : t.shape[2];
  for (int64_t b = 0; b < need.batch; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t n = 0; n < need.rows; ++n) {
        const int64_t src_n = first + n;
        const size_t src = static_cast<size_t>(bnhd ? ((b * N + src_n) * H + h) * D : ((b * H + h) * N + src_n) * D);
        std::copy(raw.begin() + src, raw.begin() + src + D, out.row(b, h, n));
      }
  round_tensor(out, dtype);
  return out;
}

struct FilePlan {
  Sources src;
  Need q, k, v;
  int64_t q_first, k_first, v_first;
};

FilePlan plan_for(const AttnShape& s, const json& options) {
  const FileOptions f = read_options(options);
  if (f.path.empty() && (f.q == "q" && f.k == "k" && f.v == "v"))
    throw InputError("input.path: missing: give a .safetensors file or a directory of .npy files "
                     "(or input.q/k/v as .npy paths)");
  FilePlan p{open_sources(f), {"q", s.batch, s.q_heads, s.q_len, s.head_dim},
         {"k", s.batch, s.kv_heads, s.kv_len, s.head_dim}, {"v", s.batch, s.kv_heads, s.kv_len, s.v_dim}, 0, 0, 0};
  p.q_first = check_shape(p.src.q, p.q, p.src.bnhd, f.slice, s, true);
  p.k_first = check_shape(p.src.k, p.k, p.src.bnhd, f.slice, s, false);
  p.v_first = check_shape(p.src.v, p.v, p.src.bnhd, f.slice, s, false);
  return p;
}

}  // namespace

void validate_file(const AttnShape& s, const json& options) { (void)plan_for(s, options); }

HostInputs generate_file(const AttnShape& s, const json& options, uint64_t seed) {
  (void)seed;  // the file is the input
  const FilePlan p = plan_for(s, options);
  HostInputs in;
  in.q = load(p.src.q, p.q, p.src.bnhd, p.q_first, s.dtype);
  in.k = load(p.src.k, p.k, p.src.bnhd, p.k_first, s.dtype);
  in.v = load(p.src.v, p.v, p.src.bnhd, p.v_first, s.dtype);
  return in;
}

}  // namespace ab
