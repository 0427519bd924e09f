#include "rlhf/eval/infer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <span>

#include <nlohmann/json.hpp>

#include "rlhf/dist/group.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/registry.h"
#include "rlhf/text/utf8.h"
#include "rlhf/train/adapter_io.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/hash.h"
#include "rlhf/util/progress.h"

namespace rlhf::eval {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// ---- output lines ----------------------------------------------------------------------------

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

// Fields this command adds to (or replaces in) every input row.
constexpr const char* kAddedFields[] = {"inputs", "prediction", "model", "settings", "stopped", "prompt_tokens_cut",
                                       "prompt_seen"};

ojson without_added(ojson j) {
  for (const char* k : kAddedFields) j.erase(k);
  return j;
}

// Why line `got` (parsed) cannot be row i of this run, or "" when it can.
std::string mismatch(const ojson& got, const ojson& expected_input, const std::string& prompt_text,
                     const ojson& model, const ojson& settings) {
  if (!got.is_object()) return "not a JSON object";
  if (!got.contains("prediction") || !got["prediction"].is_string()) return "field 'prediction' is missing";
  if (!got.contains("stopped") || !got["stopped"].is_boolean()) return "field 'stopped' is missing";
  if (!got.contains("settings") || !got["settings"].is_object()) return "field 'settings' is missing";
  const ojson& s = got["settings"];
  for (const auto& [k, v] : settings.items())
    if (!s.contains(k) || s[k] != v)
      return fmt::format("settings differ: {} was {}, now {}", k, s.contains(k) ? dump(s[k]) : "absent", dump(v));
  if (s.size() != settings.size()) return "settings differ";
  if (!got.contains("model") || !got["model"].is_object()) return "field 'model' is missing";
  const ojson& gm = got["model"];
  for (const char* k : {"sha256", "adapter_sha256"}) {
    const bool a = gm.contains(k), b = model.contains(k);
    if (a != b || (a && gm[k] != model[k]))
      return fmt::format("the model differs: model.{} was {}, now {}", k, a ? dump(gm[k]) : "absent",
                         b ? dump(model[k]) : "absent");
  }
  if (!got.contains("inputs") || !got["inputs"].is_object() || got["inputs"].value("inputs_pretokenized", "") != prompt_text)
    return "the prompt differs (inputs.inputs_pretokenized)";
  if (without_added(got) != without_added(expected_input)) return "the input row differs";
  return "";
}

struct PartialScan {
  size_t lines = 0;       // whole lines that match rows 0..lines-1
  size_t bytes = 0;       // their length in bytes
  bool torn = false;      // a last line without its newline was dropped
  std::string problem;    // first line that does not match, with the reason
};

// Checks the whole lines of `text` against the rows of this run; stops at the first problem.
template <class Expect>
PartialScan scan_lines(const std::string& text, size_t rows, const Expect& check_line) {
  PartialScan s;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      s.torn = true;
      break;
    }
    const std::string_view line(text.data() + pos, nl - pos);
    if (s.lines >= rows) {
      s.problem = fmt::format("line {}: more lines than the input has rows ({})", s.lines + 1, rows);
      break;
    }
    ojson got;
    try {
      got = ojson::parse(line);
    } catch (const ojson::parse_error&) {
      s.problem = fmt::format("line {}: not valid JSON", s.lines + 1);
      break;
    }
    std::string why = check_line(s.lines, got);
    if (!why.empty()) {
      s.problem = fmt::format("line {}: {}", s.lines + 1, why);
      break;
    }
    ++s.lines;
    pos = nl + 1;
    s.bytes = pos;
  }
  return s;
}

