// Training: resuming continues exactly as if never stopped; bad data gets clear errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/safetensors.h"
#include "logattn/error.h"
#include "train/data.h"
#include "train/trainer.h"

namespace logattn::train {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  const auto p = fs::temp_directory_path() / ("logattn_train_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string write_text(const std::string& dir, const std::string& text) {
  const std::string p = dir + "/text.txt";
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string some_text() {
  std::string s;
  for (int i = 0; i < 400; ++i) s += "To be, or not to be, that is the question " + std::to_string(i) + ".\n";
  return s;
}

TrainConfig tiny(const std::string& dir, const std::string& data) {
  TrainConfig c;
  c.preset = "tiny";
  c.data = data;
  c.out = dir + "/run";
  c.steps = 12;
  c.batch = 2;
  c.context = 16;
  c.eval_every = 4;
  c.eval_batches = 2;
  c.warmup = 2;
  c.lr = 3e-3;
  return c;
}

TEST(Trainer, ResumeEqualsTheUninterruptedRun) {
  const std::string dir = temp_dir("resume");
  const std::string data = write_text(dir, some_text());
  auto noop = [](const StepReport&) {};
  TrainConfig straight = tiny(dir, data);
  straight.out = dir + "/straight";
  run_training(straight, noop);

  TrainConfig first = tiny(dir, data);
  first.out = dir + "/split";
  first.max_minutes = 1e-9;  // stops (cleanly, with a checkpoint) after its first step
  const auto r1 = run_training(first, noop);
  EXPECT_EQ(r1.steps_done, 1);
  TrainConfig rest = tiny(dir, data);
  rest.out = dir + "/split";
  rest.resume = true;
  const auto r2 = run_training(rest, noop);
  EXPECT_EQ(r2.steps_done, 12);
  const auto a = io::SafeTensors::read(straight.out + "/model.safetensors");
  const auto b = io::SafeTensors::read(rest.out + "/model.safetensors");
  for (const auto& [name, info] : a.tensors()) EXPECT_EQ(a.floats(name), b.floats(name)) << name;
  // The log of the resumed run holds every step once.
  std::ifstream log(rest.out + "/log.jsonl");
  int lines = 0;
  for (std::string l; std::getline(log, l);) ++lines;
  EXPECT_EQ(lines, 12);
  fs::remove_all(dir);
}

std::string error_of(const TrainConfig& c) {
  try {
    run_training(c, [](const StepReport&) {});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Trainer, BadDataGetsClearErrors) {
  const std::string dir = temp_dir("bad");
  TrainConfig c = tiny(dir, dir + "/missing.txt");
  EXPECT_NE(error_of(c).find("does not exist"), std::string::npos);
  c.data = write_text(dir, "");
  EXPECT_NE(error_of(c).find("too little"), std::string::npos);
  c.data = write_text(dir, "short text, shorter than the context\n");
  EXPECT_NE(error_of(c).find("fewer than the context"), std::string::npos);
  const std::string empty_dir = dir + "/empty";
  fs::create_directories(empty_dir);
  c.data = empty_dir;
  EXPECT_NE(error_of(c).find("holds no text files"), std::string::npos);
  // Non-UTF-8 bytes are fine for a byte-level model.
  std::string bytes = some_text();
  for (size_t i = 0; i < bytes.size(); i += 7) bytes[i] = static_cast<char>(0xff);
  c.data = write_text(dir, bytes);
  c.steps = 2;
  EXPECT_EQ(error_of(c), "");
  // A .bin file with an odd byte count is not uint16 tokens.
  const std::string odd = dir + "/odd.bin";
  std::ofstream(odd, std::ios::binary) << "abc";
  c.tokens = odd;
  EXPECT_NE(error_of(c).find("odd number of bytes"), std::string::npos);
  c.tokens.clear();
  c.resume = true;
  c.out = dir + "/never-ran";
  EXPECT_NE(error_of(c).find("--resume"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace logattn::train
