#include "runtime/thread_pool.h"

#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <system_error>

#include "sparsert/sparsert.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SPARSERT_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define SPARSERT_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define SPARSERT_CPU_RELAX() ((void)0)
#endif

namespace sparsert {
namespace runtime {
namespace {

// How long an idle worker spins for the next job before sleeping, and how
// long after arriving late (the job was already done by others) it skips
// spinning: on a busy machine a spinning worker only steals the core from
// the thread that has the work.
constexpr auto kSpin = std::chrono::microseconds(300);
constexpr int kLateJobsBeforeBackoff = 4;
constexpr auto kBackoff = std::chrono::milliseconds(20);
// The caller's side of the same problem: a worker that claimed a task and was
// then descheduled (another process wants its core) holds the whole job up
// for a scheduler time slice, milliseconds for a job of microseconds. When
// the caller waits for the workers longer than it worked itself (and longer
// than kStallMin), the jobs of the next kSoloFor run on the caller alone
// (the 1-thread speed), then the workers are tried again.
constexpr auto kStallMin = std::chrono::microseconds(500);
constexpr auto kSoloFor = std::chrono::milliseconds(50);

// CPU quota of the process's cgroup in CPUs (rounded up), or 0 when unlimited / unknown.
int cgroup_cpu_limit() {
  {
    std::ifstream f("/sys/fs/cgroup/cpu.max");  // cgroup v2: "<quota> <period>" or "max <period>"
    std::string quota;
    long long period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      const long long q = std::atoll(quota.c_str());
      if (q > 0) return static_cast<int>(std::ceil(static_cast<double>(q) / static_cast<double>(period)));
    }
  }
  std::ifstream fq("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), fp("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  long long q = 0, p = 0;
  if (fq >> q && fp >> p && q > 0 && p > 0)
    return static_cast<int>(std::ceil(static_cast<double>(q) / static_cast<double>(p)));
  return 0;
}

}  // namespace

ThreadPool& ThreadPool::global() {
  // Never destroyed: models may be released from static destructors of other
  // translation units, after this one's would have run.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

int ThreadPool::available_cpus() {
  int n = 0;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
#endif
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  const int quota = cgroup_cpu_limit();
  if (quota > 0 && quota < n) n = quota;
  return std::min(n, kMaxThreads);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::workers() const { return n_workers_.load(std::memory_order_acquire); }

void ThreadPool::reserve(int threads) {
  if (threads > kMaxThreads)
    throw Error(ErrorCode::kResource, "threads = " + std::to_string(threads) + " exceeds the limit of " +
                                          std::to_string(kMaxThreads) + "; use at most " +
                                          std::to_string(available_cpus()) +
                                          " (the cores this process may use)");
  std::lock_guard<std::mutex> lock(start_mutex_);
  while (static_cast<int>(workers_.size()) < threads - 1) {
    const int index = static_cast<int>(workers_.size());
    try {
      workers_.emplace_back([this, index] { worker_loop(index); });
    } catch (const std::system_error& e) {
      throw Error(ErrorCode::kResource, "could not start kernel thread " + std::to_string(index + 2) +
                                            " of " + std::to_string(threads) + " (" + e.what() +
                                            "); use fewer threads");
    }
    n_workers_.store(static_cast<int>(workers_.size()), std::memory_order_release);
  }
}

void ThreadPool::run_tasks() {
  const auto& fn = *fn_;
  for (;;) {
    const int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
    if (task >= tasks_) break;
    try {
      fn(task);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    finished_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop(int index) {
  // Generation 0 is the pool's state at construction: a worker that starts
  // late must still see every job (and the stop) published after it.
  uint64_t seen = 0;
  int late_jobs = 0;
  auto no_spin_until = std::chrono::steady_clock::time_point{};
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= no_spin_until) {
      const auto spin_until = now + kSpin;
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spin_until) {
        for (int i = 0; i < 32; ++i) SPARSERT_CPU_RELAX();
      }
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      seen = generation_.load();
      if (stop_) return;
      // The job may already be retired by its caller (it ran every task itself),
      // or need fewer workers than there are.
      if (fn_ == nullptr || index >= job_workers_ || next_.load() >= tasks_) {
        if (fn_ != nullptr && index < job_workers_ && ++late_jobs >= kLateJobsBeforeBackoff) {
          no_spin_until = std::chrono::steady_clock::now() + kBackoff;
          late_jobs = 0;
        }
        continue;
      }
      late_jobs = 0;
      active_workers_.fetch_add(1);
    }
    run_tasks();
    if (active_workers_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn,
                              int max_threads) {
  if (tasks <= 0) return;
  const int helpers = std::min<int64_t>(std::min(max_threads - 1, workers()), tasks - 1);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const bool solo = start.time_since_epoch().count() < solo_until_.load(std::memory_order_relaxed);
  bool expected = false;
  if (helpers <= 0 || solo || !busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    for (int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag.store(false, std::memory_order_release); }
  } release{busy_};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    tasks_ = tasks;
    job_workers_ = helpers;
    next_.store(0);
    finished_.store(0);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (helpers == 1) {
    wake_.notify_one();  // the spinning worker sees the generation without it
  } else {
    wake_.notify_all();
  }
  run_tasks();
  // Wait until every task finished, then retire the job under the lock once no
  // worker is inside it (workers only join a live job, under the same lock).
  const auto own_done = Clock::now();
  bool waited = false;
  for (int i = 0; finished_.load(std::memory_order_acquire) < tasks_; ++i) {
    waited = true;
    if (i < 2000) {
      SPARSERT_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
  if (waited) {
    const auto end = Clock::now();
    const auto wait = end - own_done;
    if (wait > kStallMin && wait > own_done - start) {
      solo_until_.store((end + kSoloFor).time_since_epoch().count(), std::memory_order_relaxed);
      stalls_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_workers_.load() == 0; });
    fn_ = nullptr;
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace runtime
}  // namespace sparsert