void fsync_dir(const fs::path& file) {
  fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

const char* dtype_name(torch::Dtype d) {
  return d == torch::kBFloat16 ? "bf16" : d == torch::kFloat16 ? "fp16" : "fp32";
}

void check_config(const InferConfig& c) {
  if (c.input.empty()) fail("--input is required");
  if (c.output.empty()) fail("--output is required");
  if (c.batch_size <= 0) fail("--batch-size must be positive (got {})", c.batch_size);
  if (c.sampling.max_new_tokens < 1) fail("--max-new-tokens must be at least 1 (got {})", c.sampling.max_new_tokens);
  if (!(c.sampling.temperature >= 0)) fail("--temperature must be >= 0 (got {})", c.sampling.temperature);
  if (!(c.sampling.top_p > 0 && c.sampling.top_p <= 1)) fail("--top-p must be in (0, 1] (got {})", c.sampling.top_p);
  if (c.sampling.top_k < 0) fail("--top-k must not be negative (got {})", c.sampling.top_k);
  if (c.prompt_sequence_length < 0) fail("--prompt-sequence-length must not be negative (got {})", c.prompt_sequence_length);
  if (!c.prompt_format.empty() && c.prompt_format != "raw" && c.prompt_format != "chat" && c.prompt_format != "auto")
    fail("--prompt-format '{}': expected raw, chat or auto", c.prompt_format);
  std::error_code ec;
  if (fs::is_directory(c.output, ec)) fail("--output {} is a folder; give a file name", c.output);
}

}  // namespace

TrainedFolder read_generating_adapter(const std::string& dir) {
  TrainedFolder f = read_trained_folder(dir);
  if (f.kind == TrainedFolder::Kind::RewardModel)
    fail("{}: holds a reward model ({}); it scores completions (rlhf score), it does not write them", dir,
         kRewardModelManifest);
  if (f.task_type == "SEQ_CLS")
    fail("{}: field 'task_type' is \"SEQ_CLS\": a sequence-classification (reward model) adapter does not generate text",
         f.adapter_config_path());
  if (f.lora.targets.empty()) fail("{}: field 'target_modules' is missing or empty", f.adapter_config_path());
  f.lora.dropout = 0;  // inference
  return f;
}

GeneratingAdapter attach_generating_adapter(Model& base, const std::string& base_reference,
                                            const std::string& base_sha256, const TrainedFolder& folder,
                                            const std::string& dir, const std::string& name, const std::string& flag) {
  folder.check_base(base_reference, base.path, base_sha256, flag);
  GeneratingAdapter g;
  LoraAdapter& ad = base.net->add_adapter(name, folder.lora, /*seed=*/0);
  load_adapter(dir, ad);
  g.adapter = &ad;
  g.sha256 = sha256_file(folder.adapter_weights_path());
  g.eos_id = completion_eos_id(base);
  if (folder.kind == TrainedFolder::Kind::Policy) {
    g.encode = folder.encode;
    g.encode_from_adapter = true;
    if (folder.eos_id < 0 || folder.eos_id >= base.config.vocab_size)
      fail("{}: field 'encoding.eos_id' = {} is not a token id of the base model", folder.manifest_path(),
           folder.eos_id);
    g.eos_id = folder.eos_id;
  }
  return g;
}

std::unique_ptr<GenerationModel> load_generation_model(const std::string& model, const std::string& adapter_dir,
                                                       const LoadOptions& options) {
  std::optional<TrainedFolder> folder;
  if (!adapter_dir.empty()) folder = read_generating_adapter(adapter_dir);
  const std::string ref = !model.empty() ? model : folder ? folder->base_to_load() : std::string(kDefaultModel);
  auto g = std::make_unique<GenerationModel>();
  g->base = load_model(ref, options);
  g->base_sha256 = model_content_hash(g->base->path);
  g->eos_id = completion_eos_id(*g->base);
  if (folder) {
    GeneratingAdapter ad = attach_generating_adapter(*g->base, ref, g->base_sha256, *folder, adapter_dir, "infer", "--model");
    g->adapter = ad.adapter;
    g->adapter_dir = adapter_dir;
    g->adapter_sha256 = std::move(ad.sha256);
    g->encode = std::move(ad.encode);
    g->encode_from_adapter = ad.encode_from_adapter;
    g->eos_id = ad.eos_id;
  }
  return g;
}

