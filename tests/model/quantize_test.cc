// Quantized models (model/quantize.h): checkpoints round-trip bit for bit and are validated
// on load; every int8 kernel variant gives the model the same logits; typed models refuse
// training. The products' accuracy against float64 oracles is in tests/ops/typed_matrix_test.
#include "model/quantize.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "io/safetensors.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "ops/int8_kernels.h"

namespace logattn::model {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("logattn_quant_" + name)).string();
}

// tiny, with H x d_val = 32 so that every matrix's rows are whole blocks of 32.
ModelConfig config() {
  ModelConfig c = ModelConfig::preset("tiny");
  c.d_val = 16;
  return c;
}

std::vector<float> last_logits(Model& m, const std::vector<int32_t>& tokens) {
  ModelState st = m.new_state(1);
  std::vector<float> logits(m.config().vocab);
  m.forward_with_state(tokens.data(), 1, static_cast<int64_t>(tokens.size()), st, logits.data());
  const int32_t next = 7;
  m.forward_with_state(&next, 1, 1, st, logits.data());  // the one-token step too
  return logits;
}

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    FAIL() << "no error; expected one saying: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Quantize, CheckpointsRoundTripAndEveryKernelGivesTheSameLogits) {
  Model f(config());
  f.init(4);
  const std::vector<int32_t> prompt = {1, 5, 9, 200, 3, 3, 77};
  for (ops::WeightType t : {ops::WeightType::kBF16, ops::WeightType::kQ8_0}) {
    Model q = quantize_model(f, t);
    const std::string p = temp_path(std::string(ops::weight_type_name(t)) + ".safetensors");
    save_checkpoint(p, q, "bytes");
    EXPECT_EQ(io::SafeTensors::read(p).metadata().at("weight_type"), ops::weight_type_name(t));
    Model back = load_checkpoint(p);
    EXPECT_EQ(back.weight_type(), t);
    EXPECT_EQ(back.weights(), q.weights());
    EXPECT_EQ(back.bf16_store(), q.bf16_store());
    EXPECT_EQ(back.q8_store(), q.q8_store());
    EXPECT_EQ(back.q8_scales(), q.q8_scales());
    const ops::Int8Kernel saved = ops::int8_kernel();
    std::vector<float> first;
    for (ops::Int8Kernel k : {ops::Int8Kernel::kScalar, ops::Int8Kernel::kAvx2,
                              ops::Int8Kernel::kAvxVnni, ops::Int8Kernel::kAvx512Vnni}) {
      if (!ops::int8_kernel_supported(k)) continue;
      ops::set_int8_kernel(k);
      const auto logits = last_logits(back, prompt);
      if (first.empty()) first = logits;
      EXPECT_EQ(logits, first) << ops::int8_kernel_name(k);
    }
    ops::set_int8_kernel(saved);
    // Quantized, yet close to the float32 model: the same greedy token here.
    const auto fl = last_logits(f, prompt);
    EXPECT_EQ(std::max_element(first.begin(), first.end()) - first.begin(),
              std::max_element(fl.begin(), fl.end()) - fl.begin());
    std::filesystem::remove(p);
  }
}

TEST(Quantize, RefusesWhatItCannotDo) {
  Model f(config());
  f.init(1);
  Model q = quantize_model(f, ops::WeightType::kQ8_0);
  expect_error([&] { quantize_model(q, ops::WeightType::kBF16); }, "already q8_0");
  const std::vector<int32_t> x = {1, 2, 3}, y = {2, 3, 4};
  expect_error([&] { q.forward(x.data(), y.data(), 1, 3, /*backward=*/true); },
               "training needs float32 weights");
  expect_error([&] { q.init(0); }, "initialise a float32 model");
  // tiny's H x d_val = 16: not whole blocks of 32.
  Model odd(ModelConfig::preset("tiny"));
  odd.init(1);
  expect_error([&] { quantize_model(odd, ops::WeightType::kQ8_0); }, "whole blocks of 32");
}

// A q8_0 checkpoint edited: each damage is refused with the tensor named.
TEST(Quantize, DamagedCheckpointsAreRefused) {
  Model f(config());
  f.init(2);
  Model q = quantize_model(f, ops::WeightType::kQ8_0);
  const std::string w1 = "layers.0.feedforward1.1.weight";
  struct Case {
    std::string what, expected;
    std::function<void(std::vector<io::TensorRef>&, std::map<std::string, std::string>&)> edit;
  };
  std::vector<int8_t> bad_q;
  std::vector<float> bad_d;
  const std::vector<Case> cases = {
      {"unknown type", "unknown weight type 'q4_0'",
       [](auto&, auto& meta) { meta["weight_type"] = "q4_0"; }},
      {"scales missing", "missing tensor '" + w1 + ".scales'",
       [&](auto& refs, auto&) {
         std::erase_if(refs, [&](const io::TensorRef& r) { return r.name == w1 + ".scales"; });
       }},
      {"scales of another shape", "'" + w1 + ".scales' has shape",
       [&](auto& refs, auto&) {
         for (auto& r : refs)
           if (r.name == w1 + ".scales") r.shape = {r.shape[1], r.shape[0]};
       }},
      {"values as float", "has dtype F32; a q8_0 checkpoint stores it as I8",
       [&](auto& refs, auto&) {
         for (auto& r : refs)
           if (r.name == w1) {
             bad_d.assign(r.shape[0] * r.shape[1], 0.f);
             r.data = bad_d.data(), r.dtype = "F32";
           }
       }},
      {"-128", "holds -128",
       [&](auto& refs, auto&) {
         for (auto& r : refs)
           if (r.name == w1) {
             bad_q.assign(static_cast<const int8_t*>(r.data),
                          static_cast<const int8_t*>(r.data) + r.shape[0] * r.shape[1]);
             bad_q[5] = -128;
             r.data = bad_q.data();
           }
       }},
      {"a negative scale", "negative scale",
       [&](auto& refs, auto&) {
         for (auto& r : refs)
           if (r.name == w1 + ".scales") {
             bad_d.assign(static_cast<const float*>(r.data),
                          static_cast<const float*>(r.data) + r.shape[0] * r.shape[1]);
             bad_d[1] = -1.f;
             r.data = bad_d.data();
           }
       }},
  };
  for (const auto& c : cases) {
    // The writer's own tensors and metadata, then the damage.
    const std::string good = temp_path("good.safetensors"), p = temp_path("bad.safetensors");
    save_checkpoint(good, q, "bytes");
    const auto st = io::SafeTensors::read(good);
    std::vector<io::TensorRef> refs;
    for (const auto& [name, info] : st.tensors())
      refs.push_back({name, info.shape, st.bytes(name, info.dtype), info.dtype});
    auto meta = st.metadata();
    c.edit(refs, meta);
    io::write_safetensors(p, refs, meta);
    expect_error([&] { load_checkpoint(p); }, c.expected);
    std::filesystem::remove(p), std::filesystem::remove(good);
  }
}

}  // namespace
}  // namespace logattn::model
