// Rows of a Parquet file (the Hugging Face hub's dataset shards) as JSON objects, read with
// Apache Arrow C++ one row group at a time. Each column becomes a field of the row's object
// under the column's name: strings, integers, floats, booleans and nulls as themselves,
// lists as arrays and structs as objects (a `messages` column, a list of {role, content}
// structs, reads as the JSONL `messages` field). The dataset readers then check each row as
// they check a JSONL line.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rlhf::data {

// True when the file at `path` starts with Parquet's magic bytes ("PAR1").
bool is_parquet_file(const std::string& path);

// Calls fn(row, object) for each row, numbered from 1 across the row groups; stops early when
// fn returns false. Throws rlhf::Error naming the file for one that is not a readable Parquet
// file (truncated, corrupt), and the file, row and column for a value of a type a dataset
// cannot hold (binary, dates, maps, ...).
void for_each_parquet_row(const std::string& path,
                          const std::function<bool(size_t row, const nlohmann::json& object)>& fn);

}  // namespace rlhf::data
