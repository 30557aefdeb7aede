#include "util/memory.h"

#include <cstdio>
#include <cstring>

namespace logattn::util {

namespace {
int64_t status_kib(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  int64_t kib = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
      long long v = 0;
      if (std::sscanf(line + n + 1, "%lld", &v) == 1) kib = v;
      break;
    }
  }
  std::fclose(f);
  return kib;
}
}  // namespace

int64_t resident_bytes() {
  return status_kib("VmRSS") * 1024;
}
int64_t peak_resident_bytes() {
  return status_kib("VmHWM") * 1024;
}

}  // namespace logattn::util
