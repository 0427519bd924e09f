// One dataset in each of the forms a dataset file may take (docs/data.md): the first rows of
// Anthropic's HH-RLHF harmless-base test split as JSONL, as .jsonl.gz and as the hub's
// Parquet shards (written here by pyarrow) read as the same rows, field by field; `rlhf
// validate` reports the same on each, and one `rlhf train-reward` step on a tiny model gives
// the same loss. Parquet files pyarrow writes with a column of the wrong type, or cut short,
// are refused by the CLI naming the file (and the row and the column where there is one).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/data/dataset.h"
#include "rlhf/util/fs.h"
#include "test_util.h"
#include "tiny_model.h"

namespace rlhf {
namespace {

namespace fs = std::filesystem;
using rlhf::testing::capture;
using rlhf::testing::cli;

constexpr int kRows = 64;

// Skips unless the dev venv's python has pyarrow; its path otherwise.
#define REQUIRE_PYARROW(var)                                                                                  \
  RLHF_REQUIRE_VENV(var);                                                                                      \
  if (rlhf::testing::run(var + " -c 'import pyarrow' 2>/dev/null") != 0)                                       \
  GTEST_SKIP() << "pyarrow is missing from the dev venv: run scripts/setup --dev"

// Runs a Python program with the venv's python; its output when it fails.
std::string run_python(const std::string& python, const fs::path& dir, const std::string& program) {
  write_file_atomic((dir / "make.py").string(), program);
  int rc = -1;
  const std::string out = capture(python + " " + (dir / "make.py").string(), &rc, true);
  return rc == 0 ? "" : "python failed (" + std::to_string(rc) + "): " + out;
}

// `rlhf validate`'s report without the lines that name the dataset and its files.
std::string report_body(const std::string& out) {
  std::istringstream in(out);
  std::string body;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("preference dataset ", 0) != 0 && line.rfind("  files: ", 0) != 0) body += line + "\n";
  return body;
}

// The rank loss of the first step in a train-reward run's metrics.
double first_step_loss(const fs::path& run) {
  for (const auto& r : rlhf::testing::read_jsonl(run / "logs" / "metrics.jsonl"))
    if (r.contains("rank_loss") && r.value("step", int64_t(0)) == 1) return r["rank_loss"].get<double>();
  ADD_FAILURE() << "no step-1 rank_loss in " << (run / "logs" / "metrics.jsonl");
  return 0;
}

TEST(DatasetSources, HhRlhfAsJsonlGzipAndParquetShardsIsTheSameData) {
  const fs::path source =
      rlhf::testing::source_dir() / ".." / "shared" / "data" / "external" / "hh-rlhf-harmless-base" / "test.jsonl";
  if (!fs::exists(source)) GTEST_SKIP() << source << " is absent (the shared HH-RLHF data is not in this clone)";
  REQUIRE_PYARROW(python);
  const fs::path dir = rlhf::testing::scratch_dir();

  // The first rows as JSONL; the same bytes gzip-compressed, and as two Parquet shards.
  {
    std::ifstream in(source);
    std::ofstream out(dir / "hh.jsonl");
    int n = 0;
    for (std::string line; n < kRows && std::getline(in, line);)
      if (line.find_first_not_of(" \t\r") != std::string::npos) out << line << "\n", ++n;
    ASSERT_EQ(n, kRows);
  }
  const std::string made = run_python(python, dir, R"(
import gzip, json, os, sys
import pyarrow as pa, pyarrow.parquet as pq
os.chdir(")" + dir.string() + R"(")
raw = open("hh.jsonl", "rb").read()
open("hh.jsonl.gz", "wb").write(gzip.compress(raw, mtime=0))
rows = [json.loads(line) for line in raw.decode().splitlines()]
os.makedirs("data")
half = len(rows) // 2
pq.write_table(pa.Table.from_pylist(rows[:half]), "data/train-00000-of-00002.parquet", row_group_size=10)
pq.write_table(pa.Table.from_pylist(rows[half:]), "data/train-00001-of-00002.parquet")
)");
  ASSERT_EQ(made, "");
  const std::vector<std::string> forms = {(dir / "hh.jsonl").string(), (dir / "hh.jsonl.gz").string(),
                                          (dir / "data").string()};
  ASSERT_EQ(testing::read_text(forms[1]).substr(0, 2), "\x1f\x8b");
  ASSERT_EQ(testing::read_text(dir / "data" / "train-00000-of-00002.parquet").substr(0, 4), "PAR1");

  // The rows, field by field.
  data::ReadReport plain_report;
  const auto plain = data::read_preference_dataset(forms[0], {}, &plain_report);
  ASSERT_GT(plain.size(), size_t(kRows / 2));
  for (size_t f = 1; f < forms.size(); ++f) {
    data::ReadReport report;
    const auto rows = data::read_preference_dataset(forms[f], {}, &report);
    ASSERT_EQ(rows.size(), plain.size()) << forms[f];
    EXPECT_EQ(report.dropped, plain_report.dropped) << forms[f];
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i].prompt.text, plain[i].prompt.text) << forms[f] << " row " << i;
      EXPECT_EQ(rows[i].prompt.context, plain[i].prompt.context) << forms[f] << " row " << i;
      EXPECT_EQ(rows[i].prompt.messages.size(), plain[i].prompt.messages.size()) << forms[f] << " row " << i;
      EXPECT_EQ(rows[i].chosen, plain[i].chosen) << forms[f] << " row " << i;
      EXPECT_EQ(rows[i].rejected, plain[i].rejected) << forms[f] << " row " << i;
    }
  }
  EXPECT_EQ(data::read_preference_dataset(forms[2]).back().where,
            (dir / "data" / "train-00001-of-00002.parquet").string() + ": row " + std::to_string(kRows / 2));

  // rlhf validate: the same report, but for the names of the files.
  rlhf::testing::write_tiny_hf_model(dir / "model");
  std::vector<std::string> reports;
  for (const auto& form : forms) {
    int rc = -1;
    const std::string out =
        capture(cli() + " validate --preference-dataset " + form + " --model " + (dir / "model").string() +
                    " --prompt-sequence-length 64 --target-sequence-length 32",
                &rc, true);
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("rows: " + std::to_string(plain.size()) + " valid"), std::string::npos) << out;
    EXPECT_NE(out.find("prompt tokens: median"), std::string::npos) << out;
    reports.push_back(report_body(out));
  }
  EXPECT_EQ(reports[1], reports[0]);
  EXPECT_EQ(reports[2], reports[0]);

  // One train-reward step: the same loss from each form.
  std::vector<double> losses;
  for (size_t f = 0; f < forms.size(); ++f) {
    const fs::path run = dir / ("rm" + std::to_string(f));
    int rc = -1;
    const std::string out = capture(
        cli() + " train-reward --preference-dataset " + forms[f] + " --model " + (dir / "model").string() +
            " --output " + run.string() +
            " --reward-model-train-steps 1 --batch-size 8 --micro-batch-size 4 --dtype fp32 --seed 5 --threads 1"
            " --prompt-sequence-length 64 --target-sequence-length 32 --validation-every 0 --centering-pairs 8"
            " --no-progress",
        &rc, true);
    ASSERT_EQ(rc, 0) << out;
    losses.push_back(first_step_loss(run));
    const auto summary = nlohmann::json::parse(testing::read_text(run / "summary.json"));
    EXPECT_EQ(summary["train_pairs"].get<int64_t>() + summary["validation_pairs"].get<int64_t>(),
              static_cast<int64_t>(plain.size()));
  }
  EXPECT_GT(losses[0], 0.0);
  EXPECT_EQ(losses[1], losses[0]);
  EXPECT_EQ(losses[2], losses[0]);
}

