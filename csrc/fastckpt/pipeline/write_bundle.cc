#include "fastckpt/pipeline/write_bundle.h"

#include "fastckpt/pipeline/save_job.h"

namespace fastckpt {

Status WriteBundle(const std::string& prefix, std::vector<WriteItem> items, const WriteOptions& options,
                   WriteResult* result) {
  WriteOptions committing = options;
  committing.commit = true;
  std::unique_ptr<SaveJob> job;
  FASTCKPT_RETURN_IF_ERROR(SaveJob::Create(prefix, std::move(items), committing, StagingOptions(), &job));
  FASTCKPT_RETURN_IF_ERROR(job->Snapshot());  // nothing to stage: host items are written in place
  return job->Finish(result);
}

}  // namespace fastckpt
