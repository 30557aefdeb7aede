// `logattn bench train`: seconds per training step (forward, backward, AdamW), tokens/s
// and peak memory of a model configuration; `logattn bench generate`: time per token and
// resident memory of generation after contexts of growing length. Each measurement runs in
// a child process.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/compare.h"
#include "cli/options.h"
#include "generate/generator.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/profile.h"
#include "model/quantize.h"
#include "ops/matmul.h"
#include "threading/parallel.h"
#include "train/adamw.h"
#include "train/step.h"
#include "util/checked.h"
#include "util/memory.h"

namespace logattn::cli {

namespace {

struct TrainBenchConfig {
  std::string preset = "small";
  std::string attention = "log";
  int64_t batch = 16;
  int64_t context = 128;
  int64_t steps = 5;
  bool profile = false;
  bool overlap_reduce = false;
  bool compare = false;
  int64_t rounds = 3;
  bool json = false;
};

// Model FLOPs of one token's forward: 2 per weight of every matrix (each is a product's; the
// tied embedding as the head), and log-attention's 4 d_key d_val per head and layer (`bench
// attention`'s count). A training step is 3 forwards' worth (nanoGPT's and PaLM's model
// FLOPs utilisation: 6 per weight).
double forward_flops_per_token(const model::Model& m) {
  double weights = 0;
  for (const auto& p : m.layout().params())
    if (p.matrix) weights += static_cast<double>(p.shape[0]) * static_cast<double>(p.shape[1]);
  const auto& c = m.config();
  return 2 * weights + 4.0 * static_cast<double>(c.n_layers * c.n_heads * c.d_key * c.d_val);
}

nlohmann::json measure_train(const TrainBenchConfig& c) {
  model::ModelConfig mc = model::ModelConfig::preset(c.preset);
  mc.attention = model::parse_attention(c.attention, "bench");
  model::Model m(mc);
  m.init(0);
  train::AdamW opt(m.layout(), train::AdamWConfig{});
  const int64_t B = c.batch, T = c.context;
  const auto& dist = train::Dist::get();
  if (mc.vocab > 65536)
    throw Error("bench train: a vocabulary over 65,536 does not fit uint16 tokens");
  // The trainer's step (train::train_step) on random tokens: forward and backward, the
  // reduction across processes (under mpirun), clipping and AdamW.
  std::mt19937_64 rng(1);
  std::vector<uint16_t> tokens(static_cast<size_t>(4 * B * T * dist.size() + 1));
  for (auto& t : tokens) t = static_cast<uint16_t>(rng() % mc.vocab);
  train::BatchSampler sampler(tokens.data(), static_cast<int64_t>(tokens.size()), "random tokens",
                              T, 1);
  model::Profile profile;
  train::StepConfig sc;
  sc.batch = B, sc.context = T, sc.overlap_reduce = c.overlap_reduce;
  train::StepBuffers buffers;
  double optimizer_s = 0, reduce_s = 0;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  int64_t step_number = 0;
  auto step = [&] {
    const auto r = train::train_step(m, opt, sampler, dist, sc, 1e-4, ++step_number, buffers);
    reduce_s += r.reduce_s;
    optimizer_s += r.update_s;
  };
  step();  // warm-up (allocations)
  optimizer_s = reduce_s = 0;
  if (c.profile) m.set_profile(&profile);
  dist.barrier();
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < c.steps; ++i) step();
  const double sec = since(t0) / c.steps;
  nlohmann::json j = {{"preset", c.preset},
                      {"attention", model::attention_name(mc.attention)},
                      {"parameters", mc.parameter_count()},
                      {"batch", B},
                      {"context", T},
                      {"sgemm", ops::gemm_backend_name()},
                      {"processes", dist.size()},
                      {"overlap_reduce", c.overlap_reduce},
                      {"seconds_per_step", sec},
                      {"reduce_seconds_per_step", reduce_s / c.steps},
                      {"tokens_per_s", static_cast<double>(B * T * dist.size()) / sec},
                      {"model_flops_per_token", 3 * forward_flops_per_token(m)},
                      {"peak_mib", util::peak_resident_bytes() / 1048576.0}};
  if (c.profile) {
    nlohmann::json ops = nlohmann::json::array();
    for (int op = 0; op < model::kOpCount; ++op)
      if (profile.seconds[0][op] > 0 || profile.seconds[1][op] > 0)  // ran in this step
        ops.push_back({{"op", model::op_name(static_cast<model::Op>(op))},
                       {"kernel", model::op_kernel(static_cast<model::Op>(op))},
                       {"forward_s", profile.seconds[0][op] / c.steps},
                       {"backward_s", profile.seconds[1][op] / c.steps}});
    ops.push_back({{"op", "clip + AdamW"},
                   {"kernel", "logattn loops"},
                   {"forward_s", 0.0},
                   {"backward_s", optimizer_s / c.steps}});
    j["profile"] = ops;
  }
  return j;
}

void print_profile(const nlohmann::json& r) {
  const double step = r.at("seconds_per_step").get<double>();
  fmt::print("{:<32} {:<30} {:>11} {:>12} {:>7}\n", "operation", "kernel", "forward ms",
             "backward ms", "share");
  double total = 0;
  for (const auto& op : r.at("profile")) {
    const double f = op.at("forward_s").get<double>(), b = op.at("backward_s").get<double>();
    total += f + b;
    fmt::print("{:<32} {:<30} {:>11.2f} {:>12.2f} {:>6.1f}%\n", op.at("op").get<std::string>(),
               op.at("kernel").get<std::string>(), f * 1e3, b * 1e3, 100 * (f + b) / step);
  }
  fmt::print("{:<32} {:<30} {:>24.2f} {:>6.1f}%\n", "(not in an operation above)", "",
             (step - total) * 1e3, 100 * (step - total) / step);
}

int run_bench_train(const TrainBenchConfig& c, const OptionTable& table) {
  if (c.batch < 1 || c.context < 1 || c.steps < 1)
    throw Error("bench train: --batch, --context and --steps must be at least 1");
  if (c.rounds < 1 || c.rounds > 100) throw Error("bench train: --rounds must be in [1, 100]");
  train::Dist::get().require_same(table.items(), "bench train");
  {
    // The largest buffers: the logits, and the random tokens the steps draw from.
    const auto mc = model::ModelConfig::preset(c.preset);
    util::checked_product({c.batch, c.context, mc.vocab}, "bench train: batch x context x vocab");
    util::checked_product({4, c.batch, c.context, train::Dist::get().size()},
                          "bench train: the random tokens (4 x batch x context x processes)");
  }
  if (!c.json && train::Dist::get().root())
    fmt::print("logattn bench train\nconfig: {}\n", table.describe() + " " + machine_config());
  std::fflush(stdout);
  if (!c.compare) {
    // in_child turns a measurement's error into an exception. Under mpirun the processes
    // measure in place (a forked child cannot join their MPI job) and rank 0 reports.
    const auto& dist = train::Dist::get();
    auto r = dist.size() > 1
                 ? measure_train(c)
                 : nlohmann::json::parse(in_child([&] { return measure_train(c).dump(); }));
    if (!dist.root()) return 0;
    if (dist.size() == 1) {
      // Model FLOPs utilisation, against the matrix-product rate measured in this run.
      const double sgemm = sgemm_gflops_in_child();
      r["sgemm_gflops"] = sgemm;
      r["mfu"] = r.at("model_flops_per_token").get<double>() * r.at("tokens_per_s").get<double>() /
                 1e9 / sgemm;
    }
    if (dist.size() > 1 && !c.json)
      fmt::print("{}: step {:.4f} s, of which reducing the gradients {:.4f} s ({:.0f}%){}\n",
                 dist.describe(), r.at("seconds_per_step").get<double>(),
                 r.at("reduce_seconds_per_step").get<double>(),
                 100 * r.at("reduce_seconds_per_step").get<double>() /
                     r.at("seconds_per_step").get<double>(),
                 c.overlap_reduce ? " not hidden behind the backward" : "");
    if (c.json) {
      fmt::print("{}\n", r.dump());
      return 0;
    }
    fmt::print("{:.4f} s/step, {:.0f} tokens/s, peak {:.1f} MiB ({} parameters, sgemm {})\n",
               r.at("seconds_per_step").get<double>(), r.at("tokens_per_s").get<double>(),
               r.at("peak_mib").get<double>(), r.at("parameters").get<int64_t>(),
               r.at("sgemm").get<std::string>());
    if (r.contains("mfu"))
      fmt::print(
          "model FLOPs utilisation {:.1f}%: {:.1f} GFLOP/s of model FLOPs (6 per matrix weight, "
          "and the attention's, per token) against sgemm's {:.1f} GFLOP/s measured in this run "
          "(1024^3)\n",
          100 * r.at("mfu").get<double>(),
          r.at("model_flops_per_token").get<double>() * r.at("tokens_per_s").get<double>() / 1e9,
          r.at("sgemm_gflops").get<double>());
    if (c.profile) print_profile(r);
    return 0;
  }
  // Each matrix-product setting in its own process, alternating rounds.
  auto settings = gemm_settings(openblas_cores_for_this_cpu());
  measure_settings(
      settings, c.rounds,
      [&](const GemmSetting&) {
        return std::vector<std::string>{"bench",       "train",
                                        "--preset",    c.preset,
                                        "--attention", c.attention,
                                        "--batch",     std::to_string(c.batch),
                                        "--context",   std::to_string(c.context),
                                        "--steps",     std::to_string(c.steps),
                                        "--json"};
      },
      [](const nlohmann::json& j) {
        return std::pair{j.at("sgemm").get<std::string>(), j.at("tokens_per_s").get<double>()};
      });
  report_settings(settings, "tokens_per_s", "tokens/s", c.rounds, c.json);
  return 0;
}

struct GenerateBenchConfig {
  std::string preset = "small";
  std::string model;  // a checkpoint instead of the preset's random weights
  std::string type = "f32";
  std::string attention = "log";
  std::vector<int64_t> context = {1024, 4096, 16384, 65536};
  int64_t tokens = 256;
  int64_t batch = 1;  // sequences stepping together (the server's continuous batching)
  bool profile = false;
  bool json = false;
};

// The model to time: the checkpoint, or the preset with random weights, as --type asks (the
// float32 original freed before the measurement, so that resident memory is the typed one's).
model::Model generate_bench_model(const GenerateBenchConfig& c) {
  const ops::WeightType type = ops::parse_weight_type(c.type, "bench generate: --type");
  if (!c.model.empty()) {
    model::Model m = model::load_checkpoint(c.model);
    if (type == ops::WeightType::kF32 || m.weight_type() == type) return m;
    return model::quantize_model(m, type);
  }
  model::ModelConfig mc = model::ModelConfig::preset(c.preset);
  mc.attention = model::parse_attention(c.attention, "bench");
  model::Model m(mc);
  m.init(0);
  if (type == ops::WeightType::kF32) return m;
  return model::quantize_model(m, type);
}

// Bytes of a parameter as the model stores it: a matrix in its storage type, the rest float32.
double param_bytes(const model::Model& m, const model::ParamInfo& p) {
  double n = 1;
  for (const int64_t d : p.shape) n *= static_cast<double>(d);
  const ops::WeightType t = p.matrix ? m.weight_type() : ops::WeightType::kF32;
  return n * (t == ops::WeightType::kF32    ? 4.0
              : t == ops::WeightType::kBF16 ? 2.0
                                            : 1.0 + 4.0 / ops::kQ8Block);
}

// Bytes of weights a generation step reads: every parameter once (the tied head reads the
// whole embedding).
double step_weight_bytes(const model::Model& m) {
  double bytes = 0;
  for (const auto& p : m.layout().params()) bytes += param_bytes(m, p);
  return bytes;
}

// The operation of a generation step that reads a parameter. W1 is read by the fused step
// when one sequence steps through log-attention, by the projection otherwise.
model::Op reading_op(const std::string& name, bool fused) {
  if (name == "embed.weight") return model::Op::kHead;
  if (name.starts_with("embed_pos.")) return model::Op::kPosition;
  if (name.find(".feedforward1.1.") != std::string::npos)
    return fused ? model::Op::kFusedStep : model::Op::kProjection;
  if (name.find(".feedforward2.0.") != std::string::npos) return model::Op::kMix;
  if (name.find(".feedforward2.2.") != std::string::npos) return model::Op::kOut;
  return model::Op::kLayerNorm;
}

// The machine's read bandwidth, GB/s: 1 GiB summed by every thread (integer sums, which the
// compiler vectorises), the best of 3 rounds.
double read_bandwidth_gbs() {
  constexpr int64_t kBlock = int64_t{1} << 17;  // uint64 per task: 1 MiB
  constexpr int64_t kBlocks = 1024;
  std::vector<uint64_t> buf(static_cast<size_t>(kBlock * kBlocks), 1);
  std::vector<uint64_t> sums(kBlocks);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    parallel_for(kBlocks, kBlock * kBlocks, [&](int64_t b) {
      const uint64_t* p = buf.data() + b * kBlock;
      uint64_t s = 0;
      for (int64_t i = 0; i < kBlock; ++i) s += p[i];
      sums[b] = s;
    });
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    uint64_t total = 0;
    for (const uint64_t s : sums) total += s;
    if (total != static_cast<uint64_t>(kBlock * kBlocks)) throw Error("bench: bandwidth sum");
    best = std::max(best, static_cast<double>(buf.size() * sizeof(uint64_t)) / t / 1e9);
  }
  return best;
}

