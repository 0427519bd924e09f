// ServingModel: what `rlhf serve` serves: one base model loaded once and any number of LoRA
// adapters on it (each a train-policy or train-dpo folder, or a peft adapter folder), each
// under its own name. Clients pick one by the request's "model": the base's reference name
// or an adapter's NAME. The header is torch-free: the server reaches the transformer only
// through the engine, and the tokenizer and chat template through here.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/text/chat_template.h"

namespace rlhf {
class Transformer;
struct LoraAdapter;
struct Model;
namespace text {
class Tokenizer;
}  // namespace text
}  // namespace rlhf

namespace rlhf::serve {

// One name a client can ask for.
struct ServedModel {
  std::string id;                   // the base's reference, or the adapter's NAME
  std::string parent;               // "" for the base, else the base's id
  std::string dir;                  // the adapter's folder ("" for the base)
  std::string sha256;               // content hash of the base, or of adapter_model.safetensors
  const LoraAdapter* adapter = nullptr;  // null for the base
  std::vector<int32_t> stop_ids;    // the base's stop ids and this model's EOS (a policy's own)
};

// --adapter NAME=DIR.
struct AdapterSpec {
  std::string name, dir;
};
// Splits "NAME=DIR" at the first '='. NAME: 1 to 128 characters of letters, digits and
// "._:/-"; DIR not empty. Throws rlhf::Error naming `flag`.
AdapterSpec parse_adapter_spec(std::string_view text, std::string_view flag = "--adapter");

struct ServingModelOptions {
  std::string model;  // reference of the base ("" = the first adapter's recorded base, else the embedded default)
  std::vector<AdapterSpec> adapters;  // names unique and different from the base's id
  std::string dtype = "auto", device = "cpu";
};

class ServingModel {
 public:
  // Loads the base, then each adapter beside it (checked against the sha256 of the base its
  // folder records). Throws rlhf::Error naming the adapter's flag and folder.
  static std::unique_ptr<ServingModel> load(const ServingModelOptions& options);
  ~ServingModel();
  ServingModel(const ServingModel&) = delete;
  ServingModel& operator=(const ServingModel&) = delete;

  const std::vector<ServedModel>& models() const { return models_; }  // the base first
  const ServedModel* find(std::string_view id) const;                  // null when unknown
  const ServedModel& base() const { return models_.front(); }

  const Transformer& net() const;
  const text::Tokenizer& tokenizer() const;
  int64_t context() const;   // tokens the model attends to (prompt + completion)
  int32_t pad_id() const;
  std::string dtype_name() const;
  std::string device_name() const;

  bool has_chat_template() const;
  // Ids of a conversation through the base's chat template, with the assistant's turn
  // opened; the messages' text stays text (spelled special tokens are not parsed).
  // Throws rlhf::Error when the base has no chat template.
  std::vector<int32_t> encode_chat(std::span<const text::ChatMessage> messages) const;
  // Ids of raw text (BOS first when the tokenizer asks for it), as Model::encode_prompt(text, false).
  std::vector<int32_t> encode_text(const std::string& text) const;

 private:
  ServingModel() = default;
  std::unique_ptr<Model> model_;
  std::vector<ServedModel> models_;
};

}  // namespace rlhf::serve
