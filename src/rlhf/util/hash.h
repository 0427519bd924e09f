// Content hashes: SHA-256 of bytes and of files, as lowercase hex. A trained artifact
// records the hash of the base model and of its data, so a resume or a later stage can
// tell whether it is given the same inputs.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::array<uint8_t, 32> digest();  // finishes; the object must not be updated afterwards
  std::string hex();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view bytes);
// Hash of a file's contents (mapped, read in one pass); throws rlhf::Error naming the path.
std::string sha256_file(const std::string& path);
// Hash of several files in order: each file's name (not its folder), size and contents.
std::string sha256_files(const std::vector<std::string>& paths);

}  // namespace rlhf
