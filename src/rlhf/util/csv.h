// CSV as the program writes it (RFC 4180: fields quoted when needed, quotes doubled), the one
// rule of every CSV file it writes (metrics.csv, sxs.csv). Torch-free.
#pragma once
#include <string>
#include <string_view>

namespace rlhf {

// One CSV field: quoted (quotes doubled) when it holds a comma, a quote, CR or LF.
std::string csv_field(std::string_view s);

}  // namespace rlhf
