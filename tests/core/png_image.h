// The pixels of an 8-bit RGB or RGBA PNG (what Chromium's --screenshot writes), for tests
// that look at a rendered page.
#pragma once
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace rlhf::testing {

struct PngImage {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;  // width × height RGB triples, row by row
};

inline std::optional<PngImage> decode_png(const std::string& bytes, std::string* why) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto be32 = [](const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
  };
  if (bytes.size() < 33 || std::memcmp(bytes.data(), sig, 8) != 0) return *why = "not a PNG", std::nullopt;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  PngImage img;
  int channels = 0;
  std::string idat;
  for (size_t at = 8; at + 12 <= bytes.size();) {
    const uint32_t len = be32(p + at);
    if (at + 12 + len > bytes.size()) return *why = "truncated chunk", std::nullopt;
    const std::string type(bytes.data() + at + 4, 4);
    const uint8_t* d = p + at + 8;
    if (type == "IHDR") {
      img.width = be32(d), img.height = be32(d + 4);
      if (d[8] != 8 || (d[9] != 2 && d[9] != 6) || d[12] != 0) return *why = "not 8-bit non-interlaced RGB(A)", std::nullopt;
      channels = d[9] == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(d), len);
    }
    at += 12 + len;
  }
  if (!channels) return *why = "no IHDR", std::nullopt;
  const size_t stride = size_t(img.width) * channels;
  std::vector<uint8_t> raw((stride + 1) * img.height);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_len != raw.size())
    return *why = "bad image data", std::nullopt;
  std::vector<uint8_t> prev(stride, 0), cur(stride);
  img.rgb.reserve(size_t(img.width) * img.height * 3);
  for (uint32_t y = 0; y < img.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= size_t(channels) ? cur[x - channels] : 0, b = prev[x],
                c = x >= size_t(channels) ? prev[x - channels] : 0;
      int v = in[x];
      switch (filter) {
        case 0: break;
        case 1: v += a; break;
        case 2: v += b; break;
        case 3: v += (a + b) / 2; break;
        case 4: {
          const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
          v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: return *why = "bad filter", std::nullopt;
      }
      cur[x] = static_cast<uint8_t>(v);
    }
    for (uint32_t x = 0; x < img.width; ++x) img.rgb.insert(img.rgb.end(), &cur[x * channels], &cur[x * channels] + 3);
    std::swap(prev, cur);
  }
  return img;
}

}  // namespace rlhf::testing
