// MetricsLogger: one call per step writes named scalars to TensorBoard event files and to
// metrics.csv (long form: step,tag,value,wall_time) and metrics.jsonl ({"step", tags...})
// beside them, so a run can be read by TensorBoard, pandas or jq.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "rlhf/track/tensorboard.h"

namespace rlhf::track {

class MetricsLogger {
 public:
  // Logs into `dir` (created). resume_step >= 0 continues an earlier run there: CSV and JSONL
  // rows with step > resume_step (logged after its last checkpoint) are dropped first
  // (rewritten atomically); a new event file is started (TensorBoard keeps the latest value
  // of a repeated step).
  explicit MetricsLogger(const std::string& dir, int64_t resume_step = -1);
  // A logger that writes nothing (the ranks of a job other than rank 0).
  MetricsLogger();
  ~MetricsLogger();

  void log(int64_t step, const std::map<std::string, double>& scalars);
  void flush();
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::unique_ptr<EventWriter> events_;
  std::FILE* csv_ = nullptr;
  std::FILE* jsonl_ = nullptr;
};

}  // namespace rlhf::track
