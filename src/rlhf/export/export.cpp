#include "rlhf/export/export.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "rlhf/export/export_plan.h"
#include "rlhf/export/gguf_export.h"
#include "rlhf/export/hf_folder.h"
#include "rlhf/export/merge.h"
#include "rlhf/model/registry.h"
#include "rlhf/train/trained_folder.h"
#include "rlhf/util/error.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using namespace exporter;

// Removes a temporary folder or file unless released.
struct TempPath {
  std::string path;
  ~TempPath() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool dir_is_empty(const fs::path& p) { return fs::is_directory(p) && fs::directory_iterator(p) == fs::directory_iterator(); }

void check_output(const ExportOptions& o, const std::string& base_path) {
  if (o.output.empty()) fail("--output is required");
  const fs::path out(o.output);
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!base_path.empty() && fs::equivalent(out, base_path, ec))
      fail("{}: the output is the base model itself; choose another --output", o.output);
    if (!o.adapter.empty() && fs::exists(o.adapter) && fs::equivalent(out, o.adapter, ec))
      fail("{}: the output is the adapter folder itself; choose another --output", o.output);
    if (o.format == "hf") {
      if (!fs::is_directory(out)) fail("{}: exists and is not a folder; choose another --output", o.output);
      if (!dir_is_empty(out) && !fs::exists(out / "export.json"))
        fail("{}: exists and is not an earlier export (no export.json in it); choose another --output or remove it", o.output);
    } else {
      if (!fs::is_regular_file(out)) fail("{}: exists and is not a file; choose another --output", o.output);
      std::ifstream f(out, std::ios::binary);
      char magic[4] = {};
      f.read(magic, 4);
      if (f.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0)
        fail("{}: exists and is not a GGUF file; choose another --output or remove it", o.output);
    }
  }
}

// The base the export starts from: --model, else the one the folder records.
std::string base_reference_of(const ExportOptions& o, const std::optional<TrainedFolder>& folder) {
  if (!o.model.empty()) return o.model;
  if (!folder) fail("nothing to export: give --adapter (a trained adapter folder) or --model (a base model)");
  return folder->base_to_load();
}

ExportPlan prepare(const ExportOptions& o) {
  if (o.format != "hf" && o.format != "gguf") fail("--format '{}' is not supported (hf, gguf)", o.format);
  ExportPlan p;
  p.options = o;
  if (!o.adapter.empty()) p.folder = read_trained_folder(o.adapter);
  const std::string ref = base_reference_of(o, p.folder);
  const std::string base_path = resolve_model_reference(ref);
  check_output(o, base_path);
  if (p.folder && !p.folder->base_sha256.empty()) p.folder->check_base(ref, base_path, model_content_hash(base_path), "--model");
  p.base = read_model(ref, /*weights=*/true);
  p.seq_cls = p.folder && p.folder->kind == TrainedFolder::Kind::RewardModel;
  if (p.seq_cls && o.format == "gguf")
    fail("{}: a reward model exports to the Hugging Face format only (--format hf: {}ForSequenceClassification)", o.adapter,
         arch_class(p.base.config.arch));

  if (o.format == "hf") {
    if (!o.dtype.empty()) p.dtype = parse_hf_dtype(o.dtype);
    else if (p.base.format == "hf") p.dtype = p.base.weights.at("model.embed_tokens.weight").dtype;
    else p.dtype = DType::F32;
  } else {
    p.dtype = o.dtype.empty() ? DType::F32 : parse_gguf_dtype(o.dtype);
  }

  p.weights = p.base.weights;
  if (p.folder) {
    const TrainedFolder& f = *p.folder;
    const auto pairs = read_lora_pairs(f.adapter_weights_path(), f.lora.rank, p.base);
    if (p.seq_cls) p.head = read_reward_head(f.reward_head_path(), p.base.config.hidden_size);
    const double scale = f.lora.alpha / static_cast<double>(f.lora.rank);
    for (const auto& [target, pr] : pairs) {
      p.weights[target] = merge_lora(p.base.weights.at(target), pr, scale);
      ++p.merged;
    }
    if (p.seq_cls) {
      const int32_t pad = f.pad_id;
      if (pad < 0 || pad >= p.base.config.vocab_size)
        fail("{}: field 'encoding.pad_id' = {} is not a token id of the base model", f.manifest_path(), pad);
      if (std::find(p.base.stop_ids.begin(), p.base.stop_ids.end(), pad) != p.base.stop_ids.end())
        fail("{}: field 'encoding.pad_id' = {} is a stop token; the sequence-classification head would read the wrong "
             "position",
             f.manifest_path(), pad);
    }
  }
  return p;
}

}  // namespace

ExportResult export_model(const ExportOptions& options) {
  ExportPlan p = prepare(options);
  ExportResult r;
  r.format = options.format;
  r.base_path = p.base.path;
  r.merged_weights = p.merged;
  r.adapter_kind = p.folder ? trained_folder_kind_name(p.folder->kind) : "";
  r.kind = p.seq_cls ? "sequence-classification" : "causal-lm";
  if (p.seq_cls) r.score_bias = p.head.bias;
  const fs::path out = fs::absolute(options.output).lexically_normal();
  r.output = out.string();
  if (options.format == "gguf") {
    r.dtype = p.dtype == DType::F32 ? "f32" : "f16";
    r.files = write_gguf_export(p, out.string());
    return r;
  }
  r.dtype = hf_dtype_name(p.dtype);
  // Into a temporary sibling folder, then renamed into place (an earlier export is moved
  // aside first and removed once the new one is there).
  const std::string pid = std::to_string(::getpid());
  TempPath tmp{out.string() + ".tmp." + pid};
  fs::remove_all(tmp.path);
  fs::create_directories(tmp.path);
  r.files = write_hf_folder(p, tmp.path);
  std::error_code ec;
  TempPath old;
  if (fs::exists(out, ec)) {
    old.path = out.string() + ".old." + pid;
    fs::remove_all(old.path, ec);
    fs::rename(out, old.path, ec);
    if (ec) fail("{}: cannot move the earlier export aside: {}", out.string(), ec.message());
  }
  fs::rename(tmp.path, out, ec);
  if (ec) {
    std::error_code ec2;
    if (!old.path.empty()) fs::rename(old.path, out, ec2), old.path.clear();
    fail("{}: cannot rename the export into place: {}", out.string(), ec.message());
  }
  tmp.path.clear();
  return r;
}

}  // namespace rlhf
