#pragma once
// Readers of the two tensor file formats real Q/K/V captures come in, written from their
// specifications and bounds-checked: every size and offset a header states is checked against
// the file before a byte of data is read, so a truncated file or a header that lies is an
// InputError naming the file and the problem, never a crash or an out-of-bounds read.
//   .npy          https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//   .safetensors  https://github.com/huggingface/safetensors (README, "Format")
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ab {

enum class FileDType { f32, f16, bf16 };
std::string_view file_dtype_name(FileDType t);
int file_dtype_bytes(FileDType t);

// One tensor of a file: where its bytes are and what they hold.
struct TensorInfo {
  std::string file;
  std::string name;            // the safetensors name; the file name for .npy
  std::string stored;          // the dtype as the file spells it ("<f2", "BF16", ...)
  FileDType dtype = FileDType::f32;
  bool supported = true;       // false: a dtype attn-bench does not read (F64, I32, ...)
  int item_bytes = 4;
  std::vector<int64_t> shape;  // row-major (C order)
  uint64_t offset = 0;         // absolute byte offset of the data in the file
  uint64_t bytes = 0;
  int64_t numel() const;
};

// .npy (versions 1.0, 2.0, 3.0), C order, little-endian float32 or float16; a uint16 array is
// read as bf16 (or f16) bits only when `declared` says so ("bf16", "f16"; "" = as stored).
TensorInfo read_npy_header(const std::string& path, const std::string& declared = "");

// .safetensors: every tensor's header entry and the __metadata__ strings. Offsets and sizes of
// every tensor are checked (in range, consistent with dtype × shape, no overlap); dtypes other
// than F32, F16 and BF16 are listed with supported = false and refused by read_tensor.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // sorted by data offset
  std::map<std::string, std::string> metadata;
  const TensorInfo* find(const std::string& name) const;
  std::vector<std::string> names() const;
};
SafetensorsHeader read_safetensors_header(const std::string& path);

// The tensor's elements as fp32 (row-major), read from the file with the size checked again
// (the file may have changed since its header was read).
std::vector<float> read_tensor(const TensorInfo& t);

// "[2,8,1024,64]": a tensor shape for error messages.
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace ab
