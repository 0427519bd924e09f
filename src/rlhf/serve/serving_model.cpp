#include "rlhf/serve/serving_model.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "rlhf/eval/infer.h"
#include "rlhf/model/loader.h"
#include "rlhf/model/model.h"
#include "rlhf/model/registry.h"
#include "rlhf/text/prompt_pieces.h"
#include "rlhf/train/reward_artifact.h"
#include "rlhf/util/error.h"

namespace rlhf::serve {
namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == ':' || c == '/' || c == '-';
}

std::vector<int32_t> with_eos(std::vector<int32_t> stop_ids, int32_t eos_id) {
  if (eos_id >= 0 && std::find(stop_ids.begin(), stop_ids.end(), eos_id) == stop_ids.end()) stop_ids.push_back(eos_id);
  return stop_ids;
}

}  // namespace

AdapterSpec parse_adapter_spec(std::string_view text, std::string_view flag) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos)
    fail("{} \"{}\": expected NAME=DIR (the name clients ask for, then the adapter's folder)", flag, text);
  AdapterSpec s{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
  if (s.name.empty() || s.name.size() > 128 || !std::all_of(s.name.begin(), s.name.end(), name_char))
    fail("{} \"{}\": the name must be 1 to 128 letters, digits or ._:/-", flag, text);
  if (s.dir.empty()) fail("{} \"{}\": the folder is missing after '='", flag, text);
  return s;
}

std::unique_ptr<ServingModel> ServingModel::load(const ServingModelOptions& options) {
  // Every adapter folder is read (and every name checked) before the base is loaded.
  std::vector<TrainedFolder> folders;
  for (const auto& a : options.adapters) {
    for (const auto& b : options.adapters)
      if (&a != &b && a.name == b.name) fail("--adapter: the name \"{}\" is given twice; names must be unique", a.name);
    try {
      folders.push_back(eval::read_generating_adapter(a.dir));
    } catch (const Error& e) {
      fail("--adapter {}={}: {}", a.name, a.dir, e.what());
    }
  }
  // Without --model, the base is the one the first adapter records (as infer does); the
  // others are checked against it.
  const TrainedFolder* recorded = options.model.empty() && !folders.empty() ? &folders.front() : nullptr;
  const std::string ref = !options.model.empty() ? options.model
                          : recorded             ? recorded->base_to_load()
                                                 : std::string(kDefaultModel);
  std::unique_ptr<ServingModel> s(new ServingModel());
  s->model_ = load_model(ref, {parse_dtype(options.dtype), parse_device(options.device)});
  Model& base = *s->model_;
  ServedModel b;
  // Named as the user knows it: the reference the adapter recorded (a registered name or a hub
  // id), not the file it was found at.
  b.id = recorded && !recorded->base_reference.empty() ? recorded->base_reference : base.reference;
  b.sha256 = model_content_hash(base.path);
  b.stop_ids = with_eos(base.stop_ids, completion_eos_id(base));
  s->models_.push_back(b);
  for (size_t i = 0; i < options.adapters.size(); ++i) {
    const AdapterSpec& a = options.adapters[i];
    if (a.name == b.id)
      fail("--adapter {}={}: the name \"{}\" is the base model's; choose another", a.name, a.dir, a.name);
    try {
      eval::GeneratingAdapter g =
          eval::attach_generating_adapter(base, ref, b.sha256, folders[i], a.dir, "serve:" + a.name, "--model");
      ServedModel m;
      m.id = a.name;
      m.parent = b.id;
      m.dir = a.dir;
      m.sha256 = std::move(g.sha256);
      m.adapter = g.adapter;
      m.stop_ids = with_eos(base.stop_ids, g.eos_id);
      s->models_.push_back(std::move(m));
    } catch (const Error& e) {
      fail("--adapter {}={}: {}", a.name, a.dir, e.what());
    }
  }
  return s;
}

ServingModel::~ServingModel() = default;

const ServedModel* ServingModel::find(std::string_view id) const {
  for (const auto& m : models_)
    if (m.id == id) return &m;
  return nullptr;
}

const Transformer& ServingModel::net() const { return *model_->net; }
const text::Tokenizer& ServingModel::tokenizer() const { return *model_->tokenizer; }
int64_t ServingModel::context() const { return model_->config.max_position; }
int32_t ServingModel::pad_id() const { return model_->pad_id; }
std::string ServingModel::dtype_name() const { return rlhf::dtype_name(model_->net->dtype()); }
std::string ServingModel::device_name() const { return model_->net->device().str(); }

bool ServingModel::has_chat_template() const { return model_->chat_template.style != text::ChatStyle::None; }

std::vector<int32_t> ServingModel::encode_chat(std::span<const text::ChatMessage> messages) const {
  if (!has_chat_template())
    fail("the model {} has no chat template; use /v1/completions with a text prompt", model_->reference);
  // The template spells out BOS itself where the model wants one; the messages stay text.
  return text::fit_prompt(*model_->tokenizer, model_->chat_template.render(messages, /*add_generation_prompt=*/true)).ids;
}

std::vector<int32_t> ServingModel::encode_text(const std::string& text) const { return model_->encode_prompt(text, false); }

}  // namespace rlhf::serve
