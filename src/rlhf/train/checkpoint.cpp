#include "rlhf/train/checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "rlhf/util/interrupt.h"

namespace rlhf::checkpoint {
namespace fs = std::filesystem;
using nlohmann::json;

std::string step_name(int64_t step) { return fmt::format("step-{:07d}", step); }

std::string latest(const std::string& root) {
  const fs::path dir = fs::path(root) / "checkpoints";
  std::string best;
  int64_t best_step = -1;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return best;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("step-") || !fs::exists(e.path() / "trainer_state.json")) continue;
    const int64_t step = std::strtoll(name.c_str() + 5, nullptr, 10);
    if (step > best_step) best_step = step, best = e.path().string();
  }
  return best;
}

void save(const std::string& root, int64_t step, int64_t keep, const json& trainer_state,
          const std::function<void(const std::string&)>& write) {
  const fs::path dir = fs::path(root) / "checkpoints";
  const fs::path final_dir = dir / step_name(step);
  const fs::path tmp = dir / fmt::format(".{}.tmp-{}", step_name(step), getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write(tmp.string());
  write_file_atomic((tmp / "trainer_state.json").string(), trainer_state.dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  interrupt::note_kept(fmt::format("checkpoint {} kept in {}", step_name(step), root));
  std::vector<std::string> steps;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("step-")) steps.push_back(name);
    else if (name.starts_with(".step-") && e.path() != tmp) fs::remove_all(e.path());  // left by a killed run
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < steps.size(); ++i) fs::remove_all(dir / steps[i]);
}

json read_state(const std::string& dir) {
  const std::string path = dir + "/trainer_state.json";
  json state;
  try {
    state = json::parse(read_file(path, 64u << 20));
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  if (!state.is_object() || !state.contains("fingerprint") || !state.contains("step") ||
      !state["step"].is_number_integer())
    fail("{}: not a trainer state (no 'step' or 'fingerprint')", path);
  return state;
}

void check_fingerprint(const json& state, const json& fingerprint, const std::string& dir) {
  std::vector<std::string> changed;
  for (const auto& [k, v] : fingerprint.items())
    if (!state["fingerprint"].contains(k) || state["fingerprint"][k] != v) changed.push_back(k);
  if (!changed.empty())
    fail("{}: cannot resume: these settings or inputs differ from the run being resumed: {}", dir,
         fmt::join(changed, ", "));
}

}  // namespace rlhf::checkpoint
