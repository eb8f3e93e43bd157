// Kernel choices measured by LoadOptions::tune, kept on disk so that loading
// the same layers again on the same machine does not time them again.
//
// A key names the machine (kernels::cpu_signature(), the cache sizes, the
// sparsert version, the model's kernel set) and the layer (op, weight shape,
// nonzeros, a hash of the sparsity pattern, attributes, input shape): a
// choice is reused only where the same timing would be repeated. The file is
// a text file of "key<TAB>0|1" lines under a header line; it is read once per
// model load (at most kMaxFileBytes; lines that do not parse are skipped, so a
// damaged or hostile file costs a re-timing, never a wrong kernel or a crash:
// every choice is between two correct kernels) and rewritten atomically
// (a temporary file in the same folder, then rename; the user's umask
// applies) after a load or a run that timed something new.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "kernels/kernels.h"

namespace sparsert {
namespace ops {

class TuneCache {
 public:
  static constexpr int64_t kMaxFileBytes = int64_t{8} << 20;
  static constexpr size_t kMaxKeyBytes = 1024;
  static constexpr size_t kMaxEntries = 100000;

  // path: the cache file (its folder is created on save). The file is read here.
  explicit TuneCache(std::string path);

  // The stored choice for key (0 or 1), or -1 when there is none.
  int lookup(const std::string& key);
  void record(const std::string& key, bool choice);
  // Writes the choices recorded since the last save, merged with what the file
  // holds now (another process may have added some). Returns "" or what went
  // wrong: a cache that cannot be written only costs time, never the run.
  std::string save();

  const std::string& path() const { return path_; }
  int64_t hits() const;
  int64_t recorded() const;

  // The machine part of every key.
  static std::string machine_key(kernels::Isa isa);
  // FNV-1a over the CSR pattern (row pointers and column indices; not values).
  static uint64_t pattern_hash(const kernels::CsrMatrix& m);
  // $SPARSERT_TUNE_CACHE; else $SPARSERT_CACHE_DIR/tune-v1.tsv; else
  // $XDG_CACHE_HOME/sparsert/tune-v1.tsv; else $HOME/.cache/sparsert/tune-v1.tsv;
  // else "" (no cache).
  static std::string default_path();

 private:
  void read_file(std::map<std::string, int>* into) const;

  std::string path_;
  mutable std::mutex mutex_;
  std::map<std::string, int> entries_;
  std::map<std::string, int> fresh_;  // recorded since the last save
  int64_t hits_ = 0;
  int64_t recorded_ = 0;
};

}  // namespace ops
}  // namespace sparsert