namespace {

GenerateOptions generate_options(const GenerationModel& m) {
  const Model& base = *m.base;
  GenerateOptions go;
  go.stop_ids = base.stop_ids;
  if (m.eos_id >= 0 && std::find(go.stop_ids.begin(), go.stop_ids.end(), m.eos_id) == go.stop_ids.end())
    go.stop_ids.push_back(m.eos_id);
  go.pad_id = base.pad_id;
  if (m.adapter) go.adapters = {m.adapter};
  return go;
}

// The completions of batch `b` (prompts [b·B, (b+1)·B)), sampled with seed + b: the same
// whichever process computes it.
std::vector<Completion> complete_batch(const GenerationModel& m, const GenerateOptions& go,
                                       const std::vector<std::vector<int32_t>>& prompts, const SamplingConfig& sampling,
                                       size_t B, size_t b) {
  const size_t b0 = b * B, b1 = std::min(prompts.size(), b0 + B);
  std::vector<std::vector<int32_t>> batch(prompts.begin() + static_cast<std::ptrdiff_t>(b0),
                                          prompts.begin() + static_cast<std::ptrdiff_t>(b1));
  SamplingConfig s = sampling;
  s.seed = sampling.seed + b;
  Generation gen = generate(*m.base->net, batch, s, go);
  std::vector<Completion> out(b1 - b0);
  for (size_t i = 0; i < out.size(); ++i) {
    Completion& c = out[i];
    c.tokens = std::move(gen.tokens[i]);
    c.stopped = gen.stopped[i];
    std::span<const int32_t> body(c.tokens.data(), c.tokens.size() - (c.stopped && !c.tokens.empty() ? 1 : 0));
    c.text = text::utf8::sanitize(m.base->tokenizer->decode(body, /*skip_special=*/true));
  }
  return out;
}

// A batch's completions as bytes, to gather them on rank 0, and back.
std::string pack(const std::vector<Completion>& batch) {
  ojson j = ojson::array();
  for (const auto& c : batch) j.push_back({{"text", c.text}, {"stopped", c.stopped}, {"tokens", c.tokens}});
  return j.dump();
}
std::vector<Completion> unpack(const std::string& bytes) {
  std::vector<Completion> out;
  for (const auto& c : ojson::parse(bytes))
    out.push_back({c["text"].get<std::string>(), c["tokens"].get<std::vector<int32_t>>(), c["stopped"].get<bool>()});
  return out;
}

}  // namespace

std::vector<Completion> complete_prompts(const GenerationModel& m, const std::vector<std::vector<int32_t>>& prompts,
                                         const SamplingConfig& sampling, int64_t batch_size,
                                         const std::function<void(size_t, const std::vector<Completion>&)>& on_batch,
                                         size_t start_row) {
  if (batch_size <= 0) fail("batch size must be positive (got {})", batch_size);
  const GenerateOptions go = generate_options(m);
  const size_t n = prompts.size(), B = static_cast<size_t>(batch_size);
  std::vector<Completion> out(n);
  for (size_t b = start_row / B; b * B < n; ++b) {
    std::vector<Completion> batch = complete_batch(m, go, prompts, sampling, B, b);
    const size_t first = std::max(b * B, start_row);
    std::vector<Completion> done(std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(first - b * B)),
                                 std::make_move_iterator(batch.end()));
    for (size_t k = 0; k < done.size(); ++k) out[first + k] = done[k];
    if (on_batch) on_batch(first, done);
  }
  return out;
}

