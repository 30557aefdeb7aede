// The conversation store without HTTP or the engine: turns committed, listed, rewound and
// forked; a conversation answering a request refuses changes; the bound on kept turns; a
// folder read back after a restart, the 0.2 layout moved in.
#include "serve/folder_store.h"

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
    store.commit(id, "user " + std::to_string(n), "answer " + std::to_string(n));
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
  FolderStore store(model_, dir_, 16, 3);
  const std::string id = store.create();
  EXPECT_EQ(store.holds_no_text(id), true);
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
  // Every turn's text stays (the states of the last three only); a title; a fork has both.
  const auto texts = store.texts(id);
  ASSERT_EQ(texts->size(), 4u);
  EXPECT_EQ((*texts)[0].user, "user 5");
  EXPECT_EQ((*texts)[3].assistant, "answer 1");
  EXPECT_EQ(store.set_title(id, "about \"quotes\" \xc3\xa9"), Result::kDone);
  EXPECT_THROW(store.set_title(id, std::string(ConversationStore::kMaxTitle + 1, 'x')), Error);
  std::string c;
  ASSERT_EQ(store.fork(id, 3, c), Result::kDone);
  EXPECT_EQ(store.texts(c)->size(), 3u);
  EXPECT_EQ(store.info(c)->title, "about \"quotes\" \xc3\xa9");
  EXPECT_EQ(store.rewind(id, 0), Result::kDone);
  EXPECT_EQ(store.holds_no_text(id), true);
  EXPECT_TRUE(store.texts(id)->empty());
  EXPECT_EQ(std::distance(fs::directory_iterator(fs::path(dir_) / id), fs::directory_iterator()),
            1);  // the title alone
  // Unknown ids; a conversation answering a request refuses changes.
  EXPECT_EQ(store.rewind("nope", 0), Result::kUnknown);
  EXPECT_EQ(store.fork("nope", -1, a), Result::kUnknown);
  EXPECT_EQ(store.remove("nope"), Result::kUnknown);
  EXPECT_FALSE(store.holds_no_text("nope").has_value());
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
    FolderStore store(model_, dir_, 16, 4);
    id = store.create();
    for (int n : {3, 4}) turn(store, id, n);
    // One server per folder.
    EXPECT_THROW(FolderStore(model_, dir_, 16, 4), Error);
  }
  // logattn 0.2: <id>.safetensors beside <id>.empty markers.
  fs::copy_file(fs::path(dir_) / id / "2.safetensors", fs::path(dir_) / "old.safetensors");
  std::ofstream(fs::path(dir_) / "new.empty").close();
  std::ofstream(fs::path(dir_) / id / "3.safetensors.tmp.77") << "half";  // a kill's leftover
  std::ofstream(fs::path(dir_) / id / "3.json") << "{}";  // a text whose state never came
  FolderStore store(model_, dir_, 16, 1);                 // keeping fewer turns than the folder has
  EXPECT_EQ(store.count(), 3);
  EXPECT_EQ(turns(store, id), (std::vector<int64_t>{7}));
  EXPECT_EQ(store.info(id)->title, "");
  EXPECT_EQ(store.info("old")->turn, 1);
  EXPECT_EQ(store.info("old")->tokens, 7);
  EXPECT_EQ(store.holds_no_text("new"), true);
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "old.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "new.empty"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / id / "3.safetensors.tmp.77"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / id / "1.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(dir_) / id / "3.json"));
  EXPECT_TRUE(fs::exists(fs::path(dir_) / id / "1.json"));  // texts outlive their states
  // Bad settings are refused naming the option.
  EXPECT_THROW(FolderStore(model_, dir_ + "x", 16, 0), Error);
  EXPECT_THROW(FolderStore(model_, dir_ + "x", 0, 4), Error);
  fs::remove_all(dir_ + "x");
}

}  // namespace
}  // namespace logattn::serve
