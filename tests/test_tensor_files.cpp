// .npy and .safetensors readers and the `file` input: round trips through independent writers
// (Python's numpy/safetensors when installed, and a C++ writer written here from the format
// specifications), and every malformed file the issue lists refused with an InputError naming
// the file and the problem — never a crash or an out-of-bounds read.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "core/errors.hpp"
#include "spec/spec.hpp"
#include "workloads/tensor_file.hpp"
#include "workloads/workloads.hpp"

using namespace ab;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("attn_tf_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// Element bytes of `x` in a file dtype ("f4", "f2", "bf16" as uint16 bits).
std::string encode(const std::vector<float>& x, const std::string& code) {
  std::string out;
  for (float v : x) {
    if (code == "f4") {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      out += le(u, 4);
    } else if (code == "f2") {
      out += le(float_to_f16_bits(v), 2);
    } else {
      out += le(float_to_bf16_bits(v), 2);
    }
  }
  return out;
}

// .npy writer from the format specification (numpy.lib.format): magic, version, little-endian
// header length, a Python-literal dict padded with spaces and ended by '\n' so that the data
// starts on a 64-byte boundary.
std::string npy_bytes(const std::string& descr, const std::vector<int64_t>& shape, const std::string& data,
                      int major = 1, const std::string& fortran = "False") {
  std::string sh = "(";  // Python's tuple repr: (4,) or (1, 2, 3)
  for (size_t i = 0; i < shape.size(); ++i) sh += (i ? ", " : "") + std::to_string(shape[i]);
  sh += shape.size() == 1 ? ",)" : ")";
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + sh + ", }";
  const size_t prefix = major == 1 ? 10 : 12;
  size_t total = prefix + dict.size() + 1;
  dict += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  out += major == 1 ? le(dict.size(), 2) : le(dict.size(), 4);
  return out + dict + data;
}

struct SafeTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string data;
};

// .safetensors writer from the format specification: u64 little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {...}}, the data.
std::string safetensors_bytes(const std::vector<SafeTensor>& ts, const nlohmann::json& metadata = nullptr) {
  nlohmann::json h = nlohmann::json::object();
  std::string data;
  for (const auto& t : ts) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.data.size()}}};
    data += t.data;
  }
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  std::string text = h.dump();
  text += std::string((8 - text.size() % 8) % 8, ' ');
  return le(text.size(), 8) + text + data;
}

std::string raw_safetensors(const std::string& header_json, const std::string& data) {
  return le(header_json.size(), 8) + header_json + data;
}

std::vector<float> random_values(int64_t n, uint64_t seed, DType round) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = round_to(round, d(rng));
  return v;
}

bool have_python_writers() {
  return std::system("python3 -c 'import numpy, safetensors' >/dev/null 2>&1") == 0;
}

// Every InputError must name the file and say what is wrong.
#define CHECK_REFUSED(expr, file_name, problem)                                   \
  do {                                                                           \
    try {                                                                        \
      (void)(expr);                                                              \
      FAIL_CHECK("not refused: " #expr);                                         \
    } catch (const InputError& e) {                                              \
      const std::string msg = e.what();                                          \
      INFO(msg);                                                                 \
      CHECK(msg.find(file_name) != std::string::npos);                           \
      CHECK(msg.find(problem) != std::string::npos);                             \
    }                                                                            \
  } while (0)

}  // namespace

TEST_CASE("npy: round trips of f32, f16 and bf16-as-uint16, versions 1.0 and 2.0 (C++ writer)") {
  TempDir dir;
  const std::vector<int64_t> shape = {2, 3, 5, 7};
  for (auto [descr, code, dt, declared] :
       {std::tuple{"<f4", "f4", DType::f32, ""}, std::tuple{"<f2", "f2", DType::f16, ""},
        std::tuple{"<u2", "bf16", DType::bf16, "bf16"}}) {
    for (int major : {1, 2}) {
      const auto x = random_values(2 * 3 * 5 * 7, 11, dt);
      const std::string p = dir / (std::string(code) + std::to_string(major) + ".npy");
      write_file(p, npy_bytes(descr, shape, encode(x, code), major));
      const TensorInfo t = read_npy_header(p, declared);
      INFO(p);
      CHECK(t.shape == shape);
      CHECK(t.offset % 64 == 0);
      CHECK(read_tensor(t) == x);
    }
  }
}

