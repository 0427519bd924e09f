#include "rlhf/util/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>

namespace rlhf {
namespace {

constexpr int kBarWidth = 20;
constexpr auto kTtyInterval = std::chrono::milliseconds(100);
constexpr auto kLogInterval = std::chrono::milliseconds(5000);

// Columns of the terminal on stderr, or 0 when unknown.
int terminal_columns() {
  winsize ws{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0) return ws.ws_col;
  return 0;
}

std::string format_rate(double per_second, const std::string& unit) {
  if (per_second >= 1) return fmt::format("{:.{}f} {}/s", per_second, per_second >= 100 ? 0 : 1, unit);
  return fmt::format("{:.1f} s/{}", 1 / per_second, unit);
}

}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit, int64_t start)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(start),
      done_(start),
      tty_(::isatty(STDERR_FILENO) == 1),
      t0_(std::chrono::steady_clock::now()),
      // A terminal shows the bar at once; a log gets its first line after kLogInterval.
      last_draw_(tty_ ? t0_ - kTtyInterval : t0_) {}

Progress::~Progress() {
  if (!finished_) finish(status_);
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  if (!status.empty()) status_ = status;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < (tty_ ? kTtyInterval : kLogInterval)) return;
  draw(false);
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  if (!status.empty()) status_ = status;
  finished_ = true;
  draw(true);
}

void Progress::draw(bool final) {
  // In a log, the final line adds nothing when the last one already said the same.
  if (!tty_ && final && done_ == drawn_done_ && status_ == drawn_status_) return;
  drawn_done_ = done_;
  drawn_status_ = status_;
  last_draw_ = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(last_draw_ - t0_).count();
  std::string line = format_line(label_, done_, total_, unit_, start_, elapsed, status_);
  if (tty_) {
    // Redraw in place; a line wider than the terminal would wrap and break the redraw.
    const int cols = terminal_columns();
    if (cols > 1 && line.size() >= size_t(cols)) line.resize(size_t(cols) - 1);
    std::fprintf(stderr, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  const int64_t s = seconds > 0 ? static_cast<int64_t>(seconds) : 0;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string Progress::format_line(const std::string& label, int64_t done, int64_t total,
                                  const std::string& unit, int64_t start, double elapsed,
                                  const std::string& status) {
  std::string line = label;
  if (total > 0) {
    const int64_t shown = std::clamp<int64_t>(done, 0, total);  // integer math: no 11.99% for 12%
    const int filled = static_cast<int>(shown * kBarWidth / total);
    line += fmt::format("  {}/{} {}  [{}{}]  {}%", done, total, unit, std::string(filled, '#'),
                        std::string(kBarWidth - filled, '-'), shown * 100 / total);
  } else {
    line += fmt::format("  {} {}", done, unit);
  }
  const double rate = elapsed > 0 && done > start ? double(done - start) / elapsed : 0;
  if (rate > 0) line += "  " + format_rate(rate, unit);
  line += "  elapsed " + format_duration(elapsed);
  if (total > 0 && done < total && rate > 0) line += "  ETA " + format_duration(double(total - done) / rate);
  if (!status.empty()) line += "  " + status;
  return line;
}

}  // namespace rlhf
