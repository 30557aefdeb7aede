#include "train/resume.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "io/json.h"
#include "io/safetensors.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "util/checked.h"

namespace logattn::train {

namespace {

constexpr const char* kResumeFormat = "logattn-resume";
constexpr int kResumeVersion = 1;

}  // namespace

nlohmann::json train_config_json(const TrainConfig& c, const std::string& tokenizer,
                                 int processes) {
  return {{"tokenizer", tokenizer},
          {"processes", processes},
          {"batch", c.batch},
          {"context", c.context},
          {"accum", c.accum},
          {"lr", c.lr},
          {"min_lr", c.min_lr},
          {"warmup", c.warmup},
          {"steps", c.steps},
          {"weight_decay", c.weight_decay},
          {"clip", c.clip},
          {"seed", c.seed},
          {"eval_every", c.eval_every},
          {"eval_batches", c.eval_batches}};
}

std::unique_ptr<io::AtomicWriter> stage_resume(const std::string& path, const model::Model& m,
                                               AdamW& opt, const BatchSampler& sampler,
                                               const nlohmann::json& train_config, int64_t step) {
  const auto& layout = m.layout();
  std::vector<io::TensorRef> refs;
  for (const auto& p : layout.params())
    refs.push_back({p.name, p.shape, m.weights().data() + p.offset});
  refs.push_back({"adamw.m", {layout.total()}, opt.m().data()});
  refs.push_back({"adamw.v", {layout.total()}, opt.v().data()});
  return io::stage_safetensors(path, refs,
                               {{"format", kResumeFormat},
                                {"format_version", std::to_string(kResumeVersion)},
                                {"step", std::to_string(step)},
                                {"rng", sampler.rng_state()},
                                {"model_config", m.config().to_json().dump()},
                                {"train_config", train_config.dump()}});
}

int64_t load_resume(const std::string& path, model::Model& m, AdamW& opt, BatchSampler& sampler,
                    const nlohmann::json& train_config) {
  const auto st = io::SafeTensors::read(path);
  auto get = [&](const char* k) { return st.required_metadata(k, "resume:"); };
  if (get("format") != kResumeFormat || get("format_version") != std::to_string(kResumeVersion))
    throw Error("resume: " + path + " is not a logattn resume file of version 1");
  const std::string meta = "resume file " + path + ": metadata ";
  if (io::parse_json(get("model_config"), meta + "'model_config'") != m.config().to_json())
    throw Error("resume: " + path + " is for another model configuration");
  nlohmann::json written = io::parse_json(get("train_config"), meta + "'train_config'");
  // Files from before runs on several processes: one process.
  if (written.is_object() && !written.contains("processes")) written["processes"] = 1;
  if (written.is_object() && written["processes"] != train_config.at("processes"))
    throw Error("resume: the run in " + path + " was trained by " + written["processes"].dump() +
                " process(es) and this is " + train_config.at("processes").dump() +
                ": the global batch (processes x --batch x --accum) would change; resume with "
                "mpirun -np " +
                written["processes"].dump() + " (or one process without mpirun)");
  if (written != train_config)
    throw Error("resume: " + path +
                " was written with other training options; resume with the same options");
  model::load_weights(st, m, {"adamw.m", "adamw.v"});  // names and shapes checked
  // First and second moments are finite, the second never negative: anything else would
  // turn every weight it touches into NaN at the first update.
  struct Moment {
    const char* name;
    std::vector<float>* dst;
    bool non_negative;
  };
  for (const Moment& mo : {Moment{"adamw.m", &opt.m(), false}, Moment{"adamw.v", &opt.v(), true}}) {
    const auto x = st.floats(mo.name);
    if (x.size() != mo.dst->size()) throw Error("resume: " + path + " has a bad " + mo.name);
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(x[i]) || (mo.non_negative && x[i] < 0.f))
        throw Error(
            "resume: " + path + ": " + mo.name + "[" + std::to_string(i) + "] is " +
            std::to_string(x[i]) +
            (mo.non_negative ? "; moments must be finite and >= 0" : "; moments must be finite"));
    *mo.dst = x;
  }
  sampler.set_rng_state(get("rng"));
  const int64_t step = util::parse_integer(get("step"), 0, util::kMaxCount,
                                           "resume file " + path + ": metadata 'step'");
  opt.set_step(step);
  return step;
}

KeptLog read_log(const std::string& path, int64_t step) {
  KeptLog kept;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      // at(): a line without a field (cut by a kill, or edited by hand) throws instead of
      // reading past a const object.
      const auto j = nlohmann::json::parse(line);
      const double line_step = j.at("step").get<double>(), loss = j.at("loss").get<double>();
      if (line_step > static_cast<double>(step)) break;
      const bool has_val = j.contains("val_loss");
      const double val = has_val ? j.at("val_loss").get<double>() : 0.0;
      kept.text += line + "\n";
      kept.train.push_back({line_step, loss});
      if (has_val) kept.val.push_back({line_step, val});
    } catch (const nlohmann::json::exception&) {
      break;  // a line cut by a kill: the log continues from the last whole line
    }
  }
  return kept;
}

LogAppender::LogAppender(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("train: cannot open " + path + ": " + std::strerror(errno));
}

LogAppender::~LogAppender() {
  if (fd_ >= 0) ::close(fd_);
}

void LogAppender::append(const std::string& line) {
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "nothing written";
      if (before < 0 || ::ftruncate(fd_, before) != 0)
        throw Error("train: cannot write " + path_ + " (" + why +
                    ") nor remove the part of a line written; remove the last line by hand");
      throw Error("train: cannot write " + path_ + " (" + why + "; disk full?)");
    }
    done += static_cast<size_t>(n);
  }
}

void LogAppender::sync() {
  if (::fdatasync(fd_) != 0)
    throw Error("train: cannot write " + path_ + " to disk: " + std::strerror(errno));
}

}  // namespace logattn::train
