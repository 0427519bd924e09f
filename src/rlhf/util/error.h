// rlhf::Error: the one exception type for problems a user can fix (bad input files, bad
// flags, missing models). Its message names the file and, where there is one, the line,
// field or byte offset. The CLI prints it and exits non-zero.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace rlhf {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace rlhf
