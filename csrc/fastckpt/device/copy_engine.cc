#include "fastckpt/device/copy_engine.h"

#include <mutex>

namespace fastckpt {

namespace {

std::mutex g_mu;
std::shared_ptr<CopyEngine> g_installed;  // guarded by g_mu
// The CUDA engine is created once, on first use, and kept for the life of
// the process (its pinned buffers may outlive any one save).
std::shared_ptr<CopyEngine> g_cuda;       // guarded by g_mu
Status g_cuda_status;                     // guarded by g_mu
bool g_cuda_tried = false;                // guarded by g_mu

Status CudaEngineLocked(std::shared_ptr<CopyEngine>* out) {
  if (!g_cuda_tried) {
    g_cuda_tried = true;
    g_cuda_status = NewCudaCopyEngine(&g_cuda);
  }
  if (!g_cuda_status.ok()) return g_cuda_status;
  *out = g_cuda;
  return Status::Ok();
}

}  // namespace

Status GetCopyEngine(std::shared_ptr<CopyEngine>* out) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_installed) {
    *out = g_installed;
    return Status::Ok();
  }
  Status st = CudaEngineLocked(out);
  if (st.ok()) return st;
  return Unavailable("no device copy path: device arrays need the CUDA driver (" + st.message() + ")");
}

void InstallCopyEngine(std::shared_ptr<CopyEngine> engine) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_installed = std::move(engine);
}

std::string ActiveDevicePath() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_installed) return g_installed->name();
  std::shared_ptr<CopyEngine> e;
  return CudaEngineLocked(&e).ok() ? e->name() : "cpu";
}

}  // namespace fastckpt
