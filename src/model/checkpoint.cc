#include "model/checkpoint.h"

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

// Every tensor of the layout present with its shape, and nothing else but `also`: checked on
// the header alone, before a model of the size the file claims is allocated.
void check_tensors(const io::SafeTensors& st, const ParamLayout& layout,
                   const std::set<std::string>& also) {
  std::set<std::string> expected;
  for (const auto& p : layout.params()) {
    expected.insert(p.name);
    if (!st.has(p.name))
      throw Error("checkpoint " + st.path() + ": missing tensor '" + p.name + "'");
    const auto& info = st.tensors().at(p.name);
    if (info.shape != p.shape)
      throw Error("checkpoint " + st.path() + ": tensor '" + p.name + "' has shape " +
                  shape_str(info.shape) + ", the model expects " + shape_str(p.shape));
  }
  for (const auto& [name, info] : st.tensors())
    if (!expected.count(name) && !also.count(name))
      throw Error("checkpoint " + st.path() + ": unexpected tensor '" + name +
                  "' (not part of this model)");
}

}  // namespace

void load_weights(const io::SafeTensors& st, Model& model, const std::set<std::string>& also) {
  check_tensors(st, model.layout(), also);
  for (const auto& p : model.layout().params()) {
    const auto data = st.floats(p.name);
    for (float x : data)
      if (!std::isfinite(x))
        throw Error("checkpoint " + st.path() + ": tensor '" + p.name + "' has non-finite values");
    std::copy(data.begin(), data.end(), model.weights().begin() + p.offset);
  }
}

std::unique_ptr<io::AtomicWriter> stage_checkpoint(
    const std::string& path, const Model& model, const std::string& tokenizer,
    const std::map<std::string, std::string>& extra) {
  std::vector<io::TensorRef> refs;
  for (const auto& p : model.layout().params())
    refs.push_back({p.name, p.shape, model.weights().data() + p.offset});
  std::map<std::string, std::string> meta = extra;
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
  check_tensors(st, ParamLayout(ck.config), {});
  Model model(ck.config);
  load_weights(st, model);
  if (info) *info = ck;
  return model;
}

void load_weights(const std::string& path, Model& model) {
  load_weights(io::SafeTensors::read(path), model);
}

}  // namespace logattn::model
