// Runtime CPU feature detection: CPUID on x86-64, the kernel's hardware
// capability bits (getauxval) on AArch64 Linux. See cpu_features.h.
#include "fastckpt/crc32c/cpu_features.h"

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
  bool avx2 = false;
  bool vpclmul = false;
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
    // AVX state (the upper halves of the YMM registers) is only usable if the
    // OS saves it on context switches: it must have enabled XSAVE (OSXSAVE,
    // bit 27) and set the SSE and AVX bits (1 and 2) of XCR0.
    const bool osxsave = (ecx & (1u << 27)) != 0;
    const bool avx = (ecx & (1u << 28)) != 0;
    bool ymm_state = false;
    if (osxsave && avx) {
      unsigned xcr0_lo = 0, xcr0_hi = 0;
      // XGETBV with ECX = 0 reads XCR0; spelled as asm so that this baseline
      // function needs no "xsave" target attribute.
      __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
      ymm_state = (xcr0_lo & 0x6u) == 0x6u;
    }
    // Leaf 7, subleaf 0: EBX bit 5 = AVX2, ECX bit 10 = VPCLMULQDQ.
    // __get_cpuid_count() returns 0 when the CPU has no leaf 7.
    if (ymm_state && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
      f.avx2 = (ebx & (1u << 5)) != 0;
      f.vpclmul = (ecx & (1u << 10)) != 0;
    }
  }
#elif defined(__aarch64__) && defined(__linux__)
  f.arm64_crc32 = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#endif
  if (DisabledByEnv("sse42")) f.sse42 = false;
  // The carry-less multiply is only used inside the SSE4.2 kernel.
  if (!f.sse42 || DisabledByEnv("pclmul")) f.pclmul = false;
  if (DisabledByEnv("avx2")) f.avx2 = false;
  // The 256-bit carry-less multiply is used with AVX2 integer instructions,
  // and its kernel falls back on the SSE4.2 + PCLMULQDQ one for short inputs.
  if (!f.pclmul || !f.avx2 || DisabledByEnv("vpclmul")) f.vpclmul = false;
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
bool CanUseAvx2() { return Get().avx2; }
bool CanUseVpclmul() { return Get().vpclmul; }
bool CanUseArm64Crc32() { return Get().arm64_crc32; }

}  // namespace cpu
}  // namespace fastckpt
