// tokenizer.json: the bytes up to the first NUL are a tokenizer.json; the bytes after it (or,
// without a NUL, a fixed sample) are text to encode. A tokenizer that loads must encode the
// text into ids of its vocabulary (or refuse with rlhf::Error), decode them whole and as a
// stream, and decode every id of its vocabulary.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.h"
#include "rlhf/text/tokenizer.h"
#include "rlhf/util/error.h"

namespace {

constexpr std::string_view kSample =
    "Hello, world! It's 2024: 12345 tokens.\n\n  <|endoftext|> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 <pad>";
constexpr size_t kMaxIdsDecoded = 4096;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(data, 0, size);
  const size_t json_size = nul ? size_t(static_cast<const uint8_t*>(nul) - data) : size;
  const std::string_view sample = nul ? std::string_view(text + json_size + 1, size - json_size - 1) : kSample;
  const std::string path = rlhf::fuzz::write_input(data, json_size, "tokenizer.json");

  std::unique_ptr<rlhf::text::Tokenizer> tok;
  try {
    tok = rlhf::text::load_tokenizer_json(path);
  } catch (const rlhf::Error&) {
    return 0;
  }
  try {
    for (bool parse_special : {false, true}) {
      const std::vector<int32_t> ids = tok->encode(sample, parse_special);
      for (int32_t id : ids) rlhf::fuzz::check(id >= 0 && size_t(id) < tok->vocab_size(), "encode gives vocabulary ids");
      (void)tok->decode(ids);
      (void)tok->decode(ids, /*skip_special=*/true);
      rlhf::text::StreamDecoder stream(*tok, /*skip_special=*/false);
      std::string streamed;
      for (int32_t id : ids) streamed += stream.push(id);
      streamed += stream.flush();
      (void)streamed;
    }
    (void)tok->encode_sequence(sample);
    std::vector<int32_t> all;
    for (size_t id = 0; id < tok->vocab_size() && id < kMaxIdsDecoded; ++id) {
      all.push_back(int32_t(id));
      (void)tok->token_bytes(int32_t(id));
    }
    (void)tok->decode(all);
    (void)tok->token_id("<|endoftext|>");
  } catch (const rlhf::Error&) {
  }
  return 0;
}
