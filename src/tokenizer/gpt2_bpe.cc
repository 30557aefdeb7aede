#include "tokenizer/gpt2_bpe.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

#include "io/files.h"
#include "logattn/error.h"

namespace logattn::tokenizer {

namespace {

// GPT-2 stores each byte as a printable character: bytes that are printable in Latin-1
// stand for themselves, the others for U+0100 onwards, in byte order.
std::vector<int> unicode_to_byte() {
  std::vector<int> inv(512, -1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    inv[printable ? b : next++] = b;
  }
  return inv;
}

// Decodes one of GPT-2's printable strings (UTF-8) back to the bytes it stands for.
bool to_bytes(std::string_view s, const std::vector<int>& inv, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
      i += 2;
    } else {
      return false;  // GPT-2's characters are all below U+0200
    }
    if (cp >= static_cast<int>(inv.size()) || inv[cp] < 0) return false;
    out.push_back(static_cast<char>(inv[cp]));
  }
  return !out.empty();
}

std::string read_file(const std::string& path) {
  io::require_regular_file(path, "GPT-2 tokenizer");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("tokenizer: cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Gpt2Bpe::Gpt2Bpe(const std::string& dir) {
  const auto inv = unicode_to_byte();
  const std::string enc_path = dir + "/encoder.json", bpe_path = dir + "/vocab.bpe";
  nlohmann::json enc;
  try {
    enc = nlohmann::json::parse(read_file(enc_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("tokenizer: " + enc_path + " is not valid JSON: " + e.what());
  }
  if (!enc.is_object() || enc.size() != kGpt2Vocab)
    throw Error("tokenizer: " + enc_path + " must map " + std::to_string(kGpt2Vocab) +
                " strings to ids");
  bytes_.assign(kGpt2Vocab, {});
  std::vector<bool> seen(kGpt2Vocab, false);
  std::string b;
  for (auto it = enc.begin(); it != enc.end(); ++it) {
    if (!it->is_number_integer()) throw Error("tokenizer: " + enc_path + ": ids must be integers");
    const int64_t id = it->get<int64_t>();
    if (id < 0 || id >= kGpt2Vocab || seen[id])
      throw Error("tokenizer: " + enc_path + ": id " + std::to_string(id) +
                  " out of range or repeated");
    seen[id] = true;
    if (it.key() == "<|endoftext|>") {
      if (id != kGpt2EndOfText)
        throw Error("tokenizer: " + enc_path + ": <|endoftext|> must be id 50256");
      bytes_[id] = it.key();  // decodes as its text, like tiktoken
      continue;
    }
    if (!to_bytes(it.key(), inv, b))
      throw Error("tokenizer: " + enc_path + ": '" + it.key() +
                  "' is not a GPT-2 byte-level string");
    bytes_[id] = b;
    if (!ids_.emplace(b, static_cast<int32_t>(id)).second)
      throw Error("tokenizer: " + enc_path + ": two ids for '" + it.key() + "'");
  }
  for (int c = 0; c < 256; ++c) {
    const int32_t id = find(std::string(1, static_cast<char>(c)));
    if (id < 0)
      throw Error("tokenizer: " + enc_path + " lacks the token of byte " + std::to_string(c));
    byte_id_[c] = id;
  }
  // vocab.bpe: the merges in order; each must make a token of the encoder.
  std::istringstream merges(read_file(bpe_path));
  std::string line, left, right;
  int64_t n = 0;
  while (std::getline(merges, line)) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || !to_bytes(std::string_view(line).substr(0, sp), inv, left) ||
        !to_bytes(std::string_view(line).substr(sp + 1), inv, right) ||
        find(left + right) != 256 + n)
      throw Error("tokenizer: " + bpe_path + " line " + std::to_string(n + 2) + " is not merge " +
                  std::to_string(n) + " of encoder.json");
    ++n;
  }
  if (n != kGpt2Vocab - 257)
    throw Error("tokenizer: " + bpe_path + " holds " + std::to_string(n) + " merges, not 50000");
  // tiktoken ranks a pair by the id of its concatenation, whichever way the token was first
  // made: every split of every token into two tokens is a pair.
  for (int32_t id = 0; id < kGpt2EndOfText; ++id) {
    const std::string& t = bytes_[id];
    for (size_t k = 1; k < t.size(); ++k) {
      const int32_t a = find(std::string_view(t).substr(0, k));
      const int32_t c = find(std::string_view(t).substr(k));
      if (a >= 0 && c >= 0) pairs_.emplace(pair_key(a, c), id);
    }
  }
}

int32_t Gpt2Bpe::find(std::string_view bytes) const {
  const auto it = ids_.find(bytes);
  return it == ids_.end() ? -1 : it->second;
}

void Gpt2Bpe::encode_piece(std::string_view piece, std::vector<uint16_t>& out) const {
  const size_t n = piece.size();
  if (n == 0) return;
  if (n == 1) {
    out.push_back(static_cast<uint16_t>(byte_id_[static_cast<unsigned char>(piece[0])]));
    return;
  }
  // A doubly linked list of parts, and a heap of candidate merges (rank, left part) checked
  // when popped (a part may have changed since its pair was pushed).
  std::vector<int32_t> id(n), prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    id[i] = byte_id_[static_cast<unsigned char>(piece[i])];
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  using Cand = std::pair<int32_t, int32_t>;  // (rank, left part): smallest first
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  for (size_t i = 0; i + 1 < n; ++i)
    if (const int32_t r = merged(id[i], id[i + 1]); r >= 0) heap.push({r, static_cast<int32_t>(i)});
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    const auto [r, i] = heap.top();
    heap.pop();
    const int32_t j = next[i];
    if (dead[i] || j < 0 || merged(id[i], id[j]) != r) continue;  // stale
    id[i] = r;
    dead[j] = true;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    if (prev[i] >= 0)
      if (const int32_t q = merged(id[prev[i]], r); q >= 0) heap.push({q, prev[i]});
    if (next[i] >= 0)
      if (const int32_t q = merged(r, id[next[i]]); q >= 0) heap.push({q, i});
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(static_cast<uint16_t>(id[i]));
}

void Gpt2Encoder::encode(std::string_view text, size_t begin, size_t end,
                         std::vector<uint16_t>& out) {
  splitter_.split(text, begin, end, [&](std::string_view piece) {
    // A piece that is a token is that token (tiktoken's shortcut; most words are).
    if (const int32_t id = bpe_.find(piece); id >= 0) {
      out.push_back(static_cast<uint16_t>(id));
      return;
    }
    if (piece.size() > 64) {  // rare; not worth caching
      bpe_.encode_piece(piece, out);
      return;
    }
    auto it = cache_.find(piece);
    if (it == cache_.end()) {
      if (cache_.size() >= (1u << 16)) cache_.clear();  // bounded memory
      std::vector<uint16_t> ids;
      bpe_.encode_piece(piece, ids);
      it = cache_.emplace(std::string(piece), std::move(ids)).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  });
}

}  // namespace logattn::tokenizer