TEST_CASE("safetensors: round trip of F32, F16 and BF16 with metadata (C++ writer)") {
  TempDir dir;
  const auto a = random_values(24, 1, DType::f32), b = random_values(24, 2, DType::f16),
             c = random_values(24, 3, DType::bf16);
  const std::string p = dir / "t.safetensors";
  write_file(p, safetensors_bytes({{"a", "F32", {2, 3, 4}, encode(a, "f4")},
                                   {"b", "F16", {1, 2, 3, 4}, encode(b, "f2")},
                                   {"c", "BF16", {24}, encode(c, "bf16")}},
                                  {{"layout", "B,H,N,D"}}));
  const SafetensorsHeader h = read_safetensors_header(p);
  REQUIRE(h.tensors.size() == 3);
  CHECK(h.metadata.at("layout") == "B,H,N,D");
  CHECK(read_tensor(*h.find("a")) == a);
  CHECK(read_tensor(*h.find("b")) == b);
  CHECK(read_tensor(*h.find("c")) == c);
  CHECK(h.find("d") == nullptr);
}

TEST_CASE("npy and safetensors written by Python's numpy and safetensors read back exactly") {
  if (!have_python_writers()) {
    MESSAGE("python3 with numpy and safetensors is not installed: the independent-writer check is "
            "covered by the C++ writer only (scripts/setup.sh installs them)");
    return;
  }
  TempDir dir;
  // Python writes the tensors and, beside each, the expected values as raw float32.
  const std::string script = dir / "w.py";
  write_file(script, R"PY(
import sys, numpy as np
from safetensors.numpy import save_file
d = sys.argv[1]
rng = np.random.default_rng(7)
x = rng.standard_normal((1, 3, 17, 8)).astype(np.float32)
np.save(d + "/x32.npy", x)
np.save(d + "/x16.npy", x.astype(np.float16))
bf = (x.view(np.uint32) + 0x7FFF + ((x.view(np.uint32) >> 16) & 1)) >> 16
np.save(d + "/xbf.npy", bf.astype(np.uint16))
x.tofile(d + "/x32.raw")
x.astype(np.float16).astype(np.float32).tofile(d + "/x16.raw")
(bf.astype(np.uint32) << 16).view(np.float32).tofile(d + "/xbf.raw")
save_file({"q": x, "k": x.astype(np.float16), "v": np.ascontiguousarray(x.transpose(0, 2, 1, 3))},
          d + "/t.safetensors", metadata={"layout": "B,H,N,D"})
)PY");
  REQUIRE(std::system(("python3 " + script + " " + dir.path.string()).c_str()) == 0);
  auto raw = [&](const std::string& name) {
    std::ifstream f(dir / name, std::ios::binary);
    std::vector<float> v(1 * 3 * 17 * 8);
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    return v;
  };
  CHECK(read_tensor(read_npy_header(dir / "x32.npy")) == raw("x32.raw"));
  CHECK(read_tensor(read_npy_header(dir / "x16.npy")) == raw("x16.raw"));
  CHECK(read_tensor(read_npy_header(dir / "xbf.npy", "bf16")) == raw("xbf.raw"));
  const SafetensorsHeader h = read_safetensors_header(dir / "t.safetensors");
  CHECK(read_tensor(*h.find("q")) == raw("x32.raw"));
  CHECK(read_tensor(*h.find("k")) == raw("x16.raw"));

  // Through the `file` input: [B,H,N,D] npy files in a directory, then [B,N,H,D] safetensors.
  AttnShape s;
  s.batch = 1, s.q_heads = s.kv_heads = 3, s.head_dim = s.v_dim = 8, s.q_len = s.kv_len = 17;
  nlohmann::ordered_json o = workload_options(*find_workload("file"), {{"path", dir.path.string()},
                                              {"q", "x32"}, {"k", "x16.npy"}, {"v", "x32"}}, "input");
  const HostInputs in = generate_file(s, o, 0);
  CHECK(in.q.data == raw("x32.raw"));
  CHECK(in.k.data == raw("x16.raw"));
  o = workload_options(*find_workload("file"), {{"path", dir / "t.safetensors"}, {"q", "v"}, {"k", "v"},
                       {"v", "v"}, {"layout", "bnhd"}}, "input");
  const HostInputs tr = generate_file(s, o, 0);
  CHECK(tr.q.data == raw("x32.raw"));  // the transposed copy read back in [B,H,N,D] order
}

