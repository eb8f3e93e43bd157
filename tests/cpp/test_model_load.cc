// Loading and dropping models: nothing may leak (memory, mappings, file
// descriptors) — run under LeakSanitizer by .ci/sanitize.sh, and checked
// here through /proc/self (mappings, descriptors, and RSS outside ASan, whose
// quarantine holds freed memory on purpose). Also: absurd sizes in a file or
// a run request are refused before anything is allocated; under ASan a huge
// allocation would abort the test, which makes "before" checkable.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "format/spr_format.h"
#include "model_builder.h"
#include "sparsert/sparsert.h"

#if defined(__SANITIZE_ADDRESS__)
#define SPARSERT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPARSERT_TEST_ASAN 1
#endif
#endif

namespace sparsert {
namespace {

using Bytes = std::vector<uint8_t>;

int64_t rss_kib() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int count_lines(const char* path) {
  std::ifstream f(path);
  int n = 0;
  std::string line;
  while (std::getline(f, line)) ++n;
  return n;
}

int count_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

std::string write_temp(const Bytes& bytes) {
  char path[] = "/tmp/sparsert_load_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  close(fd);
  return path;
}

Tensor ones(std::vector<int64_t> shape) {
  Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t.data()[i] = 0.5f;
  return t;
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<size_t>(a.size())) == 0;
}

TEST(ModelLoad, LoadAndDropThousandTimesFreesEverything) {
  if (std::getenv("SPARSERT_EMULATED") != nullptr)
    GTEST_SKIP() << "under qemu-user the RSS bound measures qemu (it keeps ~280 KiB per exited guest thread); "
                    "this test runs natively and under LeakSanitizer";
  const Bytes bytes = testing::cnn_model(3);
  const std::string path = write_temp(bytes);
  const Tensor x = ones({2, 3, 12, 12});
  const Tensor expected = Model::load(path).run({x})[0];
  auto cycle = [&](int i) {
    LoadOptions options;
    options.threads = 1 + i % 3;  // thread pools are created and joined too
    const Model m = i % 2 ? Model::load(path, options)
                          : Model::load_from_buffer(bytes.data(), bytes.size(), options);
    if (i % 10 == 0) {
      EXPECT_TRUE(same(m.run({x})[0], expected)) << "cycle " << i;
    }
  };
  for (int i = 0; i < 50; ++i) cycle(i);  // warm-up: allocator pools, lazy init
  const int maps_before = count_lines("/proc/self/maps");
  const int fds_before = count_fds();
  const int64_t rss_before = rss_kib();
  for (int i = 0; i < 1000; ++i) cycle(i);
  const int maps_after = count_lines("/proc/self/maps");
  const int fds_after = count_fds();
  const int64_t rss_after = rss_kib();
  std::printf("maps %d -> %d, fds %d -> %d, rss %lld -> %lld KiB\n", maps_before, maps_after,
              fds_before, fds_after, static_cast<long long>(rss_before),
              static_cast<long long>(rss_after));
  // 500 of the cycles map the file: a missing munmap adds hundreds of entries;
  // the allocator (ASan's especially) may add a few of its own.
  EXPECT_LE(maps_after, maps_before + 32) << "memory mappings leak (munmap missing?)";
  EXPECT_EQ(fds_after, fds_before) << "file descriptors leak";
#ifndef SPARSERT_TEST_ASAN
  EXPECT_LT(rss_after - rss_before, 8 * 1024) << "RSS grew by more than 8 MiB over 1000 loads";
#endif
  std::remove(path.c_str());
}

TEST(ModelLoad, BufferIsCopiedAndCopiesShareWeights) {
  Bytes bytes = testing::mlp_model(5);
  const Tensor x = ones({3, 64});
  Model copy = Model::load_from_buffer(bytes.data(), bytes.size());
  const Tensor expected = copy.run({x})[0];
  {
    const Model original = Model::load_from_buffer(bytes.data(), bytes.size());
    copy = original;  // the original goes out of scope; the copy keeps the weights
  }
  std::fill(bytes.begin(), bytes.end(), 0xAB);  // the caller may reuse its buffer
  bytes.clear();
  bytes.shrink_to_fit();
  EXPECT_TRUE(same(copy.run({x})[0], expected));
}

TEST(ModelLoad, FileMayBeDeletedAfterLoad) {
  const Bytes bytes = testing::mlp_model(6);
  const std::string path = write_temp(bytes);
  const Model m = Model::load(path);
  std::remove(path.c_str());
  const Tensor y = m.run({ones({2, 64})})[0];
  float sum = 0;
  for (int64_t i = 0; i < y.size(); ++i) sum += y.data()[i];
  EXPECT_NEAR(sum, 2.0f, 1e-5f);  // two softmax rows
}

// --- absurd sizes --------------------------------------------------------------

void expect_error(ErrorCode code, const std::string& needle, const std::function<void()>& f) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ModelLoad, HugeRunRequestsAreRefusedBeforeAllocating) {
  const Bytes bytes = testing::mlp_model(7);
  const Model m = Model::load_from_buffer(bytes.data(), bytes.size());
  float dummy[64] = {};
  // 2^34 rows: 640 GiB of outputs. The plan refuses before reading the input
  // (a view whose memory is far smaller than its shape claims) or allocating.
  expect_error(ErrorCode::kResource, "use a smaller batch",
               [&] { m.run({Tensor::view(dummy, {int64_t{1} << 34, 64})}); });
  // a batch whose element count overflows int64
  expect_error(ErrorCode::kResource, "overflows",
               [&] { m.run({Tensor::view(dummy, {INT64_MAX / 8, 64})}); });
  expect_error(ErrorCode::kResource, "",
               [&] { m.output_shapes({{int64_t{1} << 34, 64}}); });
  // owning tensors too large for the machine, or overflowing
  expect_error(ErrorCode::kResource, "more memory than this machine has",
               [] { Tensor t({int64_t{1} << 22, int64_t{1} << 22}); });
  expect_error(ErrorCode::kResource, "overflows",
               [] { Tensor t({int64_t{1} << 40, int64_t{1} << 40}); });
  expect_error(ErrorCode::kInvalidArgument, "negative", [] { Tensor t({-2, 3}); });
  // the model still works afterwards
  EXPECT_EQ(m.run({ones({1, 64})})[0].shape(), (std::vector<int64_t>{1, 10}));
}

