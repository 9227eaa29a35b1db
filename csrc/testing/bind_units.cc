// Direct entry points into core pieces that the package reaches only end to
// end: the task planner (pipeline/task_plan.h), the slab layout of a load
// (pipeline/load_plan.h), the staging pool (pipeline/staging_pool.h) and the
// index table builder and reader (format/table_builder.h, table_reader.h).
// Arguments are converted and passed on as they are; the core's Status
// becomes the usual exception (bindings/errors.cc).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/errors.h"
#include "fastckpt/format/table_builder.h"
#include "fastckpt/format/table_reader.h"
#include "fastckpt/pipeline/load_plan.h"
#include "fastckpt/pipeline/staging_pool.h"
#include "fastckpt/pipeline/task_plan.h"
#include "testing/registry.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {
namespace {

using ExtentTuple = std::tuple<size_t, int32_t, uint64_t, uint64_t>;

py::tuple PlanTasksPy(const std::vector<ExtentTuple>& extents, size_t num_items, uint64_t task_bytes,
                      uint64_t piece_bytes, std::optional<size_t> max_pieces, std::optional<uint64_t> max_gap) {
  std::vector<Extent> xs;
  for (const auto& [item, shard, offset, size] : extents) {
    if (item >= num_items) Check(InvalidArgument("plan_tasks: item " + std::to_string(item) + " >= num_items"));
    xs.push_back({item, shard, offset, size});
  }
  if (piece_bytes > task_bytes) Check(InvalidArgument("plan_tasks: piece_bytes > task_bytes"));
  TaskLimits limits;
  limits.task_bytes = task_bytes;
  limits.piece_bytes = piece_bytes;
  if (max_pieces) limits.max_pieces = *max_pieces;
  if (max_gap) limits.max_gap = *max_gap;
  TaskPlan plan;
  PlanTasks(xs, num_items, limits, &plan);
  py::list pieces, tasks;
  for (const PlannedPiece& p : plan.pieces) pieces.append(py::make_tuple(p.item, p.offset, p.length, p.file_offset));
  for (const PlannedTask& t : plan.tasks) {
    tasks.append(py::make_tuple(t.shard, t.first, t.end, t.bytes, t.file_begin, t.file_end));
  }
  return py::make_tuple(pieces, tasks, plan.first_piece, plan.num_pieces);
}

py::tuple LayoutSlabsPy(const std::vector<uint64_t>& sizes, uint64_t pack_below, uint64_t slab_bytes, uint64_t align) {
  if (align < 1) Check(InvalidArgument("layout_slabs: align must be >= 1"));
  std::vector<SlabSlot> slots;
  std::vector<uint64_t> slabs = LayoutSlabs(sizes, pack_below, slab_bytes, align, &slots);
  py::list out;
  for (const SlabSlot& s : slots) {
    out.append(py::make_tuple(s.slab == SlabSlot::kOwnAllocation ? -1 : static_cast<int64_t>(s.slab), s.offset));
  }
  return py::make_tuple(slabs, out);
}

py::dict StatsDict(const StagingPoolStats& s) {
  py::dict d;
  d["capacity_bytes"] = s.capacity_bytes;
  d["buffer_bytes"] = s.buffer_bytes;
  d["allocated_bytes"] = s.allocated_bytes;
  d["lent"] = s.lent;
  d["allocations"] = s.allocations;
  d["acquisitions"] = s.acquisitions;
  d["waits"] = s.waits;
  return d;
}

// Borrows up to `count` buffers of ordinary memory with one quota of
// `max_buffers`, never waiting (an acquisition that would block gives no
// buffer), then releases them all in order. Returns ([buffer size or 0 per
// acquisition], stats while held, stats after release).
py::tuple StagingBorrow(int count, int max_buffers) {
  if (count < 0 || max_buffers < 1) Check(InvalidArgument("staging_borrow: count >= 0 and max_buffers >= 1"));
  StagingPool& pool = StagingPool::Instance();
  StagingQuota quota;
  quota.max_buffers = max_buffers;
  std::vector<StagingBuffer> held(static_cast<size_t>(count));
  std::vector<size_t> sizes;
  StagingPoolStats during, after;
  Status st;
  {
    py::gil_scoped_release release;
    for (StagingBuffer& b : held) {
      st = pool.Acquire(nullptr, 0, &quota, &b, [] { return true; });
      if (!st.ok()) break;
      sizes.push_back(b.data != nullptr ? b.size : 0);
    }
    during = pool.stats();
    for (StagingBuffer& b : held) {
      if (b.data != nullptr) pool.Release(&b, &quota);
    }
    after = pool.stats();
  }
  Check(st);
  return py::make_tuple(sizes, StatsDict(during), StatsDict(after));
}

py::bytes BuildTable(const std::vector<std::pair<py::bytes, py::bytes>>& entries) {
  std::string out;
  TableBuilder builder(&out);
  for (const auto& [key, value] : entries) Check(builder.Add(std::string(key), std::string(value)));
  builder.Finish();
  return py::bytes(out);
}

py::list ReadTable(const py::bytes& data, const std::string& name) {
  const std::string file(data);
  std::vector<std::pair<std::string, std::string>> entries;
  Check(ForEachTableEntry(file, name, [&](const std::string& key, const char* value, size_t n) {
    entries.emplace_back(key, std::string(value, n));
    return Status::Ok();
  }));
  py::list out;
  for (const auto& [key, value] : entries) out.append(py::make_tuple(py::bytes(key), py::bytes(value)));
  return out;
}

}  // namespace

void RegisterUnits(py::module_& m) {
  m.def("plan_tasks", &PlanTasksPy, py::arg("extents"), py::arg("num_items"), py::arg("task_bytes"),
        py::arg("piece_bytes") = 0, py::arg("max_pieces") = py::none(), py::arg("max_gap") = py::none(),
        "The task planner (PlanTasks) on [(item, shard, file_offset, size)]: (pieces [(item, offset,\n"
        "length, file_offset)], tasks [(shard, first, end, bytes, file_begin, file_end)], first_piece,\n"
        "num_pieces). max_pieces None: no limit; max_gap None: back-to-back ranges only.");
  m.def("layout_slabs", &LayoutSlabsPy, py::arg("sizes"), py::arg("pack_below"), py::arg("slab_bytes"),
        py::arg("align"), "The load plan's slab packing: (slab sizes, [(slab or -1 for its own allocation, offset)]).");
  m.def("staging_borrow", &StagingBorrow, py::arg("count"), py::arg("max_buffers"),
        "Borrows up to `count` staging buffers with one quota, never waiting, then releases them:\n"
        "([size, or 0 where the pool or quota had none], stats while held, stats after).");
  m.def("build_table", &BuildTable, py::arg("entries"),
        "A LevelDB-format table (as .index files are) of [(key, value)] bytes pairs, keys ascending.");
  m.def("read_table", &ReadTable, py::arg("data"), py::arg("name") = "table",
        "Every (key, value) of a table held in `data`, verified (DataLossError naming `name`).");
}

}  // namespace bindings
}  // namespace fastckpt