namespace {

// Data-parallel generation: batches from start's on, in rounds of one batch per rank (batch
// round + r is rank r's); rank 0 receives each round's batches and hands them to `write` in
// input order, so the output is the one-process run's, byte for byte.
void data_parallel_batches(dist::Group& g, const GenerationModel& m, const std::vector<std::vector<int32_t>>& prompts,
                           const SamplingConfig& sampling, size_t B, size_t start,
                           const std::function<void(size_t first, const std::vector<Completion>&)>& write) {
  const GenerateOptions go = generate_options(m);
  const size_t n_batches = (prompts.size() + B - 1) / B, W = static_cast<size_t>(g.size());
  for (size_t round = start / B; round < n_batches; round += W) {
    const size_t mine = round + static_cast<size_t>(g.rank());
    const std::string payload = mine < n_batches ? pack(complete_batch(m, go, prompts, sampling, B, mine)) : "";
    const std::vector<std::string> all = g.all_gather_bytes(payload);
    if (g.rank() != 0) continue;
    for (size_t k = 0; k < W && round + k < n_batches; ++k) {
      const size_t b = round + k, first = std::max(b * B, start);
      std::vector<Completion> batch = unpack(all[k]);
      batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(first - b * B));
      write(first, batch);
    }
  }
}

// Ranks other than 0: rank 0 decides where the run starts (or that it is complete, or that it
// cannot run) and writes the output; these generate their share of the batches.
InferResult follow_inference(dist::Group& g, const GenerationModel& m, const std::vector<std::vector<int32_t>>& ids,
                             const InferConfig& config) {
  InferResult result;
  result.rows = ids.size();
  const std::string decision = g.all_gather_bytes("")[0];
  if (decision == "complete") {
    result.resumed_rows = ids.size();
    return result;
  }
  if (!decision.starts_with("start ")) fail("rank {}: rank 0 stopped the run (its message says why)", g.rank());
  const size_t start = std::stoull(decision.substr(6));
  result.resumed_rows = start;
  const auto t0 = Clock::now();
  data_parallel_batches(g, m, ids, config.sampling, static_cast<size_t>(config.batch_size), start, {});
  result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return result;
}

}  // namespace

