// rlhf dist-check: joins the job the launcher describes (torchrun, srun, --nproc-per-node or
// plain variables) and checks its all-reduce; the first command to run on a new cluster.
#include <cstdio>
#include <vector>

#include "commands.h"
#include "rlhf/dist/group.h"

namespace rlhf::cli {

Command add_dist_check(CLI::App& app) {
  struct Flags {
    std::vector<double> megabytes = {16};
    int64_t iterations = 10;
    int64_t timeout = 0;  // 0: --dist-timeout's (RLHF_DIST_TIMEOUT, 600 s)
  };
  auto f = std::make_shared<Flags>();
  CLI::App* s = app.add_subcommand("dist-check", "join the distributed job and time its all-reduce (run it under "
                                                 "torchrun, srun or --nproc-per-node)");
  s->add_option("--megabytes", f->megabytes, "sizes of the timed all-reduces (one line each)")
      ->capture_default_str()
      ->check(real_in(0.0, 4096.0))
      ->expected(1, 64);
  s->add_option("--iterations", f->iterations, "timed all-reduces (the median is printed)")
      ->capture_default_str()
      ->check(whole_in(1, 100000));
  s->add_option("--timeout", f->timeout,
                "seconds a collective may wait for the other ranks (default: --dist-timeout's, 600)")
      ->check(whole_in(1, 86400));
  return {s, [f] {
            const DistEnv env = read_dist_env();
            if (!env.distributed()) {
              std::printf("one process: no launcher variables (RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS) are set\n");
              return 0;
            }
            dist::Group group(env, std::chrono::seconds(f->timeout > 0 ? f->timeout : env.timeout_seconds));
            bool ok = true;
            for (double mb : f->megabytes) {
              const auto r = dist::check_job(group, static_cast<size_t>(mb * 1e6), static_cast<int>(f->iterations));
              ok = ok && r.sum == r.expected;
              std::printf("rank %d of %d (local %d of %d, launcher %s, %s:%d): all-reduce sum %g (expected %g) %s; "
                          "%zu bytes in %.3f ms (median of %lld)\n",
                          env.rank, env.world_size, env.local_rank, env.local_world_size, env.launcher.c_str(),
                          env.master_addr.c_str(), env.master_port, r.sum, r.expected,
                          r.sum == r.expected ? "ok" : "WRONG", r.bytes, r.median_ms, (long long)f->iterations);
            }
            return ok ? 0 : 1;
          }};
}

}  // namespace rlhf::cli
