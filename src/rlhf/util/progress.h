// Progress: a one-line progress bar on stderr for long work: done/total, rate, elapsed, ETA
// and a caller-supplied status (latest loss, accuracy). On a terminal the line is redrawn
// in place (at most ~10 times a second); otherwise a plain line is printed every few seconds
// so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace rlhf {

class Progress {
 public:
  // `unit` names what is counted ("step", "pair"); start counts work already done (resume),
  // which is not used for the rate.
  Progress(std::string label, int64_t total, std::string unit = "step", int64_t start = 0);
  ~Progress();  // finishes the line if finish() was not called

  void update(int64_t done, const std::string& status = "");
  void finish(const std::string& status = "");

  // "1h02m", "3m05s", "12s" — used in the line and in summaries.
  static std::string format_duration(double seconds);
  // The line itself, for `done` of `total` (total <= 0: unknown) after `elapsed` seconds,
  // the rate counting from `start`. Used by draw(); exposed for tests.
  static std::string format_line(const std::string& label, int64_t done, int64_t total,
                                 const std::string& unit, int64_t start, double elapsed,
                                 const std::string& status);

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, start_, done_;
  int64_t drawn_done_ = -1;   // what the last drawn line showed
  std::string drawn_status_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

}  // namespace rlhf
