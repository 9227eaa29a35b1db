// Runtime CPU feature detection: CPUID on x86-64, the kernel's hardware
// capability bits (getauxval) on AArch64 Linux. See cpu_features.h.
#include "fastckpt/cpu_features.h"

#include <cstdlib>
#include <string>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)  // as in the kernel's uapi/asm/hwcap.h
#endif
#endif

namespace fastckpt {
namespace cpu {
namespace {

// Whether FASTCKPT_DISABLE_CPU_FEATURES names `feature` (or "all").
bool DisabledByEnv(const char* feature) {
  const char* env = std::getenv("FASTCKPT_DISABLE_CPU_FEATURES");
  if (env == nullptr) return false;
  std::string list(env);
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    // Tolerate spaces around the names ("sse42, pclmul").
    const size_t first = item.find_first_not_of(" \t");
    const size_t last = item.find_last_not_of(" \t");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    if (item == feature || item == "all") return true;
    start = end + 1;
  }
  return false;
}

struct Features {
  bool sse42 = false;
  bool pclmul = false;
  bool arm64_crc32 = false;
};

Features Detect() {
  Features f;
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  // Leaf 1, ECX: bit 20 = SSE4.2, bit 1 = PCLMULQDQ. Neither instruction uses
  // state the OS must save beyond the SSE registers every x86-64 OS handles.
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    f.sse42 = (ecx & (1u << 20)) != 0;
    f.pclmul = f.sse42 && (ecx & (1u << 1)) != 0;
  }
#elif defined(__aarch64__) && defined(__linux__)
  f.arm64_crc32 = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#endif
  if (DisabledByEnv("sse42")) f.sse42 = false;
  // The carry-less multiply is only used inside the SSE4.2 kernel.
  if (!f.sse42 || DisabledByEnv("pclmul")) f.pclmul = false;
  if (DisabledByEnv("arm64_crc32")) f.arm64_crc32 = false;
  return f;
}

const Features& Get() {
  static const Features features = Detect();
  return features;
}

}  // namespace

bool CanUseSse42() { return Get().sse42; }
bool CanUsePclmul() { return Get().pclmul; }
bool CanUseArm64Crc32() { return Get().arm64_crc32; }

}  // namespace cpu
}  // namespace fastckpt
