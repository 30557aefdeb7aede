// Exact prefix reuse: the states of prompts at some of their positions, kept so that a later
// prompt that begins with the same tokens starts from the longest kept one instead of reading
// them again. A state is constant-size whatever the length of the text behind it, so keeping
// one at any position is cheap.
//
// The rule that makes reuse exact (docs/design.md, "Exact prefix reuse"): a state is kept
// only at a multiple of Model::kPromptBlock, and only if every token before it was read as a
// prompt (Model::Reading::kPrompt) from the empty state or from another kept state; such a
// read does not depend on where a text is split at those multiples, so starting from a kept
// state gives the bits a read from the start gives. A conversation's state, which holds
// sampled tokens read one at a time, never enters.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "generate/generator.h"

namespace logattn::serve {

struct PrefixCacheStats {
  int64_t lookups = 0, hits = 0;
  int64_t tokens_reused = 0;  // prompt tokens not read again
  int64_t entries = 0, bytes = 0, evictions = 0;
};

class PrefixCache {
 public:
  // max_bytes: states, their logits and their tokens held at most (the least recently used
  // leave); 0 keeps nothing.
  explicit PrefixCache(int64_t max_bytes);

  // Starts gen (empty) from the longest kept prefix of prompt; returns its length (0: none;
  // the whole prompt when it is kept whole).
  int64_t start(std::span<const int32_t> prompt, generate::Generator& gen);
  // Where a read of prompt from position `from` (what start returned) should keep a state,
  // in increasing order: where the prompt leaves the longest prefix that an earlier prompt
  // shared (the next prompt with that prefix starts there), and the prompt's end; each rounded
  // down to a multiple of Model::kPromptBlock. Records the prompt as seen.
  std::vector<int64_t> keep_points(std::span<const int32_t> prompt, int64_t from);
  // Keeps gen's state as the one after prefix (a multiple of Model::kPromptBlock tokens, read
  // as the rule above says).
  void keep(std::span<const int32_t> prefix, const generate::Generator& gen);

  bool enabled() const { return max_bytes_ > 0; }
  PrefixCacheStats stats() const { return stats_; }

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    generate::Generator::Snapshot snapshot;
    int64_t bytes = 0;
    std::list<uint64_t>::iterator lru;
  };
  // Hashes of prompt[0, k B) for k = 1, 2, ... (B = Model::kPromptBlock).
  static std::vector<uint64_t> block_hashes(std::span<const int32_t> prompt);

  const int64_t max_bytes_;
  std::unordered_map<uint64_t, Entry> entries_;  // by the hash of their tokens
  std::list<uint64_t> lru_;                      // most recently used first
  // The block hashes of prompts seen, so that a prompt can tell where it leaves an earlier
  // one's prefix; cleared when it reaches kMaxSeen (an optimisation, never a correctness
  // matter: entries are matched on their tokens).
  std::unordered_set<uint64_t> seen_;
  static constexpr size_t kMaxSeen = size_t{1} << 18;
  PrefixCacheStats stats_;
};

}  // namespace logattn::serve
