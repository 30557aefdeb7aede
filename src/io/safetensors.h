// safetensors files (docs/design.md section 3): an 8-byte little-endian header length N, N bytes
// of JSON (name -> {dtype, shape, data_offsets}, optional "__metadata__" of strings), then
// the data. Reading validates everything a hostile or truncated file could get wrong.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/files.h"

namespace logattn::io {

inline constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // as the reference libraries

struct TensorInfo {
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I64", "I32", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
  int64_t numel() const;
};

class SafeTensors {
 public:
  // Reads and validates path; throws logattn::Error naming the file and the problem.
  static SafeTensors read(const std::string& path);
  // The same from bytes in memory; `name` stands for the path in errors.
  static SafeTensors parse(std::string_view bytes, const std::string& name);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // A metadata value that must be there; throws "<what> <path> lacks '<key>'" otherwise.
  const std::string& required_metadata(const std::string& key, const std::string& what) const;
  // A tensor as float32 (from F32, F16, BF16 or F64); throws if absent or not floating.
  std::vector<float> floats(const std::string& name) const;
  // A tensor's bytes as stored (little-endian), which must be of dtype; throws naming the
  // file and tensor if it is absent or of another dtype.
  const uint8_t* bytes(const std::string& name, const std::string& dtype) const;

 private:
  // Validates the header (JSON) of a file whose data section has data_size bytes.
  static SafeTensors from_header(const std::string& path, const std::string& header,
                                 uint64_t data_size);

  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
  std::vector<uint8_t> data_;
};

struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const void* data;           // numel elements of dtype, little-endian
  std::string dtype = "F32";  // F32, BF16, I8, ...
};

// The file's bytes: tensors in the given order, then metadata.
std::string safetensors_bytes(const std::vector<TensorRef>& tensors,
                              const std::map<std::string, std::string>& metadata);

// Writes tensors (in the given order) and metadata to path: to a temporary name in the
// same folder, flushed, then renamed, so a kill leaves either the old file or the new one.
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata);

// The same, written whole to the temporary name but not renamed until the writer's
// commit(): files that must change together (a checkpoint and its resume file) are all
// written first, then renamed one after the other, so a failed write changes none of them.
std::unique_ptr<AtomicWriter> stage_safetensors(const std::string& path,
                                                const std::vector<TensorRef>& tensors,
                                                const std::map<std::string, std::string>& metadata);

}  // namespace logattn::io