std::string measure_generate(const GenerateBenchConfig& c, int64_t context) {
  model::Model m = generate_bench_model(c);
  generate::Generator gen(m);
  std::mt19937_64 rng(1);
  std::vector<int32_t> prompt(context);
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % m.config().vocab);
  // The prompt read twice: the first warms the shapes up, the second is timed.
  {
    generate::Generator warm(m);
    warm.feed(prompt, 1024);
  }
  const auto p0 = Clock::now();
  gen.feed(prompt, 1024);
  const double prompt_s = std::chrono::duration<double>(Clock::now() - p0).count();
  generate::SampleOptions greedy;
  greedy.temperature = 0;
  uint64_t seed = 0;
  // One step of every sequence: alone through next(), several through one batched step (the
  // others continue from a copy of the prompt's state, as prefix reuse would start them).
  std::vector<std::unique_ptr<generate::Generator>> others;
  for (int64_t b = 1; b < c.batch; ++b) {
    others.push_back(std::make_unique<generate::Generator>(m));
    others.back()->restore(gen.snapshot());
  }
  std::vector<generate::Generator*> gens = {&gen};
  for (auto& g : others) gens.push_back(g.get());
  generate::Generator::Batch batch;
  std::vector<int32_t> next(gens.size());
  const int64_t V = m.config().vocab;
  auto step = [&] {
    if (gens.size() == 1) return static_cast<void>(gen.next(greedy, seed));
    for (size_t b = 0; b < gens.size(); ++b)
      next[b] = generate::pick_token(gens[b]->last_logits().data(), V, greedy, seed);
    generate::Generator::step_together(gens, next, batch);
  };
  step();  // warm-up: the one-token shapes
  // Median of rounds of 32 steps.
  std::vector<double> rounds;
  for (int64_t done = 0; done < c.tokens; done += 32) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 32; ++i) step();
    rounds.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / 32);
  }
  std::nth_element(rounds.begin(), rounds.begin() + rounds.size() / 2, rounds.end());
  const double step_s = rounds[rounds.size() / 2];
  std::string profile_json;
  if (c.profile) {
    // Where a step's time goes, over 32 more steps, with the weights each operation reads.
    model::Profile profile;
    m.set_profile(&profile);
    const auto t0 = Clock::now();
    for (int i = 0; i < 32; ++i) step();
    const double profiled_s = std::chrono::duration<double>(Clock::now() - t0).count() / 32;
    m.set_profile(nullptr);
    const bool fused = profile.seconds[0][static_cast<int>(model::Op::kFusedStep)] > 0;
    std::array<double, model::kOpCount> bytes{};
    for (const auto& p : m.layout().params())
      bytes[static_cast<int>(reading_op(p.name, fused))] += param_bytes(m, p);
    nlohmann::json ops = nlohmann::json::array();
    for (int op = 0; op < model::kOpCount; ++op)
      if (profile.seconds[0][op] > 0)
        ops.push_back({{"op", model::op_name(static_cast<model::Op>(op))},
                       {"ms", profile.seconds[0][op] / 32 * 1e3},
                       {"weight_mb", bytes[op] / 1e6}});
    profile_json = fmt::format(", \"profiled_ms_per_token\": {:.4f}, \"profile\": {}",
                               profiled_s * 1e3, ops.dump());
  }
  return fmt::format(
      "{{\"context\": {}, \"prompt_tokens_per_s\": {:.1f}, \"ms_per_token\": {:.4f}, "
      "\"rss_mib\": {:.1f}, \"weight_mb\": {:.2f}, \"weight_gb_per_s\": {:.2f}, "
      "\"prompt_gflops\": {:.2f}, \"batch\": {}, \"tokens_per_s\": {:.1f}{}}}",
      context, static_cast<double>(context) / prompt_s, step_s * 1e3,
      util::resident_bytes() / 1048576.0, step_weight_bytes(m) / 1e6,
      step_weight_bytes(m) / step_s / 1e9,
      forward_flops_per_token(m) * static_cast<double>(context) / prompt_s / 1e9, c.batch,
      static_cast<double>(c.batch) / step_s, profile_json);
}

