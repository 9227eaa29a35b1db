// CRC-32C front end: chooses and dispatches to the per-CPU kernels, and
// implements the CPU-independent parts (Combine, implementation names).
//
// Dispatch is one relaxed atomic load and an indirect call per Extend(), a
// few nanoseconds that vanish next to the kernel even for small buffers. The
// atomic keeps SetImpl() from being a data race; since all kernels compute
// the same function, a checksum racing with SetImpl() is still correct.
#include "fastckpt/crc32c/crc32c.h"

#include <atomic>

#include "fastckpt/crc32c/cpu_features.h"
#include "fastckpt/crc32c/crc32c_internal.h"

namespace fastckpt {
namespace crc32c {
namespace {

using Kernel = uint32_t (*)(uint32_t state, const uint8_t* data, size_t n);

constexpr int kNumImpls = 4;

struct ImplInfo {
  const char* name;
  Kernel kernel;
};

// Indexed by static_cast<int>(Impl).
constexpr ImplInfo kImpls[kNumImpls] = {
    {"portable", internal::ExtendPortable},
    {"sse42", internal::ExtendSse42},
    {"arm64", internal::ExtendArm64},
    {"avx2_vpclmul", internal::ExtendAvx2Vpclmul},
};

bool ValidImpl(Impl impl) {
  const int i = static_cast<int>(impl);
  return i >= 0 && i < kNumImpls;
}

// The active implementation, first set to BestImpl() on first use. A
// function-local static makes that first choice thread-safe.
std::atomic<int>& ActiveIndex() {
  static std::atomic<int> index{static_cast<int>(BestImpl())};
  return index;
}

}  // namespace

uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  const int i = ActiveIndex().load(std::memory_order_relaxed);
  return ~kImpls[i].kernel(~crc, static_cast<const uint8_t*>(data), n);
}

uint32_t ExtendWith(Impl impl, uint32_t crc, const void* data, size_t n) {
  // An unavailable implementation would execute illegal instructions; fall
  // back to the portable one rather than crash on a caller's mistake.
  const Kernel kernel = IsAvailable(impl) ? kImpls[static_cast<int>(impl)].kernel : internal::ExtendPortable;
  return ~kernel(~crc, static_cast<const uint8_t*>(data), n);
}

uint32_t Combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  // With the register pre- and post-inverted (init = xorout = ~0), the
  // inversions cancel: crc(A || B) = crc(A) * x^(8 len_b) + crc(B) (mod P).
  // len_b == 0 gives x^0 = 1, i.e. crc_a ^ crc_b, and crc(empty) = 0.
  return internal::MultiplyModP(crc_a, internal::XPow8NModP(len_b)) ^ crc_b;
}

const char* ImplName(Impl impl) { return ValidImpl(impl) ? kImpls[static_cast<int>(impl)].name : "?"; }

bool ImplFromName(const std::string& name, Impl* out) {
  for (int i = 0; i < kNumImpls; ++i) {
    if (name == kImpls[i].name) {
      *out = static_cast<Impl>(i);
      return true;
    }
  }
  return false;
}

bool IsAvailable(Impl impl) {
  switch (impl) {
    case Impl::kPortable: return true;
    case Impl::kSse42: return cpu::CanUseSse42();
    case Impl::kArm64: return cpu::CanUseArm64Crc32();
    case Impl::kAvx2Vpclmul: return cpu::CanUseVpclmul();
  }
  return false;
}

std::vector<Impl> AvailableImpls() {
  std::vector<Impl> impls;
  // Portable first, then the hardware kernels, slower before faster: on
  // x86-64 the AVX2 + VPCLMULQDQ kernel (which falls back on the SSE4.2 one
  // for short inputs, so it is never slower) after SSE4.2.
  for (Impl impl : {Impl::kPortable, Impl::kSse42, Impl::kAvx2Vpclmul, Impl::kArm64}) {
    if (IsAvailable(impl)) impls.push_back(impl);
  }
  return impls;
}

Impl BestImpl() { return AvailableImpls().back(); }

Impl ActiveImpl() { return static_cast<Impl>(ActiveIndex().load(std::memory_order_relaxed)); }

bool SetImpl(Impl impl) {
  if (!ValidImpl(impl) || !IsAvailable(impl)) return false;
  ActiveIndex().store(static_cast<int>(impl), std::memory_order_relaxed);
  return true;
}

}  // namespace crc32c
}  // namespace fastckpt
