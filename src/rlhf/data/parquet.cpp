#include "rlhf/data/parquet.h"

#include <cstring>
#include <memory>
#include <string>

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <nlohmann/json.hpp>
#include <parquet/arrow/reader.h>
#include <parquet/exception.h>

#include "rlhf/data/lines.h"
#include "rlhf/data/remote.h"
#include "rlhf/text/utf8.h"
#include "rlhf/util/error.h"

namespace rlhf::data {
namespace {

using nlohmann::json;

// A value Arrow holds that a dataset row cannot; the caller names file, row and column.
struct Unsupported {
  std::string type;
};

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto step = text::utf8::next(s, i);
    if (!step.valid) return false;
    i += step.len;
  }
  return true;
}

json text_value(std::string_view v) {
  if (!valid_utf8(v)) throw Unsupported{"text that is not valid UTF-8 among its"};
  return std::string(v);
}

json value_at(const arrow::Array& a, int64_t i) {
  if (a.IsNull(i)) return nullptr;
  switch (a.type_id()) {
    case arrow::Type::NA: return nullptr;
    case arrow::Type::BOOL: return static_cast<const arrow::BooleanArray&>(a).Value(i);
    case arrow::Type::INT8: return static_cast<const arrow::Int8Array&>(a).Value(i);
    case arrow::Type::INT16: return static_cast<const arrow::Int16Array&>(a).Value(i);
    case arrow::Type::INT32: return static_cast<const arrow::Int32Array&>(a).Value(i);
    case arrow::Type::INT64: return static_cast<const arrow::Int64Array&>(a).Value(i);
    case arrow::Type::UINT8: return static_cast<const arrow::UInt8Array&>(a).Value(i);
    case arrow::Type::UINT16: return static_cast<const arrow::UInt16Array&>(a).Value(i);
    case arrow::Type::UINT32: return static_cast<const arrow::UInt32Array&>(a).Value(i);
    case arrow::Type::UINT64: return static_cast<const arrow::UInt64Array&>(a).Value(i);
    case arrow::Type::FLOAT: return static_cast<const arrow::FloatArray&>(a).Value(i);
    case arrow::Type::DOUBLE: return static_cast<const arrow::DoubleArray&>(a).Value(i);
    case arrow::Type::STRING: return text_value(static_cast<const arrow::StringArray&>(a).GetView(i));
    case arrow::Type::LARGE_STRING: return text_value(static_cast<const arrow::LargeStringArray&>(a).GetView(i));
    case arrow::Type::STRING_VIEW: return text_value(static_cast<const arrow::StringViewArray&>(a).GetView(i));
    case arrow::Type::LIST:
    case arrow::Type::LARGE_LIST:
    case arrow::Type::FIXED_SIZE_LIST: {
      std::shared_ptr<arrow::Array> items;
      int64_t offset = 0, length = 0;
      if (a.type_id() == arrow::Type::LIST) {
        const auto& l = static_cast<const arrow::ListArray&>(a);
        offset = l.value_offset(i), length = l.value_length(i), items = l.values();
      } else if (a.type_id() == arrow::Type::LARGE_LIST) {
        const auto& l = static_cast<const arrow::LargeListArray&>(a);
        offset = l.value_offset(i), length = l.value_length(i), items = l.values();
      } else {
        const auto& l = static_cast<const arrow::FixedSizeListArray&>(a);
        offset = l.value_offset(i), length = l.value_length(i), items = l.values();
      }
      json out = json::array();
      for (int64_t k = 0; k < length; ++k) out.push_back(value_at(*items, offset + k));
      return out;
    }
    case arrow::Type::STRUCT: {
      const auto& s = static_cast<const arrow::StructArray&>(a);
      const auto& type = static_cast<const arrow::StructType&>(*a.type());
      json out = json::object();
      for (int f = 0; f < type.num_fields(); ++f) out[type.field(f)->name()] = value_at(*s.field(f), i);
      return out;
    }
    case arrow::Type::DICTIONARY: {
      const auto& d = static_cast<const arrow::DictionaryArray&>(a);
      return value_at(*d.dictionary(), d.GetValueIndex(i));
    }
    default: throw Unsupported{a.type()->ToString()};
  }
}

}  // namespace

bool is_parquet_file(const std::string& path) { return dataset_file_head(path, 4) == "PAR1"; }

void for_each_parquet_row(const std::string& path, const std::function<bool(size_t row, const json& object)>& fn) {
  std::shared_ptr<arrow::io::RandomAccessFile> file;
  if (is_remote_path(path)) {
    file = open_remote(path).file;
  } else {
    auto local = arrow::io::ReadableFile::Open(path);
    if (!local.ok()) fail("{}: cannot open: {}", path, local.status().message());
    file = *local;
  }
  std::unique_ptr<parquet::arrow::FileReader> reader;
  try {
    auto opened = parquet::arrow::OpenFile(file, arrow::default_memory_pool());
    if (!opened.ok()) fail("{}: not a readable Parquet file: {}", path, opened.status().message());
    reader = std::move(*opened);
  } catch (const parquet::ParquetException& e) {
    fail("{}: not a readable Parquet file: {}", path, e.what());
  }
  size_t row = 0;
  for (int g = 0; g < reader->num_row_groups(); ++g) {
    std::shared_ptr<arrow::Table> table;
    try {
      auto read = reader->ReadRowGroup(g);
      if (!read.ok()) fail("{}: row group {} (from row {}) cannot be read: {}", path, g, row + 1, read.status().message());
      table = *read;
      auto combined = table->CombineChunks();
      if (!combined.ok()) fail("{}: row group {}: {}", path, g, combined.status().message());
      table = *combined;
    } catch (const parquet::ParquetException& e) {
      fail("{}: row group {} (from row {}) cannot be read: {}", path, g, row + 1, e.what());
    }
    const int columns = table->num_columns();
    for (int64_t i = 0; i < table->num_rows(); ++i) {
      ++row;
      json object = json::object();
      for (int c = 0; c < columns; ++c) {
        const auto& chunks = table->column(c)->chunks();
        if (chunks.empty()) continue;
        try {
          object[table->field(c)->name()] = value_at(*chunks.front(), i);
        } catch (const Unsupported& u) {
          fail("{}: row {}: column '{}' holds {} values; dataset columns hold text, numbers, booleans, lists and "
               "structs",
               path, row, table->field(c)->name(), u.type);
        }
      }
      if (!fn(row, object)) return;
    }
  }
}

}  // namespace rlhf::data