TEST(DatasetSources, BadParquetIsNamedByTheCli) {
  REQUIRE_PYARROW(python);
  const fs::path dir = rlhf::testing::scratch_dir();
  const std::string made = run_python(python, dir, R"(
import os
import pyarrow as pa, pyarrow.parquet as pq
os.chdir(")" + dir.string() + R"(")
pq.write_table(pa.table({"prompt": ["a?", "b?"], "chosen": pa.array([1, 2], pa.int64()), "rejected": ["x", "y"]}),
               "int_chosen.parquet")
pq.write_table(pa.table({"prompt": ["q %d" % i for i in range(200)], "chosen": ["c %d" % i for i in range(200)],
                         "rejected": ["r %d" % i for i in range(200)]}), "whole.parquet")
whole = open("whole.parquet", "rb").read()
open("cut.parquet", "wb").write(whole[: len(whole) // 2])
)");
  ASSERT_EQ(made, "");
  int rc = -1;
  const std::string int_chosen = (dir / "int_chosen.parquet").string();
  std::string out = capture(cli() + " validate --preference-dataset " + int_chosen, &rc, true);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find(int_chosen + ": row 2: column 'chosen': must be a string, got a number"), std::string::npos) << out;
  const std::string cut = (dir / "cut.parquet").string();
  out = capture(cli() + " validate --preference-dataset " + cut, &rc, true);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find(cut + ": not a readable Parquet file"), std::string::npos) << out;
  // train-reward stops on them before it trains.
  rlhf::testing::write_tiny_hf_model(dir / "model");
  out = capture(cli() + " train-reward --preference-dataset " + int_chosen + " --model " + (dir / "model").string() +
                    " --output " + (dir / "rm").string(),
                &rc, true);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find(int_chosen + ": row 1: column 'chosen'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "rm" / "reward_model.json"));
}

}  // namespace
}  // namespace rlhf