TEST_CASE("malformed .npy files are refused with the file and the problem named") {
  TempDir dir;
  const auto x = random_values(4 * 8, 5, DType::f32);
  const std::string good = npy_bytes("<f4", {1, 1, 4, 8}, encode(x, "f4"));
  auto with = [&](const std::string& name, const std::string& bytes) {
    const std::string p = dir / name;
    write_file(p, bytes);
    return p;
  };
  std::string p = with("trunc.npy", good.substr(0, good.size() - 5));
  CHECK_REFUSED(read_npy_header(p), p, "truncated");
  p = with("long.npy", good + "xxxx");
  CHECK_REFUSED(read_npy_header(p), p, "does not describe this file");
  p = with("lies.npy", npy_bytes("<f4", {1, 1, 400, 8}, encode(x, "f4")));
  CHECK_REFUSED(read_npy_header(p), p, "truncated");
  p = with("magic.npy", "XNUMPY" + good.substr(6));
  CHECK_REFUSED(read_npy_header(p), p, "not a .npy file");
  p = with("short.npy", good.substr(0, 7));
  CHECK_REFUSED(read_npy_header(p), p, "too short");
  std::string hl = good;
  hl[8] = '\xff', hl[9] = '\x7f';  // header length 32767 > the file
  p = with("hlen.npy", hl);
  CHECK_REFUSED(read_npy_header(p), p, "truncated header");
  std::string v9 = good;
  v9[6] = 9;
  p = with("v9.npy", v9);
  CHECK_REFUSED(read_npy_header(p), p, "version");
  p = with("f8.npy", npy_bytes("<f8", {1, 1, 2, 8}, std::string(128, '\0')));
  CHECK_REFUSED(read_npy_header(p), p, "unsupported dtype '<f8'");
  p = with("i4.npy", npy_bytes("<i4", {1, 1, 4, 8}, encode(x, "f4")));
  CHECK_REFUSED(read_npy_header(p), p, "unsupported dtype");
  p = with("be.npy", npy_bytes(">f4", {1, 1, 4, 8}, encode(x, "f4")));
  CHECK_REFUSED(read_npy_header(p), p, "big-endian");
  p = with("fortran.npy", npy_bytes("<f4", {1, 1, 4, 8}, encode(x, "f4"), 1, "True"));
  CHECK_REFUSED(read_npy_header(p), p, "fortran_order");
  p = with("u2.npy", npy_bytes("<u2", {1, 1, 4, 8}, encode(x, "bf16")));
  CHECK_REFUSED(read_npy_header(p), p, "declare what its bits are");
  p = with("declared.npy", good);
  CHECK_REFUSED(read_npy_header(p, "bf16"), p, "holds float32");
  std::string dict = good;
  dict.replace(dict.find("'shape'"), 7, "'shapf'");
  p = with("dict.npy", dict);
  CHECK_REFUSED(read_npy_header(p), p, "malformed .npy header");
  std::string neg = good;
  neg.replace(neg.find("(1, 1, 4, 8)"), 12, "(1, 1, -4, 8)");
  p = with("neg.npy", neg);
  CHECK_REFUSED(read_npy_header(p), p, "malformed .npy header");
  p = with("huge.npy", npy_bytes("<f4", {1000000000000, 1000000000000, 4, 8}, ""));
  CHECK_REFUSED(read_npy_header(p), p, "implausibly large");
  CHECK_REFUSED(read_npy_header(dir / "missing.npy"), "missing.npy", "no such file");
}

