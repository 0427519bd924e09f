// The pipeline spec's YAML: a key repeated in one mapping is refused with the file and both
// lines (yaml-cpp keeps both entries and lookups see the first).
#include <gtest/gtest.h>

#include "rlhf/pipeline/spec_yaml.h"
#include "rlhf/util/error.h"

namespace rlhf::pipeline {
namespace {

std::string error_of(const std::string& yaml) {
  try {
    check_unique_keys(YAML::Load(yaml), "spec.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SpecYaml, YamlCppKeepsBothEntriesOfARepeatedKey) {
  // What the check relies on: iteration sees both, lookup the first.
  YAML::Node n = YAML::Load("kl_coeff: 0.1\nkl_coeff: 0.5\n");
  EXPECT_EQ(n.size(), 2u);
  EXPECT_EQ(n["kl_coeff"].as<std::string>(), "0.1");
}

TEST(SpecYaml, ARepeatedKeyIsRefusedWithFileAndLines) {
  EXPECT_EQ(error_of("kl_coeff: 0.1\nseed: 1\nkl_coeff: 0.5\n"),
            "spec.yaml:3: key 'kl_coeff' appears twice (first on line 1); keep one");
  EXPECT_EQ(error_of("advanced:\n  seed: 1\n  threads: 2\n  seed: 3\n"),
            "spec.yaml:4: key 'seed' appears twice (first on line 2); keep one");
  EXPECT_EQ(error_of("stages:\n  - {a: 1}\n  - a: 1\n    b: 2\n    a: 3\n"),
            "spec.yaml:5: key 'a' appears twice (first on line 3); keep one");
}

TEST(SpecYaml, TheSameKeyInDifferentMappingsIsFine) {
  EXPECT_EQ(error_of("seed: 1\nadvanced:\n  seed: 2\nrlaif:\n  seed: 3\nlist: [{seed: 1}, {seed: 2}]\n"), "");
  EXPECT_EQ(error_of(""), "");
}

}  // namespace
}  // namespace rlhf::pipeline
