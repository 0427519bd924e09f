// Hugging Face tokenizer.json (+ tokenizer_config.json) -> TokenizerSpec. Only what a
// byte-level BPE needs is read; anything that would change the output and is not
// supported (another model type, a prefix space, an unknown split regex) is an error.
#include <nlohmann/json.hpp>

#include <filesystem>

#include "rlhf/text/pretokenizer.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::text {
namespace {

using nlohmann::json;

constexpr size_t kMaxFileBytes = size_t(512) << 20;
constexpr int64_t kMaxTokenId = int64_t(1) << 24;

// Typed access to one JSON file's fields; every error names the file and the field.
struct Fields {
  const std::string& path;

  [[noreturn]] void bad(std::string_view field, std::string_view what) const {
    fail("{}: field '{}' {}", path, field, what);
  }
  // The member, or nullptr when absent or null.
  const json* find(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  const json& need(const json& obj, const char* key, std::string_view field) const {
    const json* v = find(obj, key);
    if (!v) bad(field, "is missing");
    return *v;
  }
  const json& object(const json& v, std::string_view field) const {
    if (!v.is_object()) bad(field, "must be an object");
    return v;
  }
  const json& array(const json& v, std::string_view field) const {
    if (!v.is_array()) bad(field, "must be an array");
    return v;
  }
  std::string string(const json& v, std::string_view field) const {
    if (!v.is_string()) bad(field, "must be a string");
    return v.get<std::string>();
  }
  bool boolean(const json& v, std::string_view field) const {
    if (!v.is_boolean()) bad(field, "must be true or false");
    return v.get<bool>();
  }
  int32_t token_id(const json& v, std::string_view field) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxTokenId)
      bad(field, fmt::format("must be a token id (an integer in [0, {}))", kMaxTokenId));
    return static_cast<int32_t>(v.get<int64_t>());
  }
  std::string type_of(const json& v, std::string_view field) const {
    object(v, field);
    return string(need(v, "type", fmt::format("{}.type", field)), fmt::format("{}.type", field));
  }
};

json parse(const std::string& path) {
  std::string text = read_file(path, kMaxFileBytes);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

void check_byte_level(const Fields& f, const json& bl, std::string_view field, bool use_regex) {
  const json* aps = f.find(bl, "add_prefix_space");
  if (aps && f.boolean(*aps, fmt::format("{}.add_prefix_space", field)))
    f.bad(fmt::format("{}.add_prefix_space", field), "is true, which is not supported");
  const json* ur = f.find(bl, "use_regex");
  bool has_regex = ur ? f.boolean(*ur, fmt::format("{}.use_regex", field)) : true;
  if (has_regex != use_regex)
    f.bad(fmt::format("{}.use_regex", field), use_regex ? "must be true here" : "must be false after a Split");
}

// The pre-tokenizer family of a byte-level pre_tokenizer configuration.
std::string detect_family(const Fields& f, const json& root) {
  const json* pt = f.find(root, "pre_tokenizer");
  if (!pt) f.bad("pre_tokenizer", "is missing (only byte-level BPE tokenizers are supported)");
  std::string type = f.type_of(*pt, "pre_tokenizer");
  if (type == "ByteLevel") {
    check_byte_level(f, *pt, "pre_tokenizer", true);
    return "gpt2";
  }
  if (type == "Sequence") {
    const json& items = f.array(f.need(*pt, "pretokenizers", "pre_tokenizer.pretokenizers"),
                                "pre_tokenizer.pretokenizers");
    if (items.size() == 2 && f.type_of(items[1], "pre_tokenizer.pretokenizers[1]") == "ByteLevel") {
      const json& first = items[0];
      std::string ftype = f.type_of(first, "pre_tokenizer.pretokenizers[0]");
      if (ftype == "Digits") {
        const json* ind = f.find(first, "individual_digits");
        if (!ind || !f.boolean(*ind, "pre_tokenizer.pretokenizers[0].individual_digits"))
          f.bad("pre_tokenizer.pretokenizers[0].individual_digits", "must be true (digit groups are not supported)");
        check_byte_level(f, items[1], "pre_tokenizer.pretokenizers[1]", true);
        return "smollm";
      }
      if (ftype == "Split") {
        const std::string field = "pre_tokenizer.pretokenizers[0]";
        const json& pattern = f.object(f.need(first, "pattern", field + ".pattern"), field + ".pattern");
        std::string regex = f.string(f.need(pattern, "Regex", field + ".pattern.Regex"), field + ".pattern.Regex");
        auto family = PreTokenizer::family_of_regex(regex);
        if (!family) f.bad(field + ".pattern.Regex", fmt::format("is a split regex no supported family uses: {}", regex));
        const json* behavior = f.find(first, "behavior");
        if (behavior && f.string(*behavior, field + ".behavior") != "Isolated")
          f.bad(field + ".behavior", "must be \"Isolated\"");
        const json* invert = f.find(first, "invert");
        if (invert && f.boolean(*invert, field + ".invert")) f.bad(field + ".invert", "must be false");
        check_byte_level(f, items[1], "pre_tokenizer.pretokenizers[1]", false);
        return *family;
      }
    }
  }
  f.bad("pre_tokenizer", fmt::format("is a {} configuration that is not supported (byte-level BPE only: "
                                     "ByteLevel, Digits+ByteLevel or Split+ByteLevel)", type));
}

std::vector<std::pair<std::string, std::string>> read_merges(const Fields& f, const json& merges) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    std::string field = fmt::format("model.merges[{}]", i);
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
        f.bad(field, fmt::format("must be two tokens separated by one space, not \"{}\"", s));
      out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      f.bad(field, "must be \"a b\" or [\"a\", \"b\"]");
    }
  }
  return out;
}