// The profile of a measurement: each operation's time per token, its share of the step, and
// for those that read weights the rate and its share of the machine's bandwidth.
void print_generate_profile(const nlohmann::json& r, double bandwidth) {
  const double step = r.at("profiled_ms_per_token").get<double>();
  fmt::print("  {:<40} {:>9} {:>6} {:>9} {:>7} {:>13}\n", "operation", "ms/token", "share",
             "MB read", "GB/s", "of bandwidth");
  double total = 0;
  for (const auto& op : r.at("profile")) {
    const double ms = op.at("ms").get<double>(), mb = op.at("weight_mb").get<double>();
    total += ms;
    if (mb >= 0.01)
      fmt::print("  {:<40} {:>9.4f} {:>5.1f}% {:>9.2f} {:>7.1f} {:>12.0f}%\n",
                 op.at("op").get<std::string>(), ms, 100 * ms / step, mb, mb / ms,
                 100 * mb / ms / bandwidth);
    else
      fmt::print("  {:<40} {:>9.4f} {:>5.1f}%\n", op.at("op").get<std::string>(), ms,
                 100 * ms / step);
  }
  fmt::print("  {:<40} {:>9.4f} {:>5.1f}%\n", "(not in an operation above)", step - total,
             100 * (step - total) / step);
}

