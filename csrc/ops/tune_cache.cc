#include "ops/tune_cache.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sparsert/sparsert.h"

namespace sparsert {
namespace ops {
namespace {

constexpr const char* kHeader = "# sparsert tune cache v1: key<TAB>choice (1 = sparse / winograd, 0 = not)";

bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > TuneCache::kMaxKeyBytes) return false;
  for (char c : key)
    if (c == '\t' || c == '\n' || c == '\r' || c == '\0') return false;
  return true;
}

// mkdir -p for the folder of `path` (mode 0777 less the umask).
bool make_parent_dirs(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return true;
  const std::string dir = path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i != dir.size() && dir[i] != '/') continue;
    const std::string part = dir.substr(0, i);
    if (::mkdir(part.c_str(), 0777) != 0 && errno != EEXIST) return false;
  }
  return true;
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

TuneCache::TuneCache(std::string path) : path_(std::move(path)) { read_file(&entries_); }

void TuneCache::read_file(std::map<std::string, int>* into) const {
  if (path_.empty()) return;
  std::ifstream f(path_, std::ios::binary);
  if (!f) return;
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size <= 0 || size > kMaxFileBytes) return;  // too large: ignored (rewritten on save)
  f.seekg(0, std::ios::beg);
  std::string line;
  while (into->size() < kMaxEntries && std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.rfind('\t');
    if (tab == std::string::npos || tab + 2 != line.size()) continue;
    const char c = line[tab + 1];
    if (c != '0' && c != '1') continue;
    std::string key = line.substr(0, tab);
    if (!valid_key(key)) continue;
    (*into)[std::move(key)] = c - '0';
  }
}

int TuneCache::lookup(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return -1;
  ++hits_;
  return it->second;
}

void TuneCache::record(const std::string& key, bool choice) {
  if (!valid_key(key)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (entries_.size() >= kMaxEntries) return;
  entries_[key] = choice ? 1 : 0;
  fresh_[key] = choice ? 1 : 0;
  ++recorded_;
}

int64_t TuneCache::hits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return hits_;
}

int64_t TuneCache::recorded() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return recorded_;
}

std::string TuneCache::save() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fresh_.empty() || path_.empty()) return "";
  std::map<std::string, int> merged;
  read_file(&merged);  // what other processes wrote since
  for (const auto& kv : fresh_) merged[kv.first] = kv.second;
  while (merged.size() > kMaxEntries) merged.erase(merged.begin());
  std::string text = std::string(kHeader) + "\n";
  for (const auto& kv : merged) text += kv.first + "\t" + static_cast<char>('0' + kv.second) + "\n";
  if (!make_parent_dirs(path_)) return "cannot create the folder of " + path_ + ": " + std::strerror(errno);
  std::random_device rd;
  const std::string tmp = path_ + ".tmp" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);  // umask applies
  if (fd < 0) return "cannot write " + tmp + ": " + std::strerror(errno);
  const bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(ok ? errno : saved_errno);
    ::unlink(tmp.c_str());
    return "cannot write " + path_ + ": " + why;
  }
  fresh_.clear();
  return "";
}

std::string TuneCache::machine_key(kernels::Isa isa) {
  const kernels::CacheSizes& c = kernels::cache_sizes();
  std::ostringstream s;
  s << "sparsert " << version() << "|" << kernels::cpu_signature() << "|L1d " << c.l1d << " L2 " << c.l2
    << "|" << kernels::isa_name(isa);
  return s.str();
}

uint64_t TuneCache::pattern_hash(const kernels::CsrMatrix& m) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(static_cast<uint64_t>(m.rows));
  mix(static_cast<uint64_t>(m.cols));
  if (m.row_ptr == nullptr) return h;
  for (int64_t r = 0; r <= m.rows; ++r) mix(m.row_ptr[r]);
  const uint32_t nnz = m.row_ptr[m.rows];
  for (uint32_t j = 0; j < nnz; ++j) mix(m.col_idx16 != nullptr ? m.col_idx16[j] : m.col_idx32[j]);
  return h;
}

std::string TuneCache::default_path() {
  const char* explicit_path = std::getenv("SPARSERT_TUNE_CACHE");
  if (explicit_path != nullptr && explicit_path[0] != '\0') return explicit_path;
  const char* dir = std::getenv("SPARSERT_CACHE_DIR");  // also where the latency tables live
  if (dir != nullptr && dir[0] != '\0') return std::string(dir) + "/tune-v1.tsv";
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/sparsert/tune-v1.tsv";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') return std::string(home) + "/.cache/sparsert/tune-v1.tsv";
  return "";
}

}  // namespace ops
}  // namespace sparsert
