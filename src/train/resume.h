// What a run folder keeps to continue training exactly: the resume file (weights, AdamW's
// moments, the sampler's state, the step, and the configurations it was written with) and
// the log, log.jsonl. Both are read back from disk, so both are checked like hostile input.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "io/files.h"
#include "model/model.h"
#include "train/adamw.h"
#include "train/data.h"
#include "train/plot.h"
#include "train/trainer.h"

namespace logattn::train {

// The training options a resume file must match: with the tokenizer's name and the number
// of processes (their batches together make the global batch).
nlohmann::json train_config_json(const TrainConfig& c, const std::string& tokenizer,
                                 int processes = 1);

// The resume file written to its temporary name; renamed by commit().
std::unique_ptr<io::AtomicWriter> stage_resume(const std::string& path, const model::Model& m,
                                               AdamW& opt, const BatchSampler& sampler,
                                               const nlohmann::json& train_config, int64_t step);

// Loads a resume file into m, opt and sampler and returns its step; throws logattn::Error
// for another format, model or training options, bad tensors, moments that are not finite
// (or negative second moments) and numbers that are not whole integers in range.
int64_t load_resume(const std::string& path, model::Model& m, AdamW& opt, BatchSampler& sampler,
                    const nlohmann::json& train_config);

// The lines of log.jsonl up to step (a line cut by a kill, or without its fields, ends
// it), as text and as the loss curves they hold.
struct KeptLog {
  std::string text;
  Series train, val;
};
KeptLog read_log(const std::string& path, int64_t step);

// log.jsonl, appended a whole line at a time: a write that fails (disk full) is undone, so
// the file never ends in a cut line. Lines are written before the checkpoint of their step
// is renamed into place, so a resumed run (which keeps the lines up to its step) finds each
// of its steps' lines exactly once, whenever the previous run was killed.
class LogAppender {
 public:
  explicit LogAppender(const std::string& path);  // throws logattn::Error
  ~LogAppender();
  LogAppender(const LogAppender&) = delete;
  LogAppender& operator=(const LogAppender&) = delete;

  // Throws logattn::Error naming the file, the file as it was before the call.
  void append(const std::string& line);
  // The lines written so far reach the disk (before a checkpoint that follows them).
  void sync();

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace logattn::train
