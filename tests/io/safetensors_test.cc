// safetensors: round trip, and truncated or hostile files rejected with a clear error.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/safetensors.h"
#include "logattn/error.h"

namespace logattn::io {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("logattn_st_" + name)).string();
}

void write_raw(const std::string& path, const std::string& header, size_t data_bytes,
               uint64_t claimed_len = UINT64_MAX) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
}

std::string error_reading(const std::string& path) {
  try {
    SafeTensors::read(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SafeTensors, RoundTripWithMetadata) {
  const std::string p = temp_path("ok.safetensors");
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {-1.5f};
  write_safetensors(p, {{"a", {2, 3}, a.data()}, {"b", {1}, b.data()}}, {{"k", "v"}});
  const auto st = SafeTensors::read(p);
  EXPECT_EQ(st.metadata().at("k"), "v");
  EXPECT_EQ(st.floats("a"), a);
  EXPECT_EQ(st.tensors().at("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(st.floats("b"), b);
  EXPECT_NE(error_reading(p), "x");
  std::filesystem::remove(p);
}

TEST(SafeTensors, TruncatedAndHostileFiles) {
  const std::string p = temp_path("bad.safetensors");
  struct Case {
    std::string header;
    size_t data;
    uint64_t claimed;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"", 0, 5, "truncated: header of 5 bytes, file of 8"},
      {"{}", 0, 1ull << 40, "exceeds 100 MB"},
      {"{\"a\": 1", 0, UINT64_MAX, "not valid JSON"},
      {"[1, 2]", 0, UINT64_MAX, "not a JSON object"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4, UINT64_MAX,
       "outside the 4 data bytes"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, UINT64_MAX,
       "has 8 bytes for its shape's 12"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": "
       "\"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
       12, UINT64_MAX, "overlap"},
      {"{\"a\": {\"dtype\": \"Q7\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, UINT64_MAX,
       "unknown dtype"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, UINT64_MAX,
       "bad shape"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}",
       8, UINT64_MAX, "too large"},
      {"{\"a\": {\"dtype\": \"F32\"}}", 0, UINT64_MAX, "lacks a valid"},
      {"{\"__metadata__\": {\"k\": 3}}", 0, UINT64_MAX, "is not a string"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, UINT64_MAX,
       "fall outside"},
  };
  for (const auto& c : cases) {
    write_raw(p, c.header, c.data, c.claimed);
    const std::string msg = error_reading(p);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "header " << c.header << " -> " << msg;
    EXPECT_NE(msg.find(p), std::string::npos) << msg;  // names the file
  }
  std::ofstream(p, std::ios::binary) << "abcd";
  EXPECT_NE(error_reading(p).find("too short"), std::string::npos);
  EXPECT_NE(error_reading(temp_path("does-not-exist")).find("cannot open"), std::string::npos);
  std::filesystem::remove(p);
}

TEST(SafeTensors, WritesAreAtomic) {
  // A failed write (the folder does not exist) leaves nothing behind and throws.
  const std::vector<float> a = {1};
  EXPECT_THROW(write_safetensors("/nonexistent-folder/x.safetensors", {{"a", {1}, a.data()}}, {}),
               Error);
}

}  // namespace
}  // namespace logattn::io
