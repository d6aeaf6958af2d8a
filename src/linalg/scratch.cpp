#include "linalg/scratch.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace twosed::linalg {

// One allocation. A tensor handed out holds a reference to its block (in its deleter), so a
// block outlives the pool while a tensor uses it; `in_use` is cleared when that tensor's storage
// goes, on whichever thread that happens.
struct ScratchPool::Block {
  explicit Block(int64_t n) : bytes(n), data(std::aligned_alloc(64, static_cast<size_t>((n + 63) / 64 * 64))) {
    if (!data) throw std::bad_alloc();
  }
  ~Block() { std::free(data); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  const int64_t bytes;
  void* const data;
  std::atomic<bool> in_use{false};
};

ScratchPool::ScratchPool(int64_t min_bytes) : min_bytes_(min_bytes) {}
ScratchPool::~ScratchPool() = default;

int64_t ScratchPool::bytes_held() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b->bytes;
  return n;
}

namespace {
int64_t bytes_of(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t bytes = static_cast<int64_t>(c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  for (const int64_t s : sizes) bytes *= s;
  return bytes;
}
}  // namespace

torch::Tensor ScratchPool::empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const int64_t bytes = bytes_of(sizes, options);
  std::shared_ptr<Block> block;
  for (const auto& b : blocks_)
    if (b->bytes == bytes && !b->in_use.load()) {
      block = b;
      ++reuses_;
      break;
    }
  if (!block) {
    std::vector<std::shared_ptr<Block>> kept;
    for (auto& b : blocks_)
      if (b->in_use.load()) kept.push_back(std::move(b));
    blocks_ = std::move(kept);
    block = std::make_shared<Block>(bytes);
    blocks_.push_back(block);
  }
  block->in_use = true;
  return torch::from_blob(
      block->data, sizes, [block](void*) { block->in_use = false; }, options.device(torch::kCPU));
}

namespace {
thread_local ScratchPool* current_pool = nullptr;
}

ScratchScope::ScratchScope(ScratchPool& pool) : previous_(current_pool) {
  current_pool = &pool;
}

ScratchScope::~ScratchScope() {
  current_pool = previous_;
}

torch::Tensor scratch_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (current_pool && options.device().is_cpu() && bytes_of(sizes, options) >= current_pool->min_bytes())
    return current_pool->empty(sizes, options);
  return torch::empty(sizes, options);
}

}  // namespace twosed::linalg
