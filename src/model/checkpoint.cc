#include "model/checkpoint.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "io/files.h"
#include "io/safetensors.h"
#include "logattn/error.h"
#include "tokenizer/tokenizer.h"

namespace logattn::model {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::string scales_name(const std::string& matrix) {
  return matrix + ".scales";
}

// The tensors a parameter is stored as: (name, dtype, shape).
struct Stored {
  std::string name, dtype;
  std::vector<int64_t> shape;
};
std::vector<Stored> stored_as(const ParamInfo& p, ops::WeightType type) {
  if (!p.matrix || type == ops::WeightType::kF32) return {{p.name, "F32", p.shape}};
  if (type == ops::WeightType::kBF16) return {{p.name, "BF16", p.shape}};
  return {{p.name, "I8", p.shape},
          {scales_name(p.name), "F32", {p.shape[0], p.shape[1] / ops::kQ8Block}}};
}

// The weight type a checkpoint's metadata names (float32 when it names none).
ops::WeightType weight_type_of(const io::SafeTensors& st) {
  const auto it = st.metadata().find("weight_type");
  if (it == st.metadata().end()) return ops::WeightType::kF32;
  return ops::parse_weight_type(it->second, "checkpoint " + st.path());
}

// Every tensor of the layout present with its shape (and, for typed weights, its dtype and
// its scales), and nothing else but `also`: checked on the header alone, before a model of
// the size the file claims is allocated.
void check_tensors(const io::SafeTensors& st, const ParamLayout& layout, ops::WeightType type,
                   const std::set<std::string>& also) {
  std::set<std::string> expected;
  for (const auto& p : layout.params())
    for (const auto& t : stored_as(p, type)) {
      expected.insert(t.name);
      if (!st.has(t.name))
        throw Error("checkpoint " + st.path() + ": missing tensor '" + t.name + "'");
      const auto& info = st.tensors().at(t.name);
      if (info.shape != t.shape)
        throw Error("checkpoint " + st.path() + ": tensor '" + t.name + "' has shape " +
                    shape_str(info.shape) + ", the model expects " + shape_str(t.shape));
      if (type != ops::WeightType::kF32 && info.dtype != t.dtype)
        throw Error("checkpoint " + st.path() + ": tensor '" + t.name + "' has dtype " +
                    info.dtype + "; a " + ops::weight_type_name(type) +
                    " checkpoint stores it as " + t.dtype);
    }
  for (const auto& [name, info] : st.tensors())
    if (!expected.count(name) && !also.count(name))
      throw Error("checkpoint " + st.path() + ": unexpected tensor '" + name +
                  "' (not part of this model)");
}

std::vector<float> finite_floats(const io::SafeTensors& st, const std::string& name) {
  auto data = st.floats(name);
  for (float x : data)
    if (!std::isfinite(x))
      throw Error("checkpoint " + st.path() + ": tensor '" + name + "' has non-finite values");
  return data;
}

// A matrix of a typed model into its store, validated: finite bf16 values; q8_0 values in
// [-127, 127] (what the kernels' byte products take) with finite, non-negative scales.
void load_typed_matrix(const io::SafeTensors& st, const ParamInfo& p, Model& model) {
  const int64_t n = p.size;
  if (model.weight_type() == ops::WeightType::kBF16) {
    uint16_t* out = model.bf16_store().data() + p.offset;
    std::memcpy(out, st.bytes(p.name, "BF16"), static_cast<size_t>(2 * n));
    for (int64_t i = 0; i < n; ++i)
      if ((out[i] & 0x7f80u) == 0x7f80u)
        throw Error("checkpoint " + st.path() + ": tensor '" + p.name + "' has non-finite values");
    return;
  }
  int8_t* out = model.q8_store().data() + p.offset;
  std::memcpy(out, st.bytes(p.name, "I8"), static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    if (out[i] == -128)
      throw Error("checkpoint " + st.path() + ": tensor '" + p.name +
                  "' holds -128; q8_0 values lie in [-127, 127]");
  const auto d = finite_floats(st, scales_name(p.name));
  for (float x : d)
    if (x < 0)
      throw Error("checkpoint " + st.path() + ": tensor '" + scales_name(p.name) +
                  "' has a negative scale");
  std::copy(d.begin(), d.end(), model.q8_scales().begin() + p.offset / ops::kQ8Block);
}

}  // namespace

void load_weights(const io::SafeTensors& st, Model& model, const std::set<std::string>& also) {
  const ops::WeightType type = weight_type_of(st);
  if (type != model.weight_type())
    throw Error("checkpoint " + st.path() + ": its weights are " + ops::weight_type_name(type) +
                " and the model's " + ops::weight_type_name(model.weight_type()));
  check_tensors(st, model.layout(), type, also);
  for (const auto& p : model.layout().params()) {
    if (p.matrix && type != ops::WeightType::kF32) {
      load_typed_matrix(st, p, model);
      continue;
    }
    const auto data = finite_floats(st, p.name);
    std::copy(data.begin(), data.end(), model.weights().begin() + p.offset);
  }
}

std::unique_ptr<io::AtomicWriter> stage_checkpoint(
    const std::string& path, const Model& model, const std::string& tokenizer,
    const std::map<std::string, std::string>& extra) {
  std::vector<io::TensorRef> refs;
  const ops::WeightType type = model.weight_type();
  for (const auto& p : model.layout().params()) {
    if (!p.matrix || type == ops::WeightType::kF32) {
      refs.push_back({p.name, p.shape, model.weights().data() + p.offset});
      continue;
    }
    const ops::Matrix m = model.matrix(p);
    const auto stored = stored_as(p, type);
    refs.push_back({p.name, p.shape, m.data, stored[0].dtype});
    if (type == ops::WeightType::kQ8_0) refs.push_back({stored[1].name, stored[1].shape, m.scales});
  }
  std::map<std::string, std::string> meta = extra;
  if (type != ops::WeightType::kF32) meta["weight_type"] = ops::weight_type_name(type);
  meta["format"] = kCheckpointFormat;
  meta["format_version"] = std::to_string(kCheckpointVersion);
  meta["config"] = model.config().to_json().dump();
  meta["tokenizer"] = tokenizer;
  return io::stage_safetensors(path, refs, meta);
}

void save_checkpoint(const std::string& path, const Model& model, const std::string& tokenizer,
                     const std::map<std::string, std::string>& extra) {
  stage_checkpoint(path, model, tokenizer, extra)->commit();
}

Model load_checkpoint(const std::string& path, Checkpoint* info, const std::string& config_json) {
  const auto st = io::SafeTensors::read(path);
  const auto& meta = st.metadata();
  Checkpoint ck;
  ck.metadata = meta;
  if (auto it = meta.find("format_version"); it != meta.end() && it->second != "1")
    throw Error("checkpoint " + path + ": format version " + it->second +
                " is newer than this logattn reads (1)");
  nlohmann::json cfg;
  try {
    if (auto it = meta.find("config"); it != meta.end()) {
      cfg = nlohmann::json::parse(it->second);
    } else if (!config_json.empty()) {
      io::require_regular_file(config_json, "model configuration");
      std::ifstream in(config_json);
      if (!in) throw Error("cannot open configuration " + config_json);
      cfg = nlohmann::json::parse(in);
    } else {
      throw Error("checkpoint " + path +
                  ": no model configuration in its metadata; give one (a JSON file with vocab, "
                  "d_emb, n_layers, n_heads, d_key, d_val)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint " + path + ": bad configuration JSON: " + e.what());
  }
  ck.config = ModelConfig::from_json(cfg);
  // A bare state_dict names no tokenizer: GPT-2's if the vocabulary holds its 50,257 ids (the
  // reference's models), else bytes.
  if (auto it = meta.find("tokenizer"); it != meta.end())
    ck.tokenizer = it->second;
  else
    ck.tokenizer = tokenizer::default_tokenizer(ck.config.vocab);
  const ops::WeightType type = weight_type_of(st);
  check_tensors(st, ParamLayout(ck.config, type != ops::WeightType::kF32), type, {});
  Model model(ck.config, type);
  load_weights(st, model);
  if (info) *info = ck;
  return model;
}

void load_weights(const std::string& path, Model& model) {
  load_weights(io::SafeTensors::read(path), model);
}

}  // namespace logattn::model
