// Bulk inference (`rlhf infer`): a JSONL of prompts in, one JSONL line per prompt out, in
// input order. Each output line is the input row (its fields in their order) with these
// fields added, or replaced where the row already has them:
//   inputs      {"inputs_pretokenized": the whole prompt text (instruction and format
//               applied), before any cut to prompt_sequence_length tokens} (the seed's form)
//   prediction  the completion (special tokens dropped; invalid UTF-8 replaced)
//   prompt_tokens_cut  how many tokens of the dataset's text were left out to fit
//               prompt_sequence_length (0 when the prompt fit)
//   prompt_seen the text of the prompt tokens the model received (template markers shown)
//   model       {"reference", "sha256", "adapter"?, "adapter_sha256"?}
//   settings    {"instruction", "prompt_format", "prompt_sequence_length", "max_new_tokens",
//                "temperature", "top_p", "top_k", "seed", "batch_size", "dtype"}
//   stopped     whether the completion ended on a stop token (else the length limit)
// The output is written to OUTPUT.partial, one batch at a time (each flushed to disk), and
// renamed to OUTPUT at the end: OUTPUT is complete or absent. A re-run continues a .partial
// after its last whole line (a torn last line is dropped) when every line in it matches this
// run: the same settings, the same model (sha256 of the base and of the adapter) and, at
// each line, the same input row and prompt text; otherwise it is refused. An existing
// complete OUTPUT that matches in the same way is left alone ("already complete", no work);
// one that does not is refused. `restart` discards a .partial and overwrites OUTPUT.
// Batches are fixed slices of the input (batch i = rows [i·B, (i+1)·B)), each sampled with
// seed + i, so a resumed run writes what an uninterrupted one would (same device and threads).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rlhf/data/dataset.h"
#include "rlhf/data/encode.h"
#include "rlhf/model/generate.h"
#include "rlhf/model/model.h"
#include "rlhf/train/trained_folder.h"

namespace rlhf::eval {

// A model ready to complete prompts: a base, optionally a LoRA adapter on it (a train-policy
// folder with policy.json, or a plain peft adapter folder), and the prompt encoding that goes
// with it.
struct GenerationModel {
  std::unique_ptr<Model> base;
  const LoraAdapter* adapter = nullptr;  // owned by base->net; null = the base alone
  std::string adapter_dir, adapter_sha256;  // adapter_sha256: of adapter_model.safetensors
  std::string base_sha256;                  // content hash of the base model file(s)
  data::EncodeConfig encode;  // a policy folder's settings (instruction, format, lengths),
                              // else the defaults
  bool encode_from_adapter = false;
  int32_t eos_id = -1;        // ends completions (completion_eos_id)
};

// A folder whose adapter generates text: a policy (train-policy, train-dpo) or a peft
// adapter of a causal LM, read for inference (dropout off). Throws rlhf::Error naming the
// file and field for a reward model, a SEQ_CLS adapter or one without target modules.
TrainedFolder read_generating_adapter(const std::string& dir);

// An adapter of `folder` (read from `dir`) loaded onto `base` under `name`: the base is
// checked against the folder's recorded sha256 (`flag` names the option that chooses
// another base), and a policy folder brings its prompt encoding and EOS id.
struct GeneratingAdapter {
  const LoraAdapter* adapter = nullptr;  // owned by base.net
  std::string sha256;                    // of adapter_model.safetensors
  data::EncodeConfig encode;             // a policy folder's, else the defaults
  bool encode_from_adapter = false;      // a policy folder
  int32_t eos_id = -1;                   // the policy's EOS, else completion_eos_id(base)
};
GeneratingAdapter attach_generating_adapter(Model& base, const std::string& base_reference,
                                            const std::string& base_sha256, const TrainedFolder& folder,
                                            const std::string& dir, const std::string& name, const std::string& flag);

// Loads `model` (empty = the adapter's recorded base, else the embedded default) and the
// adapter in `adapter_dir` ("" = none). A recorded base sha256 must match. Throws rlhf::Error.
std::unique_ptr<GenerationModel> load_generation_model(const std::string& model, const std::string& adapter_dir,
                                                       const LoadOptions& options);

// Completions of already-encoded prompts in fixed batches, in order: batch i of rows
// [i·batch_size, ...) sampled with sampling.seed + i; stops at the model's stop ids and
// eos_id. on_batch (optional) receives each batch's first row index and its completions as
// they finish. start_row > 0 starts at the batch holding start_row (generated whole, so the
// results equal a run from 0) and reports and returns only rows from start_row on: the
// returned vector has one entry per prompt, those before start_row left empty.
struct Completion {
  std::string text;
  std::vector<int32_t> tokens;  // generated ids (stop id included)
  bool stopped = false;
};
std::vector<Completion> complete_prompts(const GenerationModel& m, const std::vector<std::vector<int32_t>>& prompts,
                                         const SamplingConfig& sampling, int64_t batch_size,
                                         const std::function<void(size_t first, const std::vector<Completion>&)>& on_batch = {},
                                         size_t start_row = 0);

struct InferConfig {
  std::string model;              // "" = the adapter's base, else the embedded default
  std::string adapter;            // folder ("" = none)
  std::string input, output;      // JSONL in (file, folder or glob), JSONL out
  std::string instruction;        // "" with instruction_set false: the adapter's, else none
  bool instruction_set = false;
  std::string prompt_format;      // raw, chat, auto; "" = auto: the adapter's, else from the data
  int64_t prompt_sequence_length = 0;  // 0 = the adapter's, else 512
  SamplingConfig sampling{.temperature = 0.0, .top_k = 0, .top_p = 1.0, .max_new_tokens = 64, .seed = 0};
  int64_t batch_size = 16;
  bool skip_invalid = false;
  int64_t max_rows = 0;           // the first max_rows prompts only (0 = all)
  bool restart = false;           // start over: discard a .partial, overwrite OUTPUT
  std::string dtype = "auto", device = "cpu";  // dtype is recorded in settings
  bool progress = true;
};

struct InferResult {
  size_t rows = 0, resumed_rows = 0;  // in the output; taken over from a .partial (all of them
                                      // when OUTPUT was already complete)
  int64_t new_tokens = 0;              // generated by this run
  double seconds = 0;                  // generation time of this run
  double prompts_per_second = 0, tokens_per_second = 0;
};

// Reads and checks the whole input first (errors name file:line and the field; nothing is
// written), then loads the model and writes OUTPUT as described above. Throws rlhf::Error.
InferResult run_inference(const InferConfig& config);

}  // namespace rlhf::eval
