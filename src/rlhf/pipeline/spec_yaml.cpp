#include "rlhf/pipeline/spec_yaml.h"

#include <map>

#include "rlhf/util/error.h"

namespace rlhf::pipeline {

void check_unique_keys(const YAML::Node& node, const std::string& source) {
  if (node.IsSequence()) {
    for (const YAML::Node& item : node) check_unique_keys(item, source);
  } else if (node.IsMap()) {
    std::map<std::string, int> first_line;  // scalar key -> its 1-based line
    for (const auto& entry : node) {
      const YAML::Node key = entry.first, value = entry.second;
      if (key.IsScalar()) {
        const int line = key.Mark().line + 1;
        auto [at, fresh] = first_line.emplace(key.Scalar(), line);
        if (!fresh)
          fail("{}:{}: key '{}' appears twice (first on line {}); keep one", source, line, key.Scalar(), at->second);
      }
      check_unique_keys(value, source);
    }
  }
}

}  // namespace rlhf::pipeline
