// Parquet datasets (the Hugging Face hub's shards), written here with Arrow's own writer: the
// same rows as the JSONL they mirror, `messages` as a list of structs, a folder of shards in
// name order; a truncated file is refused naming the file, a column of the wrong type and one
// of a type a dataset cannot hold naming the file, the row and the column.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <parquet/arrow/writer.h>

#include "rlhf/data/dataset.h"
#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"
#include "test_util.h"

namespace rlhf::data {
namespace {

namespace fs = std::filesystem;
using testing::scratch_dir;

void write_table(const std::shared_ptr<arrow::Table>& table, const fs::path& path, int64_t rows_per_group = 3) {
  auto out = arrow::io::FileOutputStream::Open(path.string());
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  auto st = parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), *out, rows_per_group);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE((*out)->Close().ok());
}

template <class Builder, class T>
std::shared_ptr<arrow::Array> column(const std::vector<T>& values) {
  Builder b;
  for (const auto& v : values) EXPECT_TRUE(b.Append(v).ok());
  std::shared_ptr<arrow::Array> a;
  EXPECT_TRUE(b.Finish(&a).ok());
  return a;
}

// input_text, candidate_0, candidate_1, choice: the seed's preference form.
std::shared_ptr<arrow::Table> seed_rows(int n, bool choice_as_text = false) {
  std::vector<std::string> input, c0, c1, choice_text;
  std::vector<int64_t> choice;
  for (int i = 0; i < n; ++i) {
    input.push_back("question " + std::to_string(i));
    c0.push_back("answer a" + std::to_string(i));
    c1.push_back("answer b" + std::to_string(i));
    choice.push_back(i % 2);
    choice_text.push_back(std::to_string(i % 2));
  }
  auto choice_col = choice_as_text ? column<arrow::StringBuilder>(choice_text) : column<arrow::Int64Builder>(choice);
  auto schema = arrow::schema({arrow::field("input_text", arrow::utf8()), arrow::field("candidate_0", arrow::utf8()),
                               arrow::field("candidate_1", arrow::utf8()),
                               arrow::field("choice", choice_as_text ? arrow::utf8() : arrow::int64())});
  return arrow::Table::Make(schema, {column<arrow::StringBuilder>(input), column<arrow::StringBuilder>(c0),
                                     column<arrow::StringBuilder>(c1), choice_col});
}

std::string error_of(const std::string& spec) {
  try {
    read_preference_dataset(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DatasetParquet, SeedFormRowsEqualTheirJsonl) {
  const fs::path dir = scratch_dir();
  write_table(seed_rows(7), dir / "prefs.parquet");
  std::string jsonl;
  for (int i = 0; i < 7; ++i)
    jsonl += R"({"input_text": "question )" + std::to_string(i) + R"(", "candidate_0": "answer a)" + std::to_string(i) +
             R"(", "candidate_1": "answer b)" + std::to_string(i) + R"(", "choice": )" + std::to_string(i % 2) + "}\n";
  write_file_atomic((dir / "prefs.jsonl").string(), jsonl);
  auto p = read_preference_dataset((dir / "prefs.parquet").string());
  auto j = read_preference_dataset((dir / "prefs.jsonl").string());
  ASSERT_EQ(p.size(), 7u);
  ASSERT_EQ(j.size(), 7u);
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(p[i].prompt.text, j[i].prompt.text);
    EXPECT_EQ(p[i].chosen, j[i].chosen);
    EXPECT_EQ(p[i].rejected, j[i].rejected);
  }
  EXPECT_EQ(p[4].where, (dir / "prefs.parquet").string() + ": row 5");  // rows count across row groups
  EXPECT_TRUE(has_preference_fields((dir / "prefs.parquet").string()));
  // The hub's layout: data/train-0000N-of-0000M.parquet, read in name order.
  fs::create_directories(dir / "data");
  write_table(seed_rows(2), dir / "data" / "train-00001-of-00002.parquet");
  write_table(seed_rows(5), dir / "data" / "train-00000-of-00002.parquet");
  auto shards = read_preference_dataset((dir / "data").string());
  ASSERT_EQ(shards.size(), 7u);
  EXPECT_EQ(shards[5].prompt.text, "question 0");  // the second shard follows the first's five
}

