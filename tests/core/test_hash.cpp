// SHA-256 against the FIPS 180-2 test vectors and the system's sha256sum.
#include <gtest/gtest.h>

#include <fstream>

#include "rlhf/util/hash.h"
#include "test_util.h"

TEST(Hash, Sha256KnownVectors) {
  EXPECT_EQ(rlhf::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(rlhf::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(rlhf::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Hash, Sha256OfAFileMatchesSha256sum) {
  auto dir = rlhf::testing::scratch_dir();
  auto path = (dir / "data.bin").string();
  std::string bytes;
  for (int i = 0; i < 100003; ++i) bytes.push_back(static_cast<char>((i * 7919) & 0xff));
  std::ofstream(path, std::ios::binary) << bytes;
  // Split updates must give the one-shot digest.
  rlhf::Sha256 s;
  s.update(bytes.data(), 10);
  s.update(bytes.data() + 10, 70);
  s.update(bytes.data() + 80, bytes.size() - 80);
  const std::string ours = rlhf::sha256_file(path);
  EXPECT_EQ(s.hex(), ours);
  int rc = 0;
  std::string out = rlhf::testing::capture("sha256sum " + path, &rc);
  if (rc != 0) GTEST_SKIP() << "sha256sum not available";
  EXPECT_EQ(out.substr(0, 64), ours);
}
