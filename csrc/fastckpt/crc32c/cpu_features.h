// Runtime CPU feature detection for the instruction-set-specific kernels.
//
// setup.py compiles every file for the baseline ISA, so code that uses newer
// instructions lives in functions with a target attribute and may only be
// called after the matching check here returns true. What the CPU offers is
// detected once per process and cached; all functions are thread-safe.
//
// For testing the fallback paths (and for ruling out a misbehaving instruction
// in the field) features can be masked off with MaskFeatures(), which
// fastckpt/config.py calls at import from the environment variable
// FASTCKPT_DISABLE_CPU_FEATURES (the core reads no environment variables).
// Masking can only remove features, never claim ones the CPU lacks. Features
// that build on one another are masked together: without sse42 there is no
// pclmul, and without pclmul or avx2 there is no vpclmul.
#pragma once

#include <string>
#include <vector>

namespace fastckpt {
namespace cpu {

// Hides the named features from every later check: sse42, pclmul, avx2,
// vpclmul, arm64_crc32, or "all"; other names are ignored. Replaces the
// previous mask. A CRC32C implementation chosen before stays chosen
// (crc32c::SetImpl(crc32c::BestImpl()) re-chooses).
void MaskFeatures(const std::vector<std::string>& names);

// x86-64 SSE4.2, which has the CRC32 (Castagnoli) instruction.
bool CanUseSse42();
// x86-64 PCLMULQDQ (carry-less multiply), used to merge parallel CRC streams.
bool CanUsePclmul();
// x86-64 AVX2 with the OS saving the 256-bit YMM state (CPUID and XCR0).
bool CanUseAvx2();
// x86-64 VPCLMULQDQ on 256-bit registers: two carry-less multiplies per
// instruction. True only together with CanUseAvx2() and CanUsePclmul(), which
// the kernels that use it also rely on.
bool CanUseVpclmul();
// AArch64 CRC32 extension (CRC32C{B,H,W,X} instructions).
bool CanUseArm64Crc32();

}  // namespace cpu
}  // namespace fastckpt
