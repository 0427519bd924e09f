// Training checkpoints on disk: OUT/checkpoints/step-NNNNNNN/ folders, each written into a
// temporary folder and renamed, so a kill at any moment leaves either the previous
// checkpoint or the new one, never half of one. trainer_state.json marks a complete
// checkpoint and holds the step and the run's fingerprint (the settings and input hashes a
// resume must match).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace rlhf::checkpoint {

std::string step_name(int64_t step);  // "step-0000042"

// The newest complete checkpoint folder under root/checkpoints ("" when none).
std::string latest(const std::string& root);

// Writes root/checkpoints/step-N: `write(dir)` fills a temporary folder (trainer_state.json
// is written by this function, last), which is then renamed. Keeps the newest `keep`. The line
// printed on an interruption then names this checkpoint (interrupt.h).
void save(const std::string& root, int64_t step, int64_t keep, const nlohmann::json& trainer_state,
          const std::function<void(const std::string& dir)>& write);

// trainer_state.json of a checkpoint folder; throws rlhf::Error naming the file.
nlohmann::json read_state(const std::string& dir);

// Throws rlhf::Error listing every key whose value differs between the checkpoint's
// recorded fingerprint and this run's.
void check_fingerprint(const nlohmann::json& state, const nlohmann::json& fingerprint, const std::string& dir);

}  // namespace rlhf::checkpoint