int run_bench_generate(const GenerateBenchConfig& c, const OptionTable& table) {
  if (c.context.empty() || c.tokens < 32)
    throw Error("bench generate: give at least one --context and --tokens of at least 32");
  if (c.batch < 1 || c.batch > 1024) throw Error("bench generate: --batch must be in [1, 1024]");
  // The limit a step's reading of its weights runs into, measured in this run.
  // And the one a prompt's products run into.
  const double bandwidth = json_number(
      in_child([] { return fmt::format("{{\"gbs\": {:.3f}}}", read_bandwidth_gbs()); }), "gbs");
  const double sgemm = sgemm_gflops_in_child();
  if (!c.json)
    fmt::print(
        "logattn bench generate\nconfig: {}\nmemory bandwidth: {:.1f} GB/s (1 GiB read on every "
        "thread, best of 3); sgemm {:.1f} GFLOP/s (1024^3)\n"
        "{:>9} {:>16} {:>9} {:>12} {:>9} {:>10} {:>8} {:>13}\n",
        table.describe() + " " + machine_config(), bandwidth, sgemm, "context", "prompt tokens/s",
        "of sgemm", "ms/token", "RSS MiB", "weights MB", "GB/s", "of bandwidth");
  std::fflush(stdout);
  std::string all = "[";
  for (int64_t ctx : c.context) {
    if (ctx < 1) throw Error("bench generate: every --context must be at least 1");
    std::string r = in_child([&] { return measure_generate(c, ctx); });
    r.insert(r.rfind('}'), fmt::format(", \"memory_gb_per_s\": {:.3f}, \"sgemm_gflops\": {:.3f}",
                                       bandwidth, sgemm));
    all += (all.size() > 1 ? ", " : "") + r;
    if (!c.json) {
      const double gbs = json_number(r, "weight_gb_per_s");
      fmt::print("{:>9} {:>16.1f} {:>8.0f}% {:>12.4f} {:>9.1f} {:>10.1f} {:>8.1f} {:>12.0f}%\n",
                 ctx, json_number(r, "prompt_tokens_per_s"),
                 100 * json_number(r, "prompt_gflops") / sgemm, json_number(r, "ms_per_token"),
                 json_number(r, "rss_mib"), json_number(r, "weight_mb"), gbs,
                 100 * gbs / bandwidth);
      if (c.batch > 1)
        fmt::print("  {} sequences stepping together: {:.1f} tokens/s\n", c.batch,
                   json_number(r, "tokens_per_s"));
      if (c.profile) print_generate_profile(nlohmann::json::parse(r), bandwidth);
      std::fflush(stdout);
    }
  }
  if (c.json) fmt::print("{}]\n", all);
  return 0;
}

}  // namespace

