// js-tiktoken's throughput on a text file (single thread, as Node.js runs it):
//   NODE_PATH=build/npm/node_modules node bench/tiktoken_throughput.cjs FILE [REPEAT]
// prints one JSON line; the median of REPEAT timed passes after two warm-up passes.
"use strict";
const fs = require("fs");
const { Tiktoken } = require("js-tiktoken/lite");
const gpt2 = require("js-tiktoken/ranks/gpt2");

const text = fs.readFileSync(process.argv[2], "utf8");
const bytes = Buffer.byteLength(text, "utf8");
const repeat = Number(process.argv[3] || 5);
const enc = new Tiktoken(gpt2);
let tokens = 0;
for (let i = 0; i < 2; ++i) tokens = enc.encode(text, [], []).length;
const secs = [];
for (let i = 0; i < repeat; ++i) {
  const t0 = process.hrtime.bigint();
  tokens = enc.encode(text, [], []).length;
  secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
secs.sort((a, b) => a - b);
const med = secs[Math.floor(secs.length / 2)];
console.log(JSON.stringify({ tokenizer: "js-tiktoken 1.0.21", threads: 1, bytes, tokens,
  seconds: med, mb_per_s: bytes / 1e6 / med, tokens_per_s: tokens / med }));