// The id of a token by its text: added tokens first, then the vocabulary.
std::optional<int32_t> find_id(const TokenizerSpec& spec, const std::string& content) {
  for (const auto& t : spec.added)
    if (t.content == content) return t.id;
  for (size_t i = 0; i < spec.tokens.size(); ++i)
    if (spec.tokens[i] == content) return static_cast<int32_t>(i);
  return std::nullopt;
}

// BOS/EOS that a TemplateProcessing post-processor puts around a single sequence.
void read_post_processor(const Fields& f, const json& pp, std::string_view field, TokenizerSpec& spec) {
  std::string type = f.type_of(pp, field);
  if (type == "Sequence") {
    const json& items = f.array(f.need(pp, "processors", fmt::format("{}.processors", field)),
                                fmt::format("{}.processors", field));
    for (size_t i = 0; i < items.size(); ++i)
      read_post_processor(f, items[i], fmt::format("{}.processors[{}]", field, i), spec);
    return;
  }
  if (type != "TemplateProcessing") return;
  std::string sfield = fmt::format("{}.single", field);
  const json& single = f.array(f.need(pp, "single", sfield), sfield);
  bool after_text = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const json& piece = f.object(single[i], fmt::format("{}[{}]", sfield, i));
    if (piece.contains("Sequence")) {
      after_text = true;
      continue;
    }
    const json* st = f.find(piece, "SpecialToken");
    if (!st) continue;
    std::string name = f.string(f.need(*st, "id", fmt::format("{}[{}].SpecialToken.id", sfield, i)),
                                fmt::format("{}[{}].SpecialToken.id", sfield, i));
    auto id = find_id(spec, name);
    if (!id) f.bad(fmt::format("{}[{}].SpecialToken.id", sfield, i), fmt::format("names '{}', which is not a token", name));
    if (after_text) spec.special.eos = *id, spec.special.add_eos = true;
    else spec.special.bos = *id, spec.special.add_bos = true;
  }
}