Runner add_bench_generate_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("generate",
                                   "Generation: prompt tokens/s, then time per token and resident "
                                   "memory, after contexts of growing length");
  auto cfg = std::make_shared<GenerateBenchConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--preset", &cfg->preset, "model preset: small, paper or tiny")
      .add("--model", &cfg->model, "a checkpoint instead of the preset (random weights)")
      .add("--type", &cfg->type, "weights: f32, bf16 or q8_0 (converted before timing)")
      .add("--attention", &cfg->attention, "log (the paper's) or softmax (the twin, a KV cache)")
      .add("--context", &cfg->context, "context lengths before timing (comma-separated)")
      .add("--tokens", &cfg->tokens, "tokens to time at each context length")
      .add("--batch", &cfg->batch,
           "sequences stepping together (ms/token is then per step of all of them)")
      .add("--profile", &cfg->profile,
           "time each operation of a step, with the weights it reads and their rate")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  cmd->get_option("--context")->delimiter(',');
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_generate(*cfg, *table) : -1; };
}

Runner add_bench_train_command(CLI::App& bench) {
  auto* cmd =
      bench.add_subcommand("train", "Training step time, tokens/s and peak memory of a preset");
  auto cfg = std::make_shared<TrainBenchConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--preset", &cfg->preset, "model preset: small, paper or tiny")
      .add("--attention", &cfg->attention, "log (the paper's) or softmax (the twin)")
      .add("--batch", &cfg->batch, "sequences per step")
      .add("--context", &cfg->context, "tokens per sequence")
      .add("--steps", &cfg->steps, "steps to time (after one warm-up step)")
      .add("--profile", &cfg->profile, "time each operation of the step, with its kernel")
      .add("--overlap-reduce", &cfg->overlap_reduce,
           "under mpirun: sum each layer's gradients across processes while the backward goes on")
      .add("--compare", &cfg->compare,
           "time the step under each matrix-product setting (oneDNN, OpenBLAS and its kernels "
           "for this CPU), alternating rounds, each in its own process")
      .add("--rounds", &cfg->rounds, "rounds of --compare")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_bench_train(*cfg, *table) : -1; };
}

}  // namespace logattn::cli
