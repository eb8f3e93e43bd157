// One Model shared by many threads: every run must give bit-identical
// results to the same model run from one thread (each run owns its arena;
// plans are shared and evicted under a lock), and models with different
// thread counts must coexist in one process.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model_builder.h"
#include "runtime/thread_pool.h"
#include "sparsert/sparsert.h"

namespace sparsert {
namespace {

using testing::cnn_model;
using testing::mlp_model;

Tensor random_input(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  for (int64_t i = 0; i < t.size(); ++i) t.data()[i] = value(rng);
  return t;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.size())) == 0;
}

Model load(const std::vector<uint8_t>& bytes, int threads) {
  LoadOptions options;
  options.threads = threads;
  return Model::load_from_buffer(bytes.data(), bytes.size(), options);
}

// Batch sizes 1..kBatches: more distinct shapes than the plan cache keeps (8),
// so threads also race on plan creation and eviction.
constexpr int kBatches = 11;

TEST(Concurrency, EightThreadsOneModelBitIdentical) {
  const uint32_t seed = 20240901;
  std::printf("seed %u\n", seed);
  const Model model = load(mlp_model(seed), 2);
  std::vector<Tensor> inputs, expected;
  for (int b = 1; b <= kBatches; ++b) {
    inputs.push_back(random_input({b, 64}, seed + b));
    expected.push_back(model.run({inputs.back()})[0]);
  }
  constexpr int kThreads = 8;
  constexpr int kRuns = 600;  // per thread: 4800 runs in all
  std::atomic<int> mismatches{0}, errors{0}, done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRuns; ++r) {
        const int k = (t * 7 + r) % kBatches;
        try {
          std::vector<Tensor> out = model.run({inputs[k]});
          if (out.size() != 1 || !bit_identical(out[0], expected[k])) ++mismatches;
          // the overload writing into caller-owned outputs, too
          Tensor into(expected[k].shape());
          std::vector<Tensor> outs{into};
          model.run({inputs[k]}, outs);
          if (!bit_identical(into, expected[k])) ++mismatches;
          ++done;
        } catch (const Error& e) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(done.load(), kThreads * kRuns);
}

TEST(Concurrency, SingleThreadedModelMatchesPooledModelExactly) {
  // The kernels split work by output rows/columns, never inside one dot
  // product, so the thread count must not change a single bit.
  const uint32_t seed = 77;
  std::printf("seed %u\n", seed);
  for (const auto& bytes : {mlp_model(seed), cnn_model(seed)}) {
    const Model one = load(bytes, 1);
    const Model four = load(bytes, 4);
    EXPECT_EQ(one.threads(), 1);
    EXPECT_EQ(four.threads(), std::min(4, default_threads()));  // capped to the usable cores
    std::vector<int64_t> shape = one.inputs()[0].shape;
    for (int b : {1, 3, 8}) {
      shape[0] = b;
      const Tensor x = random_input(shape, seed + b);
      EXPECT_TRUE(bit_identical(one.run({x})[0], four.run({x})[0])) << "batch " << b;
    }
  }
}

TEST(Concurrency, TwoModelsWithDifferentThreadCountsInOneProcess) {
  const uint32_t seed = 4242;
  std::printf("seed %u\n", seed);
  const Model mlp = load(mlp_model(seed), 1);
  const Model cnn = load(cnn_model(seed), 3);
  const Tensor xm = random_input({5, 64}, seed);
  const Tensor xc = random_input({2, 3, 12, 12}, seed + 1);
  const Tensor ym = mlp.run({xm})[0];
  const Tensor yc = cnn.run({xc})[0];
  ASSERT_EQ(yc.shape(), (std::vector<int64_t>{2, 4, 1, 1}));
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < 300; ++r) {
        try {
          if (t % 2 == 0) {
            if (!bit_identical(mlp.run({xm})[0], ym)) ++mismatches;
          } else {
            if (!bit_identical(cnn.run({xc})[0], yc)) ++mismatches;
          }
        } catch (const Error&) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(Concurrency, LoadAndRunInManyThreadsWhileModelsAreDropped) {
  // Each thread loads its own copy, runs it, and drops it; a copy of one
  // shared Model is also taken and dropped concurrently (shared weights).
  const std::vector<uint8_t> bytes = mlp_model(9);
  const Model shared = load(bytes, 2);
  const Tensor x = random_input({3, 64}, 9);
  const Tensor y = shared.run({x})[0];
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < 40; ++r) {
        try {
          const Model own = load(bytes, 1 + r % 2);
          const Model copy = shared;  // NOLINT(performance-unnecessary-copy-initialization)
          if (!bit_identical(own.run({x})[0], y)) ++mismatches;
          if (!bit_identical(copy.run({x})[0], y)) ++mismatches;
        } catch (const Error&) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// A worker that stalls inside a task (here: sleeps, as a descheduled thread
// would) makes the caller run the next jobs alone for a while, every task on
// the caller's thread; results do not depend on it.
TEST(ThreadPoolStall, CallerRunsAloneAfterAWorkerStalls) {
  runtime::ThreadPool pool;
  pool.reserve(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> worker_joined{false};
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration join_latency{};
  pool.parallel_for(2, [&](int64_t) {
    if (std::this_thread::get_id() != caller) {
      join_latency = std::chrono::steady_clock::now() - start;
      worker_joined = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } else {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (!worker_joined && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    }
  }, 2);
  // the rule needs the stall (100 ms) to exceed the caller's own time (its wait for the join)
  if (!worker_joined || join_latency > std::chrono::milliseconds(50))
    GTEST_SKIP() << "the worker took over 50 ms to join (an overloaded machine)";
  EXPECT_EQ(pool.stalls(), 1);
  std::vector<std::thread::id> ran(64);
  pool.parallel_for(64, [&](int64_t t) { ran[static_cast<size_t>(t)] = std::this_thread::get_id(); }, 2);
  for (const auto& id : ran) EXPECT_EQ(id, caller);
}

}  // namespace
}  // namespace sparsert
