// The program's identity: its version and what it was built from — the git commit, with a
// hash of the uncommitted changes to the sources when there are any, or, built outside git, a
// hash of the sources ("0.1.0+g1a2b3c4d5e6f", "0.1.0+g1a2b3c4d5e6f.dirty-0f1e2d3c4b5a",
// "0.1.0+src-9a8b7c6d5e4f"). cmake/BuildId.cmake writes its definition at every build, into
// one small generated file. The pipeline's cache keys include it, so a program built from
// other code runs the stages again instead of reusing what an older build made.
#pragma once

namespace rlhf {

const char* build_id();

}  // namespace rlhf