// A raw file with the given body and data section, checksums filled in.
Bytes raw_file(const Bytes& body, const Bytes& data) {
  Bytes f(48, 0);
  std::memcpy(f.data(), format::kMagic, 4);
  auto set32 = [&](size_t at, uint32_t v) { std::memcpy(f.data() + at, &v, 4); };
  auto set64 = [&](size_t at, uint64_t v) { std::memcpy(f.data() + at, &v, 8); };
  const uint64_t data_offset = (48 + body.size() + 63) / 64 * 64;
  set32(4, 1);
  set32(8, 64);
  set64(16, body.size());
  set64(24, data_offset);
  set64(32, data.size());
  set32(40, format::crc32(body.data(), body.size()));
  set32(44, format::crc32(data.data(), data.size()));
  f.insert(f.end(), body.begin(), body.end());
  f.resize(data_offset, 0);
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

void u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void str(Bytes& b, const std::string& s) {
  u32(b, static_cast<uint32_t>(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}

// Empty graph (x -> output x) followed by `tensors` (count included).
Bytes body_with(const Bytes& metadata, const Bytes& tensors) {
  Bytes b = metadata;
  u64(b, 1);  // inputs
  str(b, "x");
  u32(b, 1);
  u32(b, 1);
  u64(b, 4);
  u64(b, 1);  // outputs
  str(b, "x");
  u64(b, 0);  // nodes
  b.insert(b.end(), tensors.begin(), tensors.end());
  return b;
}

Bytes no_metadata() {
  Bytes b;
  u64(b, 0);
  return b;
}
Bytes no_tensors() {
  Bytes b;
  u64(b, 0);
  return b;
}

void expect_format_error(const Bytes& file, const std::string& needle) {
  expect_error(ErrorCode::kFormat, needle,
               [&] { Model::load_from_buffer(file.data(), file.size()); });
}

TEST(ModelLoad, AbsurdSizesInAFileAreRefusedBeforeAllocating) {
  // the base file loads
  const Bytes ok = raw_file(body_with(no_metadata(), no_tensors()), {});
  EXPECT_EQ(Model::load_from_buffer(ok.data(), ok.size()).outputs()[0].shape,
            (std::vector<int64_t>{4}));
  {  // metadata count 2^60
    Bytes md;
    u64(md, uint64_t{1} << 60);
    expect_format_error(raw_file(body_with(md, no_tensors()), {}), "metadata count");
  }
  {  // an INTS value claiming 2^61 items
    Bytes md;
    u64(md, 1);
    str(md, "k");
    u32(md, 4);
    u64(md, uint64_t{1} << 61);
    expect_format_error(raw_file(body_with(md, no_tensors()), {}), "INTS count");
  }
  {  // a STRINGS value claiming UINT64_MAX items
    Bytes md;
    u64(md, 1);
    str(md, "k");
    u32(md, 6);
    u64(md, UINT64_MAX);
    expect_format_error(raw_file(body_with(md, no_tensors()), {}), "STRINGS count");
  }
  {  // a string length of 4 GiB
    Bytes md;
    u64(md, 1);
    u32(md, 0xFFFFFFFFu);
    expect_format_error(raw_file(body_with(md, no_tensors()), {}), "exceeds the limit");
  }
  auto dense_tensor = [](std::vector<uint64_t> dims, uint64_t offset, uint64_t nbytes) {
    Bytes t;
    u64(t, 1);
    str(t, "w");
    u32(t, 1);
    u32(t, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(t, d);
    u32(t, 0);
    u64(t, offset);
    u64(t, nbytes);
    return t;
  };
  // dims whose product overflows 64 bits
  expect_format_error(
      raw_file(body_with(no_metadata(), dense_tensor({uint64_t{1} << 32, uint64_t{1} << 32, 16}, 0,
                                                     0)),
               {}),
      "overflows");
  // nbytes that wrap around (elements x 4 overflows)
  expect_format_error(raw_file(body_with(no_metadata(), dense_tensor({uint64_t{1} << 62}, 0, 0)),
                               {}),
                      "nbytes");
  // a consistent but huge tensor: 2^40 bytes in a 64-byte data section
  expect_format_error(
      raw_file(body_with(no_metadata(), dense_tensor({uint64_t{1} << 38}, 0, uint64_t{1} << 40)),
               Bytes(64, 0)),
      "extends past the data section");
  // offset + nbytes overflowing 64 bits
  expect_format_error(raw_file(body_with(no_metadata(), dense_tensor({4}, UINT64_MAX - 63, 16)),
                               Bytes(64, 0)),
                      "past the data section");
  {  // a CSR tensor with 2^31 rows and nnz 2^32 - 1 in a tiny file
    Bytes t;
    u64(t, 1);
    str(t, "w");
    u32(t, 1);
    u32(t, 2);
    u64(t, uint64_t{1} << 31);
    u64(t, 4);
    u32(t, 1);
    u64(t, 0xFFFFFFFFu);
    u32(t, 32);
    u64(t, 0);
    u64(t, 0);
    u64(t, 0);
    expect_format_error(raw_file(body_with(no_metadata(), t), Bytes(64, 0)),
                        "past the data section");
  }
  {  // tensor count 2^40
    Bytes t;
    u64(t, uint64_t{1} << 40);
    expect_format_error(raw_file(body_with(no_metadata(), t), {}), "tensor count");
  }
  {  // header sizes that overflow when added
    Bytes f = ok;
    const uint64_t huge = UINT64_MAX - 10;
    std::memcpy(f.data() + 16, &huge, 8);
    expect_format_error(f, "body_size");
    f = ok;
    std::memcpy(f.data() + 24, &huge, 8);
    expect_format_error(f, "data_offset");
  }
}

// One thread rule for C++ and Python: 0 = every usable core; more than those cores is capped
// to them (oversubscribing only slows every node) and the load log says so; negative or above
// kMaxThreads is refused.
TEST(ModelLoad, ThreadsZeroIsEveryCoreAndMoreThanTheCoresIsCapped) {
  const Bytes bytes = testing::cnn_model(3);
  LoadOptions options;
  options.threads = 0;
  EXPECT_EQ(Model::load_from_buffer(bytes.data(), bytes.size(), options).threads(), default_threads());
  options.threads = 1;
  EXPECT_EQ(Model::load_from_buffer(bytes.data(), bytes.size(), options).threads(), 1);
  options.threads = default_threads() + 3;
  const Model capped = Model::load_from_buffer(bytes.data(), bytes.size(), options);
  EXPECT_EQ(capped.threads(), default_threads());
  bool noted = false;
  for (const auto& line : capped.load_log()) noted |= line.find("threads: ") == 0;
  EXPECT_TRUE(noted);
  const Tensor x = ones({2, 3, 12, 12});
  EXPECT_TRUE(same(capped.run({x})[0], Model::load_from_buffer(bytes.data(), bytes.size()).run({x})[0]));
  for (int bad : {-1, kMaxThreads + 1}) {
    options.threads = bad;
    try {
      Model::load_from_buffer(bytes.data(), bytes.size(), options);
      ADD_FAILURE() << "threads = " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  }
}

}  // namespace
}  // namespace sparsert