TEST_CASE("malformed .safetensors files are refused with the file and the problem named") {
  TempDir dir;
  const std::string d32(64, '\0');  // room for 16 f32
  auto with = [&](const std::string& name, const std::string& bytes) {
    const std::string p = dir / name;
    write_file(p, bytes);
    return p;
  };
  std::string p = with("hlen.safetensors", le(1u << 20, 8) + "{}");
  CHECK_REFUSED(read_safetensors_header(p), p, "exceeds the file");
  p = with("short.safetensors", "abc");
  CHECK_REFUSED(read_safetensors_header(p), p, "too short");
  p = with("json.safetensors", raw_safetensors("{\"q\": [1, 2", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "not valid JSON");
  p = with("array.safetensors", raw_safetensors("[1, 2]", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "not a JSON object");
  p = with("nooff.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [16]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "data_offsets");
  p = with("beyond.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [32], "data_offsets": [0, 128]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "beyond the data buffer");
  p = with("back.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [0], "data_offsets": [32, 16]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "backwards");
  p = with("size.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "needs 64 bytes but data_offsets span 32");
  p = with("overlap.safetensors",
           raw_safetensors(R"({"q": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
                               "k": {"dtype": "F32", "shape": [8], "data_offsets": [16, 48]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "overlap");
  p = with("dtype.safetensors", raw_safetensors(R"({"q": {"dtype": "F7", "shape": [16], "data_offsets": [0, 64]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "unknown dtype 'F7'");
  p = with("negshape.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [-16], "data_offsets": [0, 64]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "non-negative");
  p = with("negoff.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [16], "data_offsets": [-64, 0]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "non-negative");
  p = with("huge.safetensors",
           raw_safetensors(R"({"q": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 64]}})", d32));
  CHECK_REFUSED(read_safetensors_header(p), p, "implausibly large");
  p = with("f64.safetensors", raw_safetensors(R"({"q": {"dtype": "F64", "shape": [8], "data_offsets": [0, 64]}})", d32));
  const SafetensorsHeader h = read_safetensors_header(p);  // a valid file ...
  CHECK_REFUSED(read_tensor(*h.find("q")), p, "dtype F64");  // ... with a dtype we do not read
  // A valid header whose file was cut after the header was read.
  p = with("cut.safetensors", raw_safetensors(R"({"q": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}})", d32));
  const SafetensorsHeader cut = read_safetensors_header(p);
  fs::resize_file(p, fs::file_size(p) - 10);
  CHECK_REFUSED(read_tensor(*cut.find("q")), p, "truncated");
}

TEST_CASE("the file input checks shapes against the case and slices longer captures on request") {
  TempDir dir;
  // [B=1, H=2, N=32, D=8], value = position + head/10 so rows can be told apart.
  auto make = [&](int64_t h, int64_t n, int64_t d) {
    std::vector<float> v(static_cast<size_t>(h * n * d));
    for (int64_t a = 0; a < h; ++a)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < d; ++c) v[static_cast<size_t>((a * n + i) * d + c)] = float(i) + 0.25f * float(a);
    return v;
  };
  const auto x = make(2, 32, 8);
  const std::string p = dir / "cap.safetensors";
  write_file(p, safetensors_bytes({{"layer.q", "F32", {1, 2, 32, 8}, encode(x, "f4")},
                                   {"layer.k", "F32", {1, 2, 32, 8}, encode(x, "f4")},
                                   {"layer.v", "F32", {1, 2, 32, 8}, encode(x, "f4")}}));
  const WorkloadDef& def = *find_workload("file");
  nlohmann::ordered_json o = workload_options(def, {{"path", p}, {"q", "layer.q"}, {"k", "layer.k"}, {"v", "layer.v"}}, "input");
  AttnShape s;
  s.batch = 1, s.q_heads = s.kv_heads = 2, s.head_dim = s.v_dim = 8, s.q_len = s.kv_len = 32, s.causal = true;
  const HostInputs full = generate_file(s, o, 0);
  CHECK(full.k.row(0, 1, 31)[0] == doctest::Approx(31.25));

  // Decode against the whole capture: the query row is the last position's.
  AttnShape dec = s;
  dec.q_len = 1;
  CHECK(generate_file(dec, o, 0).q.row(0, 0, 0)[0] == doctest::Approx(31.0));

  // Shorter problem: refused unless slice: true, which takes the first kv_len positions.
  AttnShape half = s;
  half.q_len = half.kv_len = 16;
  CHECK_REFUSED(validate_file(half, o), p, "set input.slice: true");
  o["slice"] = true;
  const HostInputs sl = generate_file(half, o, 0);
  CHECK(sl.k.row(0, 0, 15)[0] == doctest::Approx(15.0));
  CHECK(sl.q.row(0, 1, 15)[0] == doctest::Approx(15.25));
  // A longer problem than the capture, a head-count or head-dim mismatch.
  AttnShape longer = s;
  longer.q_len = longer.kv_len = 64;
  CHECK_REFUSED(validate_file(longer, o), p, "only 32 positions");
  AttnShape gqa = s;
  gqa.kv_heads = 1;
  CHECK_REFUSED(validate_file(gqa, o), p, "2 heads");
  AttnShape d16 = s;
  d16.head_dim = 16;
  CHECK_REFUSED(validate_file(d16, o), p, "head dimension 8");
  // Names that are not there, with the closest one suggested.
  o["q"] = "layer.qq";
  CHECK_REFUSED(validate_file(s, o), p, "did you mean 'layer.q'");
  // One .npy file cannot hold q, k and v; a missing path is named.
  o = workload_options(def, {{"path", dir / "x.npy"}}, "input");
  CHECK_THROWS_WITH_AS(validate_file(s, o), doctest::Contains("one .npy file cannot hold"), InputError);
  o = workload_options(def, {}, "input");
  CHECK_THROWS_WITH_AS(validate_file(s, o), doctest::Contains("input.path: missing"), InputError);
  CHECK_THROWS_WITH_AS(workload_options(def, {{"pth", "x"}}, "input"), doctest::Contains("did you mean 'path'"),
                       InputError);
}

TEST_CASE("a spec whose input file does not fit is refused when it is loaded, before any case runs") {
  TempDir dir;
  const auto x = random_values(2 * 32 * 8, 3, DType::f32);
  const std::string p = dir / "cap.safetensors";
  write_file(p, safetensors_bytes({{"q", "F32", {1, 2, 32, 8}, encode(x, "f4")},
                                   {"k", "F32", {1, 2, 32, 8}, encode(x, "f4")},
                                   {"v", "F32", {1, 2, 32, 8}, encode(x, "f4")}}));
  const std::string spec = "problem: {heads: 2, head_dim: 8, seq_len: 32, causal: true}\n"
                           "variants: [mha, mqa]\n"
                           "input: {kind: file, path: " + p + "}\n";
  // mha matches; mqa needs 1 kv head: refused at load, naming the file, the variant, the problem.
  try {
    (void)parse_experiment(spec, "s.yaml", {});
    FAIL("not refused");
  } catch (const InputError& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("s.yaml") != std::string::npos);
    CHECK(m.find(p) != std::string::npos);
    CHECK(m.find("variant 'mqa'") != std::string::npos);
    CHECK(m.find("prefill_b1_h2_kv2_d8_q32_k32_causal_f32") != std::string::npos);
  }
  CHECK(parse_experiment(spec, "s.yaml", {"variants=[mha]"}).cases.size() == 1);
  // A corrupted file: the header's length runs past the end.
  write_file(dir / "bad.safetensors", le(999, 8) + "{");
  CHECK_THROWS_WITH_AS(parse_experiment(spec, "s.yaml", {"variants=[mha]", "input.path=" + (dir / "bad.safetensors")}),
                       doctest::Contains("exceeds the file"), InputError);
}

TEST_CASE("a wrong header length is refused, never read as data shifted by a few bytes") {
  TempDir dir;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  // safetensors: the header is space-padded, so a length a byte short still parses as JSON;
  // the data buffer then starts a byte early and is a byte longer than its tensors.
  const std::string good = safetensors_bytes({{"q", "F32", {8}, encode(x, "f4")}});
  const uint64_t n = good.size() - 8 - 32;
  REQUIRE(good[8 + n - 1] == ' ');  // the padding the short length cuts into
  std::string shortlen = le(n - 1, 8) + good.substr(8);
  std::string p = dir / "short_len.safetensors";
  write_file(p, shortlen);
  CHECK_REFUSED(read_safetensors_header(p), p, "tensors cover");
  // A hole between tensors, and bytes after the last one: not the format.
  p = dir / "hole.safetensors";
  write_file(p, raw_safetensors(R"({"q": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}})", std::string(32, '\0')));
  CHECK_REFUSED(read_safetensors_header(p), p, "must tile the buffer");
  // A header nested far deeper than the format's two levels.
  p = dir / "deep.safetensors";
  write_file(p, raw_safetensors(std::string(100000, '[') + std::string(100000, ']'), ""));
  CHECK_REFUSED(read_safetensors_header(p), p, "nests deeper");
  // .npy: a header length 64 bytes too long with 64 bytes appended keeps the file size
  // consistent; the header then swallows the first data bytes.
  const std::string npy = npy_bytes("<f4", {8}, encode(x, "f4"));
  const uint16_t hl = static_cast<uint16_t>(static_cast<unsigned char>(npy[8]) | (static_cast<unsigned char>(npy[9]) << 8));
  std::string longer = npy.substr(0, 8) + le(hl + 64, 2) + npy.substr(10) + std::string(64, '\0');
  p = dir / "long_header.npy";
  write_file(p, longer);
  CHECK_REFUSED(read_npy_header(p), p, "header length is wrong");
  // And a header length short of the closing '\n'.
  std::string shorter = npy.substr(0, 8) + le(hl - 4, 2) + npy.substr(10);
  p = dir / "short_header.npy";
  write_file(p, shorter);
  CHECK_REFUSED(read_npy_header(p), p, "header length is wrong");
}
