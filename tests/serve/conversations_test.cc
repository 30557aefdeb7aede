// The conversation store without HTTP or the engine: turns committed, listed, rewound and
// forked; a conversation answering a request refuses changes; the bound on kept turns; a
// folder read back after a restart, the 0.2 layout moved in.
#include "serve/conversations.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "logattn/error.h"

namespace logattn::serve {
namespace {

namespace fs = std::filesystem;
using Result = ConversationStore::Result;

class Conversations : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.init(2);
    dir_ = (fs::temp_directory_path() / ("logattn_conversations_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // One turn: n tokens read into the conversation, committed.
  void turn(ConversationStore& store, const std::string& id, int n) {
    ASSERT_EQ(store.acquire(id), Result::kDone);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng_() % 256);
    store.generator(id).feed(t);
    store.commit(id);
  }
  std::vector<int64_t> turns(ConversationStore& store, const std::string& id) {
    std::vector<int64_t> out;
    const auto info = store.info(id);
    for (const auto& t : info->turns) out.push_back(t.tokens);
    return out;
  }

  model::Model model_{model::ModelConfig::preset("tiny")};
  std::string dir_;
  std::mt19937 rng_{1};
};

TEST_F(Conversations, TurnsRewindAndFork) {
  ConversationStore store(model_, dir_, 16, 3);
  const std::string id = store.create();
  EXPECT_TRUE(store.holds_no_text(id));
  for (int n : {5, 7, 11}) turn(store, id, n);
  EXPECT_EQ(turns(store, id), (std::vector<int64_t>{5, 12, 23}));
  EXPECT_EQ(store.info(id)->turn, 3);
  // Rewind to 2: the state after turn 2 is the one read again.
  EXPECT_EQ(store.rewind(id, 2), Result::kDone);
  EXPECT_EQ(store.info(id)->tokens, 12);
  ASSERT_EQ(store.acquire(id), Result::kDone);
  EXPECT_EQ(store.generator(id).tokens(), 12);
  store.release(id);
  // Fork at turn 1 and at the latest.
  std::string a, b;
  EXPECT_EQ(store.fork(id, 1, a), Result::kDone);
  EXPECT_EQ(turns(store, a), (std::vector<int64_t>{5}));
  EXPECT_EQ(store.fork(id, -1, b), Result::kDone);
  EXPECT_EQ(turns(store, b), (std::vector<int64_t>{5, 12}));
  turn(store, b, 2);
  EXPECT_EQ(store.info(id)->tokens, 12);  // the original is untouched
  // The bound: three kept, the oldest dropped (and neither rewound to nor forked from).
  turn(store, id, 1), turn(store, id, 1);
  EXPECT_EQ(store.info(id)->turn, 4);
  EXPECT_EQ(turns(store, id), (std::vector<int64_t>{12, 13, 14}));
  EXPECT_EQ(store.rewind(id, 1), Result::kNoSuchTurn);
  EXPECT_EQ(store.fork(id, 1, a), Result::kNoSuchTurn);
  EXPECT_EQ(store.rewind(id, 7), Result::kNoSuchTurn);
  EXPECT_EQ(store.rewind(id, 0), Result::kDone);
  EXPECT_TRUE(store.holds_no_text(id));
  EXPECT_TRUE(fs::is_empty(fs::path(dir_) / id));
  // Unknown ids; a conversation answering a request refuses changes.
  EXPECT_EQ(store.rewind("nope", 0), Result::kUnknown);
  EXPECT_EQ(store.fork("nope", -1, a), Result::kUnknown);
  EXPECT_EQ(store.remove("nope"), Result::kUnknown);
  ASSERT_EQ(store.acquire(b), Result::kDone);
  EXPECT_EQ(store.acquire(b), Result::kBusy);
  EXPECT_EQ(store.rewind(b, 1), Result::kBusy);
  EXPECT_EQ(store.fork(b, -1, a), Result::kBusy);
  EXPECT_EQ(store.remove(b), Result::kBusy);
  store.release(b);
  EXPECT_EQ(store.remove(b), Result::kDone);
  EXPECT_FALSE(fs::exists(fs::path(dir_) / b));
  EXPECT_FALSE(store.info(b).has_value());
}

TEST_F(Conversations, AFolderReadBackAndTheOldLayoutMovedIn) {
  std::string id;
  {
    ConversationStore store(model_, dir_, 16, 4);
    id = store.create();
    for (int n : {3, 4}) turn(store, id, n);
    // One server per folder.
    EXPECT_THROW(ConversationStore(model_, dir_, 16, 4), Error);
  }
  // logattn 0.2: <id>.safetensors beside <id>.empty markers.
  fs::copy_file(fs::path(dir_) / id / "2.safetensors", fs::path(dir_) / "old.safetensors");
  std::ofstream(fs::path(dir_) / "new.empty").close();
  std::ofstream(fs::path(dir_) / id / "3.safetensors.tmp.77") << "half";  // a kill's leftover
  ConversationStore store(model_, dir_, 16, 1);  // keeping fewer turns than the folder has
  EXPECT_EQ(store.count(), 3);
  EXPECT_EQ(turns(store, id), (std::vector<int64_t>{7}));
  EXPECT_EQ(store.info("old")->turn, 1);
  EXPECT_EQ(store.info("old")->tokens, 7);
  EXPECT_TRUE(store.holds_no_text("new"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "old.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "new.empty"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / id / "3.safetensors.tmp.77"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / id / "1.safetensors"));
  // Bad settings are refused naming the option.
  EXPECT_THROW(ConversationStore(model_, dir_ + "x", 16, 0), Error);
  EXPECT_THROW(ConversationStore(model_, dir_ + "x", 0, 4), Error);
  fs::remove_all(dir_ + "x");
}

}  // namespace
}  // namespace logattn::serve
