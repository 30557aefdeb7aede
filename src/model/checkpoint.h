// Checkpoints: safetensors with the reference's tensor names and shapes; the model
// configuration and tokenizer in its metadata (format "logattn-checkpoint", version 1).
// A PyTorch state_dict saved as safetensors loads too: its configuration comes from the
// metadata when present, else from a JSON file given with it (e.g. config.json).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "io/files.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"

namespace logattn::model {

inline constexpr const char* kCheckpointFormat = "logattn-checkpoint";
inline constexpr int kCheckpointVersion = 1;

struct Checkpoint {
  ModelConfig config;
  std::string tokenizer = "bytes";
  std::map<std::string, std::string> metadata;
};

void save_checkpoint(const std::string& path, const Model& model, const std::string& tokenizer,
                     const std::map<std::string, std::string>& extra = {});
// The checkpoint written to its temporary name; renamed by commit() (io::stage_safetensors).
std::unique_ptr<io::AtomicWriter> stage_checkpoint(
    const std::string& path, const Model& model, const std::string& tokenizer,
    const std::map<std::string, std::string>& extra = {});

// Reads the configuration (from the file's metadata, or config_json if the file has none),
// builds the model and loads every tensor, checking names and shapes.
Model load_checkpoint(const std::string& path, Checkpoint* info = nullptr,
                      const std::string& config_json = "");

// Loads the tensors of path into an existing model (its configuration must match): every
// parameter must be there with its shape; other tensors are errors unless named in `also`.
void load_weights(const std::string& path, Model& model);
void load_weights(const io::SafeTensors& st, Model& model, const std::set<std::string>& also = {});

}  // namespace logattn::model
