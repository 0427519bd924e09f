// Strict reading of the pipeline spec's YAML: yaml-cpp keeps every entry of a mapping that
// names a key twice and lookups see the first, so a repeated key would pass silently.
#pragma once
#include <string>

#include <yaml-cpp/yaml.h>

namespace rlhf::pipeline {

// Throws rlhf::Error "source:line: key 'k' appears twice (first on line N)" at the first
// mapping, at any depth, that repeats a key.
void check_unique_keys(const YAML::Node& node, const std::string& source);

}  // namespace rlhf::pipeline
