// TensorBoard event files. Records carry CRC32C checksums, which random mutation almost never
// gets right, so the first byte picks the form of the rest:
//   even: the rest is an event file as it is (framing, checksums, torn tails);
//   odd:  the rest is a list of Event protobufs, each a u16 little-endian length and its
//         bytes (a length past the end takes what is left), framed with valid checksums here, so that
//         the protobuf decoding is what gets fuzzed.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_input.h"
#include "rlhf/track/tensorboard.h"
#include "rlhf/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string file;
  if (data[0] % 2 == 0) {
    file.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  } else {
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    while (rest.size() >= 2) {
      const size_t n = std::min<size_t>(uint8_t(rest[0]) | size_t(uint8_t(rest[1])) << 8, rest.size() - 2);
      rest.remove_prefix(2);
      file += rlhf::track::encode_record(rest.substr(0, n));
      rest.remove_prefix(n);
    }
  }
  const std::string path =
      rlhf::fuzz::write_input(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "events.out.tfevents.1.host");
  try {
    for (const rlhf::track::ScalarPoint& p : rlhf::track::read_scalars(path)) (void)p.tag.size();
  } catch (const rlhf::Error&) {
  }
  return 0;
}
