// safetensors layout: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {str: str}}, then the
// data section (offsets relative to its start), row-major, little-endian.
#include "rlhf/model/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>

#include "rlhf/util/error.h"
#include "rlhf/util/fs.h"

namespace rlhf::safetensors {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors is read on little-endian hosts");

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kIndexName = "model.safetensors.index.json";

struct Shard {
  std::map<std::string, HostTensor> tensors;
  std::map<std::string, std::string> metadata;
};

bool parse_dtype(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    if (s == dtype_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

// A view of [p, p + nbytes) owned by `owner`, copied when p is not element-aligned.
void set_data(HostTensor& t, const uint8_t* p, size_t nbytes, std::shared_ptr<const void> owner) {
  t.nbytes = nbytes;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(t.dtype) == 0) {
    t.data = p;
    t.owner = std::move(owner);
    return;
  }
  auto buf = std::make_shared<std::vector<float>>((nbytes + 3) / 4);
  std::memcpy(buf->data(), p, nbytes);
  t.data = reinterpret_cast<const uint8_t*>(buf->data());
  t.owner = std::move(buf);
}

HostTensor parse_entry(const std::string& path, const std::string& name, const json& e,
                       const std::shared_ptr<MappedFile>& file, uint64_t data_start) {
  if (!e.is_object()) fail("{}: tensor '{}': header entry is not an object", path, name);
  auto dt = e.find("dtype");
  auto sh = e.find("shape");
  auto off = e.find("data_offsets");
  if (dt == e.end() || !dt->is_string())
    fail("{}: tensor '{}': missing or non-string 'dtype'", path, name);
  if (sh == e.end() || !sh->is_array())
    fail("{}: tensor '{}': missing or non-array 'shape'", path, name);
  if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    fail("{}: tensor '{}': 'data_offsets' must be two non-negative integers", path, name);

  HostTensor t;
  const std::string dtype = dt->get<std::string>();
  if (!parse_dtype(dtype, &t.dtype))
    fail("{}: tensor '{}' has dtype {}, which is not supported (F32, F16 and BF16 are)", path,
         name, dtype);
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned())
      fail("{}: tensor '{}': shape {} holds a value that is not a non-negative integer", path,
           name, sh->dump());
    const uint64_t v = d.get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, v, &numel))
      fail("{}: tensor '{}': shape {} overflows", path, name, sh->dump());
    t.shape.push_back(int64_t(v));
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, dtype_size(t.dtype), &nbytes))
    fail("{}: tensor '{}': shape {} overflows", path, name, sh->dump());

  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  const uint64_t data_size = file->size() - data_start;
  if (begin > end || end > data_size)
    fail("{}: tensor '{}': data_offsets [{}, {}) lie outside the data section of {} bytes", path,
         name, begin, end, data_size);
  if (end - begin != nbytes)
    fail("{}: tensor '{}': shape {} of {} needs {} bytes but data_offsets span {}", path, name,
         sh->dump(), dtype, nbytes, end - begin);
  set_data(t, file->data() + data_start + begin, nbytes, file);
  return t;
}

Shard read_shard(const std::string& path) {
  auto file = MappedFile::open(path);
  const uint64_t size = file->size();
  if (size < 8) fail("{}: not a safetensors file: only {} bytes long", path, size);
  uint64_t n;
  std::memcpy(&n, file->data(), 8);
  if (n > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the limit of {} bytes (not a safetensors file?)", path, n,
         kMaxHeaderBytes);
  if (n > size - 8)
    fail("{}: header length {} exceeds the {} bytes that follow it (truncated file?)", path, n,
         size - 8);
  const char* text = reinterpret_cast<const char*>(file->data() + 8);
  json header;
  try {
    header = json::parse(text, text + n);
  } catch (const json::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object()) fail("{}: header is not a JSON object", path);

  Shard s;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("{}: __metadata__ is not an object", path);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail("{}: __metadata__ value of '{}' is not a string", path, k);
        s.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    s.tensors.emplace(name, parse_entry(path, name, entry, file, 8 + n));
  }
  return s;
}

}  // namespace