void read_config(const std::string& path, TokenizerSpec& spec) {
  Fields f{path};
  json cfg = parse(path);
  f.object(cfg, "(top level)");
  auto token = [&](const char* key, int32_t& id) {
    const json* v = f.find(cfg, key);
    if (!v) return;
    std::string content;
    if (v->is_string()) content = v->get<std::string>();
    else if (v->is_object()) content = f.string(f.need(*v, "content", fmt::format("{}.content", key)), fmt::format("{}.content", key));
    else f.bad(key, "must be a string or an object with \"content\"");
    auto found = find_id(spec, content);
    if (!found) f.bad(key, fmt::format("names '{}', which is not in the vocabulary of {}", content, spec.source));
    id = *found;
  };
  token("bos_token", spec.special.bos);
  token("eos_token", spec.special.eos);
  token("pad_token", spec.special.pad);
  token("unk_token", spec.special.unk);
  if (const json* v = f.find(cfg, "add_bos_token")) spec.special.add_bos = f.boolean(*v, "add_bos_token");
  if (const json* v = f.find(cfg, "add_eos_token")) spec.special.add_eos = f.boolean(*v, "add_eos_token");
}

}  // namespace

TokenizerSpec read_tokenizer_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  Fields f{tokenizer_json};
  json root = parse(tokenizer_json);
  f.object(root, "(top level)");
  TokenizerSpec spec;
  spec.source = tokenizer_json;

  const json& model = f.object(f.need(root, "model", "model"), "model");
  if (const json* t = f.find(model, "type"); t && f.string(*t, "model.type") != "BPE")
    f.bad("model.type", fmt::format("is \"{}\"; only \"BPE\" is supported", t->get<std::string>()));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json* v = f.find(model, key); v && !f.string(*v, fmt::format("model.{}", key)).empty())
      f.bad(fmt::format("model.{}", key), "is set, which byte-level BPE does not support");
  if (const json* v = f.find(model, "ignore_merges")) spec.ignore_merges = f.boolean(*v, "model.ignore_merges");

  if (const json* norm = f.find(root, "normalizer")) {
    // Qwen2 declares NFC; text already in NFC (nearly all text) is unaffected, so it is accepted.
    std::string type = f.type_of(*norm, "normalizer");
    if (type != "NFC") f.bad("normalizer", fmt::format("is {}, which is not supported", type));
  }
  spec.pre = detect_family(f, root);

  const json& vocab = f.object(f.need(model, "vocab", "model.vocab"), "model.vocab");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = f.token_id(it.value(), fmt::format("model.vocab[\"{}\"]", it.key()));
    if (size_t(id) >= spec.tokens.size()) spec.tokens.resize(size_t(id) + 1);
    if (!spec.tokens[id].empty())
      f.bad(fmt::format("model.vocab[\"{}\"]", it.key()), fmt::format("repeats id {} of '{}'", id, spec.tokens[id]));
    if (it.key().empty()) f.bad("model.vocab", "has an empty token");
    spec.tokens[id] = it.key();
  }
  spec.merges = read_merges(f, f.array(f.need(model, "merges", "model.merges"), "model.merges"));

  if (const json* added = f.find(root, "added_tokens")) {
    f.array(*added, "added_tokens");
    for (size_t i = 0; i < added->size(); ++i) {
      std::string field = fmt::format("added_tokens[{}]", i);
      const json& a = f.object((*added)[i], field);
      AddedToken t;
      t.id = f.token_id(f.need(a, "id", field + ".id"), field + ".id");
      t.content = f.string(f.need(a, "content", field + ".content"), field + ".content");
      if (t.content.empty()) f.bad(field + ".content", "is empty");
      if (const json* s = f.find(a, "special")) t.special = f.boolean(*s, field + ".special");
      spec.added.push_back(std::move(t));
    }
  }
  if (const json* unk = f.find(model, "unk_token")) {
    std::string name = f.string(*unk, "model.unk_token");
    auto id = find_id(spec, name);
    if (!id) f.bad("model.unk_token", fmt::format("names '{}', which is not a token", name));
    spec.special.unk = *id;
  }
  if (const json* pp = f.find(root, "post_processor")) read_post_processor(f, *pp, "post_processor", spec);

  if (!tokenizer_config_json.empty() && std::filesystem::exists(tokenizer_config_json))
    read_config(tokenizer_config_json, spec);
  return spec;
}

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  return make_bpe_tokenizer(read_tokenizer_json(tokenizer_json, tokenizer_config_json));
}

}  // namespace rlhf::text