InferResult run_inference(const InferConfig& config) {
  check_config(config);
  const std::string& output = config.output;
  const std::string partial = output + ".partial";

  // 1. The input, read and validated in full before anything else.
  data::ReadOptions ro;
  ro.skip_invalid = config.skip_invalid;
  ro.max_rows = static_cast<size_t>(std::max<int64_t>(0, config.max_rows));
  data::ReadReport report;
  const std::vector<data::PromptRow> rows = data::read_prompt_dataset(config.input, ro, &report);
  if (rows.empty()) fail("{}: no prompts", config.input);

  // 2. The model and how prompts are encoded.
  auto m = load_generation_model(config.model, config.adapter,
                                 {parse_dtype(config.dtype), parse_device(config.device)});
  data::EncodeConfig enc = m->encode;
  data::PromptForms forms;
  forms.add_rows(rows);
  enc.format = data::choose_prompt_format(
      config.prompt_format, m->encode_from_adapter ? std::optional(m->encode.format) : std::nullopt,
      "the adapter in " + m->adapter_dir, forms, "--prompt-format");
  if (config.instruction_set) enc.instruction = config.instruction;
  if (config.prompt_sequence_length > 0) enc.prompt_sequence_length = config.prompt_sequence_length;
  enc.target_sequence_length = std::max<int64_t>(2, config.sampling.max_new_tokens);
  const Model& base = *m->base;
  data::Encoder encoder(*base.tokenizer, base.chat_template, m->eos_id, enc);

  std::vector<std::string> texts(rows.size());
  std::vector<std::vector<int32_t>> ids(rows.size());
  std::vector<size_t> cut(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    texts[i] = encoder.prompt_text(rows[i].prompt);
    data::EncodedPrompt e = encoder.encode_prompt(rows[i].prompt, rows[i].where);
    ids[i] = std::move(e.ids);
    cut[i] = e.cut;
    if (ids[i].empty()) fail("{}: the prompt encodes to no tokens", rows[i].where);
    const int64_t need = static_cast<int64_t>(ids[i].size()) + config.sampling.max_new_tokens;
    if (need > base.config.max_position)
      fail("{}: the prompt ({} tokens) + --max-new-tokens {} exceed the model's context ({}); lower "
           "--prompt-sequence-length or --max-new-tokens",
           rows[i].where, ids[i].size(), config.sampling.max_new_tokens, base.config.max_position);
  }

  // 3. What every output line records.
  const SamplingConfig& sc = config.sampling;
  const ojson settings = {{"instruction", enc.instruction},
                          {"prompt_format", data::prompt_format_name(enc.format)},
                          {"prompt_sequence_length", enc.prompt_sequence_length},
                          {"max_new_tokens", sc.max_new_tokens},
                          {"temperature", sc.temperature},
                          {"top_p", sc.top_p},
                          {"top_k", sc.top_k},
                          {"seed", sc.seed},
                          {"batch_size", config.batch_size},
                          {"dtype", dtype_name(base.net->dtype())}};  // what auto resolved to
  ojson model_json = {{"reference", base.reference}, {"sha256", m->base_sha256}};
  if (m->adapter) {
    model_json["adapter"] = fs::absolute(m->adapter_dir).lexically_normal().string();
    model_json["adapter_sha256"] = m->adapter_sha256;
  }
  auto input_of = [&](size_t i) {
    ojson j = ojson::parse(rows[i].json);
    j["inputs"] = ojson{{"inputs_pretokenized", texts[i]}};
    return j;
  };
  auto line_of = [&](size_t i, const Completion& c) {
    ojson j = input_of(i);
    j["prediction"] = c.text;
    j["prompt_tokens_cut"] = cut[i];
    j["prompt_seen"] = text::utf8::sanitize(base.tokenizer->decode(ids[i]));
    j["model"] = model_json;
    j["settings"] = settings;
    j["stopped"] = c.stopped;
    return dump(j) + "\n";
  };
  auto check_line = [&](size_t i, const ojson& got) { return mismatch(got, input_of(i), texts[i], model_json, settings); };

  std::fprintf(stderr, "[rlhf] infer: %zu prompts from %zu file(s)%s; model %s%s; format %s%s\n", rows.size(),
               report.files.size(),
               report.skipped ? fmt::format(", {} invalid lines skipped", report.skipped).c_str() : "",
               base.reference.c_str(), m->adapter ? (" + adapter " + m->adapter_dir).c_str() : "",
               data::prompt_format_name(enc.format),
               enc.instruction.empty() ? "" : fmt::format(", instruction \"{}\"", enc.instruction).c_str());

  // Under a launcher the ranks share the batches; rank 0 alone touches the output.
  dist::Group* group = dist::job();
  if (group && group->rank() != 0) return follow_inference(*group, *m, ids, config);
  auto tell_ranks = [&](const std::string& decision) {
    if (group) group->all_gather_bytes(decision);
  };
  bool told = false;
  struct TellOnError {
    std::function<void()> f;
    ~TellOnError() {
      if (std::uncaught_exceptions() > 0) f();
    }
  } tell_on_error{[&] {
    if (!told) {
      told = true;
      try {
        tell_ranks("stopped");
      } catch (...) {
      }
    }
  }};

  // 4. Where to start: an existing complete OUTPUT, a .partial to continue, or nothing.
  InferResult result;
  result.rows = rows.size();
  std::error_code ec;
  if (!config.restart && !fs::exists(partial, ec) && fs::exists(output, ec)) {
    const std::string text = read_file(output);
    PartialScan s = scan_lines(text, rows.size(), check_line);
    if (s.problem.empty() && !s.torn && s.lines == rows.size()) {
      std::fprintf(stderr, "[rlhf] %s is already complete (same model, settings and %zu prompts): nothing to do\n",
                   output.c_str(), rows.size());
      result.resumed_rows = rows.size();
      told = true;
      tell_ranks("complete");
      return result;
    }
    fail("{} exists and was not written by this command with these settings ({}); pass --restart to overwrite it, or "
         "choose another --output",
         output, !s.problem.empty() ? s.problem
                 : s.torn           ? std::string("its last line is incomplete")
                                    : fmt::format("{} lines for {} prompts", s.lines, rows.size()));
  }

  const fs::path out_path(output);
  if (out_path.has_parent_path()) fs::create_directories(out_path.parent_path());
  const bool existed = fs::exists(partial, ec);
  const int fd = ::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open: {}", partial, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) fail("{}: another process is writing this output", partial);

  size_t start = 0, keep_bytes = 0;
  try {
    if (existed && !config.restart) {
      const std::string text = read_file(partial);
      PartialScan s = scan_lines(text, rows.size(), check_line);
      if (!s.problem.empty())
        fail("{} was written by another run ({}); pass --restart to start over, or choose another --output", partial,
             s.problem);
      start = s.lines;
      keep_bytes = s.bytes;
      if (s.torn) std::fprintf(stderr, "[rlhf] %s: dropped an incomplete last line\n", partial.c_str());
      std::fprintf(stderr, "[rlhf] continuing %s: %zu of %zu prompts done\n", partial.c_str(), start, rows.size());
    } else if (existed) {
      std::fprintf(stderr, "[rlhf] --restart: discarding %s\n", partial.c_str());
    }
    if (::ftruncate(fd, static_cast<off_t>(keep_bytes)) != 0 || ::lseek(fd, 0, SEEK_END) < 0 || ::fsync(fd) != 0)
      fail("{}: cannot truncate: {}", partial, std::strerror(errno));
  } catch (...) {
    if (!existed) ::unlink(partial.c_str());
    throw;
  }
  result.resumed_rows = start;
  told = true;
  tell_ranks(fmt::format("start {}", start));

  // 5. The completions, appended one batch at a time.
  if (start < rows.size()) {
    std::unique_ptr<Progress> bar;
    if (config.progress)
      bar = std::make_unique<Progress>("infer", static_cast<int64_t>(rows.size()), "prompt", static_cast<int64_t>(start));
    const auto t0 = Clock::now();
    size_t done_rows = start;
    const auto write_batch = [&](size_t first, const std::vector<Completion>& batch) {
          std::string lines;
          for (size_t k = 0; k < batch.size(); ++k) {
            lines += line_of(first + k, batch[k]);
            result.new_tokens += static_cast<int64_t>(batch[k].tokens.size());
          }
          write_all(fd, lines, partial);
          if (::fsync(fd) != 0) fail("{}: cannot flush to disk: {}", partial, std::strerror(errno));
          done_rows = first + batch.size();
          const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
          if (bar) bar->update(static_cast<int64_t>(done_rows), fmt::format("{:.1f} tokens/s", result.new_tokens / std::max(dt, 1e-9)));
    };
    if (group) data_parallel_batches(*group, *m, ids, config.sampling, static_cast<size_t>(config.batch_size), start, write_batch);
    else complete_prompts(*m, ids, config.sampling, config.batch_size, write_batch, start);
    result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (bar) bar->finish();
  }

  // 6. Complete: OUTPUT replaces whatever was there.
  if (::rename(partial.c_str(), output.c_str()) != 0)
    fail("{}: cannot rename into place: {}", output, std::strerror(errno));
  fsync_dir(out_path);
  const size_t generated = rows.size() - start;
  result.prompts_per_second = result.seconds > 0 ? static_cast<double>(generated) / result.seconds : 0;
  result.tokens_per_second = result.seconds > 0 ? static_cast<double>(result.new_tokens) / result.seconds : 0;
  std::fprintf(stderr, "[rlhf] infer: %zu prompts%s in %.2f s: %.2f prompts/s, %.1f tokens/s (%lld new tokens); %s\n",
               generated, start ? fmt::format(" (+{} from the partial output)", start).c_str() : "", result.seconds,
               result.prompts_per_second, result.tokens_per_second, static_cast<long long>(result.new_tokens),
               output.c_str());
  return result;
}

}  // namespace rlhf::eval
