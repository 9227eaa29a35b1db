// Runtime CPU feature detection: CPUID on x86-64, the kernel's hardware
// capability bits (getauxval) on AArch64 Linux. See cpu_features.h.
#include "fastckpt/crc32c/cpu_features.h"

#include <atomic>

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

// Features hidden by MaskFeatures(), as bits.
enum : unsigned {
  kMaskSse42 = 1u << 0,
  kMaskPclmul = 1u << 1,
  kMaskAvx2 = 1u << 2,
  kMaskVpclmul = 1u << 3,
  kMaskArm64Crc32 = 1u << 4,
};
std::atomic<unsigned> g_mask{0};

bool Masked(unsigned bit) { return (g_mask.load(std::memory_order_relaxed) & bit) != 0; }

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
  return f;
}

// What the CPU (and OS) offer, detected once.
const Features& Get() {
  static const Features features = Detect();
  return features;
}

}  // namespace

void MaskFeatures(const std::vector<std::string>& names) {
  unsigned mask = 0;
  for (const std::string& name : names) {
    if (name == "all") mask |= kMaskSse42 | kMaskPclmul | kMaskAvx2 | kMaskVpclmul | kMaskArm64Crc32;
    if (name == "sse42") mask |= kMaskSse42;
    if (name == "pclmul") mask |= kMaskPclmul;
    if (name == "avx2") mask |= kMaskAvx2;
    if (name == "vpclmul") mask |= kMaskVpclmul;
    if (name == "arm64_crc32") mask |= kMaskArm64Crc32;
  }
  g_mask.store(mask, std::memory_order_relaxed);
}

bool CanUseSse42() { return Get().sse42 && !Masked(kMaskSse42); }
// The carry-less multiply is only used inside the SSE4.2 kernel.
bool CanUsePclmul() { return CanUseSse42() && Get().pclmul && !Masked(kMaskPclmul); }
bool CanUseAvx2() { return Get().avx2 && !Masked(kMaskAvx2); }
// The 256-bit carry-less multiply is used with AVX2 integer instructions,
// and its kernel falls back on the SSE4.2 + PCLMULQDQ one for short inputs.
bool CanUseVpclmul() { return CanUsePclmul() && CanUseAvx2() && Get().vpclmul && !Masked(kMaskVpclmul); }
bool CanUseArm64Crc32() { return Get().arm64_crc32 && !Masked(kMaskArm64Crc32); }

}  // namespace cpu
}  // namespace fastckpt