Archive Archive::open(const std::string& path) {
  Archive a;
  const fs::path p(path);
  std::error_code ec;
  fs::path index;
  std::vector<std::string> files;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / kIndexName)) {
      index = p / kIndexName;
    } else {
      for (const auto& e : fs::directory_iterator(p, ec))
        if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
      if (ec) fail("{}: cannot list folder: {}", path, ec.message());
      if (files.empty()) fail("{}: holds neither {} nor any .safetensors file", path, kIndexName);
      std::sort(files.begin(), files.end());
    }
  } else if (p.extension() == ".json") {
    index = p;
  } else {
    files.push_back(path);
  }

  if (index.empty()) {
    for (const auto& f : files) {
      Shard s = read_shard(f);
      for (auto& [name, t] : s.tensors)
        if (!a.tensors_.emplace(name, std::move(t)).second)
          fail("{}: tensor '{}' is also in an earlier file of {}", f, name, path);
      a.metadata_.merge(s.metadata);
      a.files_.push_back(f);
    }
    return a;
  }

  // Sharded: the index maps each tensor name to the shard file (next to the index) holding it.
  const std::string ipath = index.string();
  json j;
  try {
    j = json::parse(read_file(ipath, kMaxHeaderBytes));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", ipath, e.what());
  }
  auto wm = j.is_object() ? j.find("weight_map") : j.end();
  if (wm == j.end() || !wm->is_object()) fail("{}: no 'weight_map' object", ipath);
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (const auto& [name, file] : wm->items()) {
    if (!file.is_string()) fail("{}: weight_map entry '{}' is not a file name", ipath, name);
    by_shard[file.get<std::string>()].push_back(name);
  }
  const fs::path dir = index.parent_path();
  for (const auto& [file, names] : by_shard) {
    const std::string spath = (dir / file).string();
    if (!fs::is_regular_file(spath))
      fail("{}: shard '{}' (holding tensor '{}') does not exist at {}", ipath, file, names[0], spath);
    Shard s = read_shard(spath);
    for (const auto& name : names) {
      auto it = s.tensors.find(name);
      if (it == s.tensors.end())
        fail("{}: tensor '{}' is not in its shard {}", ipath, name, spath);
      a.tensors_.emplace(name, std::move(it->second));
    }
    a.metadata_.merge(s.metadata);
    a.files_.push_back(spath);
  }
  return a;
}

std::vector<std::string> Archive::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

const HostTensor& Archive::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string files;
    for (const auto& f : files_) files += (files.empty() ? "" : ", ") + f;
    fail("tensor '{}' not found in {}", name, files);
  }
  return it->second;
}

void write(const std::string& path, const std::map<std::string, HostTensor>& tensors,
           const std::map<std::string, std::string>& metadata) {
  // The header lists names in order; the data holds 4-byte types first, so that every tensor
  // starts element-aligned (the data section itself starts 8-byte aligned).
  std::vector<const std::pair<const std::string, HostTensor>*> order;
  for (const auto& kv : tensors) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);
  });
  std::map<std::string, std::pair<uint64_t, uint64_t>> offsets;
  uint64_t offset = 0;
  for (const auto* kv : order) {
    const auto& [name, t] = *kv;
    if (name.empty() || name == "__metadata__")
      fail("{}: cannot write a tensor named '{}'", path, name);
    for (auto d : t.shape)
      if (d < 0) fail("{}: tensor '{}' has a negative dimension", path, name);
    if (t.nbytes != uint64_t(t.numel()) * dtype_size(t.dtype) || (t.nbytes && !t.data))
      fail("{}: tensor '{}': {} bytes of data do not match its shape and dtype {}", path, name,
           t.nbytes, dtype_name(t.dtype));
    offsets[name] = {offset, offset + t.nbytes};
    offset += t.nbytes;
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const auto& [name, t] : tensors) {
    const auto [begin, end] = offsets.at(name);
    header[name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {begin, end}}};
  }
  std::string h;
  try {
    h = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: cannot encode the header: {}", path, e.what());
  }
  h.append((8 - h.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + h.size() + offset);
  const uint64_t n = h.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += h;
  for (const auto* kv : order)
    if (kv->second.nbytes) out.append(reinterpret_cast<const char*>(kv->second.data), kv->second.nbytes);
  write_file_atomic(path, out);
}

}  // namespace rlhf::safetensors
