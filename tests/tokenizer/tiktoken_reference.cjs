// Reference ids for the GPT-2 tokenizer tests, from js-tiktoken (the JavaScript port of
// tiktoken) with its own copy of the 'gpt2' ranks:
//   node tiktoken_reference.cjs OUT.json FILE...
// writes [{"name", "text", "ids"}] for hand-written cases, slices of the given text files
// (English, code) and seeded random strings over many scripts, emoji and whitespace.
// js-tiktoken's regex uses JavaScript's \s, which (unlike tiktoken's) includes U+FEFF and
// excludes U+0085; those two characters are left out here (tokenizer_test.cc covers them).
"use strict";
const fs = require("fs");
const { Tiktoken } = require("js-tiktoken/lite");
const gpt2 = require("js-tiktoken/ranks/gpt2");

const enc = new Tiktoken(gpt2);
const cases = [];
const add = (name, text) => cases.push({ name, text, ids: Array.from(enc.encode(text, [], [])) });

// Hand-written.
add("english", "The quick brown fox jumps over the lazy dog. It's 3:45pm; don't you think?");
add("contractions", "I'm you're we've they'll she'd it's 'S 'LL I'M don't DON'T o'clock ''s");
add("numbers", "0 1 12 123 1234 12345 3.14159 1,000,000 -42 +7e10 0x1F 2024-11-29");
add("spaces", "a  b   c    d\t\te\n\nf \n g  \n\n  h" + " ".repeat(1000) + "x" + "\n".repeat(300));
add("only spaces", " ".repeat(777));
add("trailing spaces", "end   ");
add("leading newline", "\n\nstart");
add("mixed whitespace", " \t \r\n \u00a0 \u2003x\u3000y \u2028 z\u2029");
add("unicode", "naïve café Größe Ελληνικά русский язык 日本語のテキスト 한국어 العربية हिन्दी");
add("emoji", "😀 😀😀 👩‍👩‍👧‍👦 🇫🇷🇯🇵 👍🏽 ❤️ 🧑‍💻 a😀b");
add("combining", "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937");
add("other numbers", "٣٤٥ Ⅻ ½ ² ① 𝟘𝟙");
add("code", "int main(int argc, char** argv) {\n  return argc > 1 ? 0 : -1;  // done\n}\n");
add("punctuation", "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}");
add("special text", "<|endoftext|> is text here, <|endoftext|>");
add("long word", "a".repeat(2000) + " " + "ab".repeat(500) + " " + "Pneumonoultramicroscopicsilicovolcanoconiosis");
add("long number", "1234567890".repeat(100));
add("empty", "");

// Real text: slices of the given files.
for (const path of process.argv.slice(3)) {
  let text;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (e) {
    continue;
  }
  if (text.includes("\ufffd") || text.includes("\u0085") || text.includes("\ufeff")) continue;
  add("file " + path, text.slice(0, 20000));
}

// Seeded random strings (xorshift32; same cases on every run).
let state = 2463534242;
const rand = (n) => {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state % n;
};
const pools = [
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
  "0123456789",
  " ",
  "  \t\n\r",
  "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
  "'s 't 're 've 'm 'll 'd ",
  "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÉÎÕÜ",
  "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
  "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВ",
  "日本語中文字漢字のはがをにでと한국어글자",
  "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
  "अआइईउऊएऐओऔकखगघ",
  "\u00a0\u2003\u3000\u2009",
  "½²³①Ⅻ٣",
  "\u0301\u0308\u200d",
];
const emoji = ["😀", "😂", "👍", "🏽", "❤️", "🇫🇷", "🧑‍💻", "🐍", "🚀", "𝔘𝔫𝔦"];
for (let c = 0; c < 300; ++c) {
  const len = 1 + rand(c < 250 ? 40 : 400);
  let s = "";
  for (let i = 0; i < len; ++i) {
    if (rand(12) === 0) {
      s += emoji[rand(emoji.length)];
    } else {
      const pool = Array.from(pools[rand(pools.length)]);
      const run = 1 + rand(6);
      for (let k = 0; k < run; ++k) s += pool[rand(pool.length)];
    }
  }
  add("random " + c, s);
}

fs.writeFileSync(process.argv[2], JSON.stringify(cases));
console.log(`wrote ${cases.length} cases to ${process.argv[2]}`);
