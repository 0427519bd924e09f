// A minimal GGUF writer for tests: metadata of any type, tensors with raw bytes, and knobs
// to produce malformed files (any version, offsets, type ids, dimension counts).
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/model/gguf.h"

namespace rlhf::testing {

struct GgufWriter {
  struct Tensor {
    std::string name;
    std::vector<uint64_t> torch_shape;
    uint32_t type;
    std::string data;
    std::optional<uint64_t> offset;  // data offset to write instead of the computed one
  };

  uint32_t version = 3;
  uint64_t alignment = 32;  // layout of the data section; set_alignment also writes the key
  std::string kv;           // encoded key/value pairs
  uint64_t n_kv = 0;
  std::vector<Tensor> tensors;

  template <class T>
  static void put(std::string& s, T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  static void put_str(std::string& s, std::string_view v) {
    put<uint64_t>(s, v.size());
    s.append(v);
  }

  // One key with an already encoded value of type `type`.
  void add_raw(std::string_view key, gguf::ValueType type, std::string_view value) {
    put_str(kv, key);
    put<uint32_t>(kv, static_cast<uint32_t>(type));
    kv.append(value);
    ++n_kv;
  }
  template <class T>
  void add(std::string_view key, gguf::ValueType type, T v) {
    std::string s;
    put(s, v);
    add_raw(key, type, s);
  }
  void add_string(std::string_view key, std::string_view v) {
    std::string s;
    put_str(s, v);
    add_raw(key, gguf::ValueType::STRING, s);
  }
  template <class T>
  void add_array(std::string_view key, gguf::ValueType elem, const std::vector<T>& v) {
    std::string s;
    put<uint32_t>(s, static_cast<uint32_t>(elem));
    put<uint64_t>(s, v.size());
    for (const T& x : v) put(s, x);
    add_raw(key, gguf::ValueType::ARRAY, s);
  }
  void add_string_array(std::string_view key, const std::vector<std::string>& v) {
    std::string s;
    put<uint32_t>(s, static_cast<uint32_t>(gguf::ValueType::STRING));
    put<uint64_t>(s, v.size());
    for (const auto& x : v) put_str(s, x);
    add_raw(key, gguf::ValueType::ARRAY, s);
  }
  void set_alignment(uint32_t a) {
    alignment = a;
    add("general.alignment", gguf::ValueType::U32, a);
  }

  template <class T>
  static std::string bytes_of(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void add_tensor(std::string name, std::vector<uint64_t> torch_shape, gguf::TensorType type,
                  std::string data) {
    tensors.push_back({std::move(name), std::move(torch_shape), static_cast<uint32_t>(type),
                       std::move(data), std::nullopt});
  }

  std::string build() const {
    auto align = [this](uint64_t x) { return (x + alignment - 1) / alignment * alignment; };
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const auto& t : tensors) {
      off = align(off);
      offsets.push_back(t.offset.value_or(off));
      off += t.data.size();
    }
    std::string s = "GGUF";
    put<uint32_t>(s, version);
    put<uint64_t>(s, tensors.size());
    put<uint64_t>(s, n_kv);
    s += kv;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      put_str(s, t.name);
      put<uint32_t>(s, uint32_t(t.torch_shape.size()));
      for (auto it = t.torch_shape.rbegin(); it != t.torch_shape.rend(); ++it) put<uint64_t>(s, *it);
      put<uint32_t>(s, t.type);
      put<uint64_t>(s, offsets[i]);
    }
    const uint64_t data_start = align(s.size());
    s.resize(data_start, '\0');
    uint64_t pos = 0;
    for (const auto& t : tensors) {
      pos = align(pos);
      s.resize(data_start + pos, '\0');
      s += t.data;
      pos += t.data.size();
    }
    return s;
  }
};

}  // namespace rlhf::testing
