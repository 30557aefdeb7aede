// Files: read-only memory maps, and writes that land whole or not at all (a temporary name
// in the same folder, flushed, then renamed over the target).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace logattn::io {

// Refuses a path that exists but is not a regular file (a FIFO, whose open() would wait for a
// writer forever; a directory; a device), naming what it is: "<what>: <path> is a FIFO, not
// a regular file". A missing path passes, for the caller's own message.
void require_regular_file(const std::string& path, const std::string& what);

// A read-only memory map of a regular file (an empty file maps to an empty view).
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws logattn::Error
  MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::string_view bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// Streams bytes to path.tmp.<pid>; commit() flushes and renames it to path. Destroyed
// without commit() (an error on the way), it removes the temporary file: the target keeps
// its old contents.
class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);  // throws logattn::Error
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  ~AtomicWriter();

  void write(const void* data, size_t n);
  void commit();
  size_t written() const { return written_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  size_t written_ = 0;
};

// An advisory lock on a folder (flock on <dir>/.lock, holding the owner's pid), held while
// the object lives and released by the kernel when its process dies, so a killed run
// never leaves a stale lock. A second holder is refused with an Error naming the owner.
class FolderLock {
 public:
  FolderLock(const std::string& dir, const std::string& what);  // throws logattn::Error
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();

 private:
  int fd_ = -1;
};

// Removes the temporary files AtomicWriters left in dir when their process was killed
// mid-write: the files they were to replace are intact (or absent), so they are garbage.
// Only for a folder one process writes (a run folder under its FolderLock).
void remove_stale_temporaries(const std::string& dir);

// A temporary name beside path (path.tmp.<pid>), of the kind remove_stale_temporaries removes.
std::string temporary_path(const std::string& path);

// Writes bytes to path through AtomicWriter.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace logattn::io
