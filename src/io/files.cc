#include "io/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "logattn/error.h"

namespace logattn::io {

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;
  const char* kind = S_ISFIFO(st.st_mode)   ? "a FIFO"
                     : S_ISDIR(st.st_mode)  ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a plain file";
  throw Error(what + ": " + path + " is " + kind + ", not a regular file");
}

FolderLock::FolderLock(const std::string& dir, const std::string& what) {
  const std::string path = dir + "/.lock";
  require_regular_file(path, what);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd_ < 0) {
    if (errno == EROFS || errno == EACCES || errno == EPERM)
      throw Error(what + ": " + dir + " is not writable (" + std::strerror(errno) + ")");
    throw Error(what + ": cannot open " + path + ": " + std::strerror(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char owner[32] = {};
    const ssize_t n = ::pread(fd_, owner, sizeof owner - 1, 0);
    ::close(fd_);
    fd_ = -1;
    throw Error(what + ": another process (pid " +
                std::string(owner, static_cast<size_t>(std::max<ssize_t>(n, 0))) +
                ") is writing to " + dir + "; wait for it to finish or give another folder");
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // The lock holds without the pid; only the message of a second process loses it.
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  require_regular_file(path, "cannot map");
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + " is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const std::string err = std::strerror(errno);
      ::close(fd);
      throw Error("cannot map " + path + ": " + err);
    }
    data_ = static_cast<const char*>(p);
  }
  ::close(fd);
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = o.data_, size_ = o.size_;
    o.data_ = nullptr, o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<char*>(data_), size_);
}

namespace {

// An AtomicWriter's temporary file is <target><kTemporary><pid>.
constexpr std::string_view kTemporary = ".tmp.";

}  // namespace

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string().find(kTemporary) == std::string::npos) continue;
    // Whatever kind of entry it is (a file, a link, a folder someone made): the name is ours.
    std::error_code rm;
    std::filesystem::remove_all(e.path(), rm);
    if (rm)
      throw Error("cannot remove the stale temporary " + e.path().string() + ": " + rm.message() +
                  "; remove it by hand");
  }
  if (ec) throw Error("cannot list " + dir + ": " + ec.message());
}

std::string temporary_path(const std::string& path) {
  return path + std::string(kTemporary) + std::to_string(::getpid());
}

AtomicWriter::AtomicWriter(std::string path) : path_(std::move(path)), tmp_(temporary_path(path_)) {
  // Renaming over a FIFO or a device would replace it with a regular file.
  require_regular_file(path_, "cannot write");
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0) throw Error("cannot write " + tmp_ + ": " + std::strerror(errno));
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicWriter::write(const void* data, size_t n) {
  LOGATTN_CHECK(fd_ >= 0);
  const char* p = static_cast<const char*>(data);
  for (size_t done = 0; done < n;) {
    const ssize_t w = ::write(fd_, p + done, n - done);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      throw Error("cannot write " + tmp_ + ": " + std::strerror(errno));
    }
    done += static_cast<size_t>(w);
  }
  written_ += n;
}

void AtomicWriter::commit() {
  LOGATTN_CHECK(fd_ >= 0);
  const bool flushed = ::fsync(fd_) == 0;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!flushed || !closed) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp_.c_str());
    throw Error("cannot flush " + tmp_ + ": " + err);
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp_.c_str());
    throw Error("cannot rename " + tmp_ + " to " + path_ + ": " + err);
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

}  // namespace logattn::io
