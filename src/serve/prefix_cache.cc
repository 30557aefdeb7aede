#include "serve/prefix_cache.h"

#include <algorithm>

#include "model/model.h"

namespace logattn::serve {

namespace {

constexpr int64_t kBlock = model::Model::kPromptBlock;

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

PrefixCache::PrefixCache(int64_t max_bytes) : max_bytes_(max_bytes) {}

std::vector<uint64_t> PrefixCache::block_hashes(std::span<const int32_t> prompt) {
  std::vector<uint64_t> out;
  uint64_t h = 0x6c6f676174746e00ull;
  for (size_t i = 0; i + kBlock <= prompt.size(); i += kBlock) {
    for (size_t j = i; j < i + kBlock; ++j) h = mix(h ^ static_cast<uint32_t>(prompt[j]));
    out.push_back(h);
  }
  return out;
}

int64_t PrefixCache::start(std::span<const int32_t> prompt, generate::Generator& gen) {
  if (!enabled()) return 0;
  ++stats_.lookups;
  const auto hashes = block_hashes(prompt);
  for (size_t k = hashes.size(); k-- > 0;) {
    const auto it = entries_.find(hashes[k]);
    if (it == entries_.end()) continue;
    Entry& e = it->second;
    const auto prefix = prompt.first((k + 1) * kBlock);
    if (!std::equal(e.tokens.begin(), e.tokens.end(), prefix.begin(), prefix.end())) continue;
    gen.restore(e.snapshot);
    lru_.splice(lru_.begin(), lru_, e.lru);
    ++stats_.hits;
    stats_.tokens_reused += static_cast<int64_t>(prefix.size());
    return static_cast<int64_t>(prefix.size());
  }
  return 0;
}

std::vector<int64_t> PrefixCache::keep_points(std::span<const int32_t> prompt, int64_t from) {
  if (!enabled()) return {};
  const auto hashes = block_hashes(prompt);
  std::vector<int64_t> points;
  // The longest prefix an earlier prompt had too (a hash seen stands for its tokens here: a
  // collision costs a state kept where no prompt branches, nothing else).
  for (size_t k = hashes.size(); k-- > 0;)
    if (seen_.count(hashes[k])) {
      points.push_back(static_cast<int64_t>(k + 1) * kBlock);
      break;
    }
  points.push_back(static_cast<int64_t>(hashes.size()) * kBlock);
  if (seen_.size() + hashes.size() > kMaxSeen) seen_.clear();
  seen_.insert(hashes.begin(), hashes.end());
  std::erase_if(points, [&](int64_t p) { return p <= from; });
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  return points;
}

void PrefixCache::keep(std::span<const int32_t> prefix, const generate::Generator& gen) {
  if (!enabled() || prefix.empty() || prefix.size() % kBlock != 0) return;
  const uint64_t key = block_hashes(prefix).back();
  Entry e;
  e.tokens.assign(prefix.begin(), prefix.end());
  e.snapshot = gen.snapshot();
  e.bytes = e.snapshot.bytes() + static_cast<int64_t>(prefix.size()) * 4;
  if (e.bytes > max_bytes_) return;
  if (const auto old = entries_.find(key); old != entries_.end()) {
    stats_.bytes -= old->second.bytes;
    lru_.erase(old->second.lru);
    entries_.erase(old);
  }
  while (stats_.bytes + e.bytes > max_bytes_ && !lru_.empty()) {
    const auto it = entries_.find(lru_.back());
    stats_.bytes -= it->second.bytes;
    entries_.erase(it);
    lru_.pop_back();
    ++stats_.evictions;
  }
  lru_.push_front(key);
  e.lru = lru_.begin();
  stats_.bytes += e.bytes;
  entries_.emplace(key, std::move(e));
  stats_.entries = static_cast<int64_t>(entries_.size());
}

}  // namespace logattn::serve
