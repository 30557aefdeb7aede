#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/files.h"
#include "logattn/error.h"

namespace logattn::io {

namespace {

int64_t dtype_bytes(const std::string& dt) {
  if (dt == "F64" || dt == "I64" || dt == "U64") return 8;
  if (dt == "F32" || dt == "I32" || dt == "U32") return 4;
  if (dt == "F16" || dt == "BF16" || dt == "I16" || dt == "U16") return 2;
  if (dt == "I8" || dt == "U8" || dt == "BOOL") return 1;
  return 0;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal
      float f = std::ldexp(static_cast<float>(man), -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error("safetensors: " + path + ": " + what);
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

// The header's length, from the first 8 bytes (little-endian) of `size` bytes in all.
uint64_t header_length(const uint8_t* len_bytes, uint64_t size, const std::string& path) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes) bad(path, "header length " + std::to_string(n) + " exceeds 100 MB");
  if (n > size - 8)
    bad(path,
        "truncated: header of " + std::to_string(n) + " bytes, file of " + std::to_string(size));
  return n;
}

}  // namespace

SafeTensors SafeTensors::from_header(const std::string& path, const std::string& header,
                                     uint64_t data_size) {
  SafeTensors st;
  st.path_ = path;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    bad(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad(path, "header is not a JSON object");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) bad(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) bad(path, "__metadata__ value of '" + m.key() + "' is not a string");
        st.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& t = *it;
    const std::string name = it.key();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") ||
        !t.contains("data_offsets") || !t["dtype"].is_string() || !t["shape"].is_array() ||
        !t["data_offsets"].is_array() || t["data_offsets"].size() != 2)
      bad(path, "tensor '" + name + "' lacks a valid dtype, shape or data_offsets");
    TensorInfo info;
    info.dtype = t["dtype"].get<std::string>();
    const int64_t eb = dtype_bytes(info.dtype);
    if (eb == 0) bad(path, "tensor '" + name + "' has unknown dtype " + info.dtype);
    uint64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) bad(path, "tensor '" + name + "' has a bad shape");
      const uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > (uint64_t{1} << 50) / v)
        bad(path, "tensor '" + name + "' is too large");
      numel *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    for (const auto& o : t["data_offsets"])
      if (!o.is_number_unsigned()) bad(path, "tensor '" + name + "' has bad data_offsets");
    info.begin = t["data_offsets"][0].get<uint64_t>();
    info.end = t["data_offsets"][1].get<uint64_t>();
    if (info.begin > info.end || info.end > data_size)
      bad(path, "tensor '" + name + "' data_offsets [" + std::to_string(info.begin) + ", " +
                    std::to_string(info.end) + "] fall outside the " + std::to_string(data_size) +
                    " data bytes (truncated file?)");
    if (info.end - info.begin != numel * static_cast<uint64_t>(eb))
      bad(path, "tensor '" + name + "' has " + std::to_string(info.end - info.begin) +
                    " bytes for its shape's " + std::to_string(numel * eb));
    ranges.push_back({info.begin, info.end});
    st.tensors_[name] = info;
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) bad(path, "tensors' data ranges overlap");
  return st;
}

SafeTensors SafeTensors::read(const std::string& path) {
  require_regular_file(path, "safetensors");
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path, "cannot open (" + std::string(std::strerror(errno)) + ")");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (size < 8) bad(path, "file is " + std::to_string(size) + " bytes, too short for a header");
  uint8_t len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  const uint64_t n = header_length(len_bytes, size, path);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  SafeTensors st = from_header(path, header, size - 8 - n);
  st.data_.resize(size - 8 - n);
  in.read(reinterpret_cast<char*>(st.data_.data()), static_cast<std::streamsize>(st.data_.size()));
  if (!in) bad(path, "read failed (truncated file?)");
  return st;
}

SafeTensors SafeTensors::parse(std::string_view bytes, const std::string& name) {
  const uint64_t size = bytes.size();
  if (size < 8) bad(name, std::to_string(size) + " bytes, too short for a header");
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  const uint64_t n = header_length(b, size, name);
  SafeTensors st = from_header(name, std::string(bytes.substr(8, n)), size - 8 - n);
  st.data_.assign(b + 8 + n, b + size);
  return st;
}

const std::string& SafeTensors::required_metadata(const std::string& key,
                                                  const std::string& what) const {
  const auto it = metadata_.find(key);
  if (it == metadata_.end()) throw Error(what + " " + path_ + " lacks '" + key + "'");
  return it->second;
}

std::vector<float> SafeTensors::floats(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) bad(path_, "has no tensor '" + name + "'");
  const TensorInfo& t = it->second;
  const uint8_t* p = data_.data() + t.begin;
  const int64_t n = t.numel();
  std::vector<float> out(n);
  if (t.dtype == "F32") {
    std::memcpy(out.data(), p, n * 4);
  } else if (t.dtype == "F64") {
    for (int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      if (t.dtype == "F16") {
        out[i] = half_to_float(h);
      } else {
        const uint32_t bits = uint32_t{h} << 16;
        std::memcpy(&out[i], &bits, 4);
      }
    }
  } else {
    bad(path_, "tensor '" + name + "' has dtype " + t.dtype + ", not a floating type");
  }
  return out;
}

const uint8_t* SafeTensors::bytes(const std::string& name, const std::string& dtype) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) bad(path_, "has no tensor '" + name + "'");
  if (it->second.dtype != dtype)
    bad(path_, "tensor '" + name + "' has dtype " + it->second.dtype + ", expected " + dtype);
  return data_.data() + it->second.begin;
}

std::string safetensors_bytes(const std::vector<TensorRef>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  auto nbytes = [](const TensorRef& t) {
    const int64_t eb = dtype_bytes(t.dtype);
    if (eb == 0) throw Error("safetensors: cannot write dtype " + t.dtype);
    int64_t n = eb;
    for (int64_t d : t.shape) n *= d;
    return static_cast<uint64_t>(n);
  };
  for (const auto& t : tensors) {
    const uint64_t n = nbytes(t);
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference does
  std::string bytes(8, '\0');
  const uint64_t hn = h.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((hn >> (8 * i)) & 0xff);
  bytes += h;
  bytes.reserve(bytes.size() + offset);
  for (const auto& t : tensors)
    bytes.append(reinterpret_cast<const char*>(t.data), static_cast<size_t>(nbytes(t)));
  return bytes;
}

std::unique_ptr<AtomicWriter> stage_safetensors(
    const std::string& path, const std::vector<TensorRef>& tensors,
    const std::map<std::string, std::string>& metadata) {
  const std::string bytes = safetensors_bytes(tensors, metadata);
  auto w = std::make_unique<AtomicWriter>(path);
  w->write(bytes.data(), bytes.size());
  return w;
}

void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  stage_safetensors(path, tensors, metadata)->commit();
}

}  // namespace logattn::io
