// Placeholder until the driver-API engine lands: no CUDA path.
#include "fastckpt/copy_engine.h"
namespace fastckpt {
Status NewCudaCopyEngine(std::shared_ptr<CopyEngine>*) {
  return Status(StatusCode::kUnavailable, "CUDA copy engine not built");
}
}  // namespace fastckpt