TEST(DatasetParquet, MessagesAreAListOfStructs) {
  const fs::path dir = scratch_dir();
  auto message = arrow::struct_({arrow::field("role", arrow::utf8()), arrow::field("content", arrow::utf8())});
  auto make_messages = [&](const std::vector<std::vector<std::pair<std::string, std::string>>>& rows) {
    auto role = std::make_shared<arrow::StringBuilder>(), content = std::make_shared<arrow::StringBuilder>();
    auto item = std::make_shared<arrow::StructBuilder>(message, arrow::default_memory_pool(),
                                                       std::vector<std::shared_ptr<arrow::ArrayBuilder>>{role, content});
    arrow::ListBuilder list(arrow::default_memory_pool(), item);
    for (const auto& r : rows) {
      EXPECT_TRUE(list.Append().ok());
      for (const auto& [ro, co] : r) {
        EXPECT_TRUE(item->Append().ok());
        EXPECT_TRUE(role->Append(ro).ok());
        EXPECT_TRUE(content->Append(co).ok());
      }
    }
    std::shared_ptr<arrow::Array> a;
    EXPECT_TRUE(list.Finish(&a).ok());
    return a;
  };
  auto chosen = make_messages({{{"user", "Hi"}, {"assistant", "Hello!"}}, {{"user", "2+2?"}, {"assistant", "4"}}});
  auto rejected = make_messages({{{"user", "Hi"}, {"assistant", "Go away."}}, {{"user", "2+2?"}, {"assistant", "5"}}});
  auto schema = arrow::schema({arrow::field("chosen", chosen->type()), arrow::field("rejected", rejected->type())});
  write_table(arrow::Table::Make(schema, {chosen, rejected}), dir / "conv.parquet");
  auto rows = read_preference_dataset((dir / "conv.parquet").string());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].chosen, "4");
  EXPECT_EQ(rows[1].rejected, "5");
  ASSERT_TRUE(rows[0].prompt.is_chat());
  EXPECT_EQ(rows[0].prompt.messages.back().content, "Hi");
}

TEST(DatasetParquet, BadFilesAndColumnsAreNamed) {
  const fs::path dir = scratch_dir();
  write_table(seed_rows(40), dir / "whole.parquet");
  const std::string bytes = read_file((dir / "whole.parquet").string());
  const std::string cut = (dir / "cut.parquet").string();
  write_file_atomic(cut, bytes.substr(0, bytes.size() / 2));
  std::string e = error_of(cut);
  EXPECT_NE(e.find(cut + ": not a readable Parquet file"), std::string::npos) << e;
  // choice written as text: the row's check names file, row and the column.
  write_table(seed_rows(4, true), dir / "text_choice.parquet");
  e = error_of((dir / "text_choice.parquet").string());
  EXPECT_NE(e.find((dir / "text_choice.parquet").string() + ": row 1: column 'choice': must be 0 or 1, got \"0\""),
            std::string::npos)
      << e;
  // chosen as int64 (the wrong type): every row is named, with the column; rows that are
  // right are not.
  std::vector<int64_t> numbers{7, 8, 9};
  std::vector<std::string> rejected{"no", "nope", "never"};
  auto chosen = column<arrow::Int64Builder>(numbers);
  write_table(arrow::Table::Make(arrow::schema({arrow::field("prompt", arrow::utf8()), arrow::field("chosen", arrow::int64()),
                                                arrow::field("rejected", arrow::utf8())}),
                                 {column<arrow::StringBuilder>(std::vector<std::string>{"a?", "b?", "c?"}), chosen,
                                  column<arrow::StringBuilder>(rejected)}),
              dir / "int_chosen.parquet", /*rows_per_group=*/2);
  const std::string int_chosen = (dir / "int_chosen.parquet").string();
  e = error_of(int_chosen);
  for (int row : {1, 2, 3})
    EXPECT_NE(e.find(int_chosen + ": row " + std::to_string(row) + ": column 'chosen': must be a string, got a number"),
              std::string::npos)
        << e;
  EXPECT_NE(e.find("3 of 3 lines are invalid"), std::string::npos) << e;
  // The same problem in a JSONL line still names a field.
  write_file_atomic((dir / "int_chosen.jsonl").string(), R"({"prompt": "a?", "chosen": 7, "rejected": "no"})" "\n");
  e = error_of((dir / "int_chosen.jsonl").string());
  EXPECT_NE(e.find((dir / "int_chosen.jsonl").string() + ":1: field 'chosen': must be a string, got a number"),
            std::string::npos)
      << e;
  // A binary column: a type no dataset field holds.
  auto blob = column<arrow::BinaryBuilder>(std::vector<std::string>{"\x01\x02", "\x03"});
  auto text = column<arrow::StringBuilder>(std::vector<std::string>{"a", "b"});
  write_table(arrow::Table::Make(arrow::schema({arrow::field("prompt", arrow::utf8()), arrow::field("blob", arrow::binary())}),
                                 {text, blob}),
              dir / "blob.parquet");
  try {
    read_prompt_dataset((dir / "blob.parquet").string());
    ADD_FAILURE() << "a binary column was read";
  } catch (const Error& err) {
    e = err.what();
    EXPECT_NE(e.find((dir / "blob.parquet").string() + ": row 1: column 'blob' holds binary values"), std::string::npos)
        << e;
  }
}

}  // namespace
}  // namespace rlhf::data
