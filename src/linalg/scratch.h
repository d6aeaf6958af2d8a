// Internal: large temporaries reused from one parameter sample to the next.
//
// A sample of a wide model allocates the same few large tensors every time (the backprop rows
// of a 16,384-unit layer are 118 MB). Blocks that large bypass malloc's heap (they are mmap'd
// and unmapped on free), so each fresh one costs its page faults and the kernel's zeroing
// again: ~35 ms per sample for those rows, more than the product that fills them. A
// ScratchPool keeps such blocks between samples; a ScratchScope makes one pool this thread's
// for its lifetime, and scratch_empty() draws from it. Without a scope, or for small tensors,
// scratch_empty() is torch::empty.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace twosed::linalg {

class ScratchPool {
 public:
  /// Tensors of at least `min_bytes` come from the pool (malloc keeps smaller blocks itself).
  explicit ScratchPool(int64_t min_bytes = int64_t{16} << 20);
  ~ScratchPool();
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;

  /// An uninitialised contiguous CPU tensor: a free block of exactly its size if the pool has
  /// one, else a new block. On a miss the pool first releases its free blocks, so it never
  /// holds more than the blocks alive together since then (no more than the samples need).
  torch::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options);

  int64_t min_bytes() const { return min_bytes_; }
  /// Bytes held (free and in use), and how many requests a free block served.
  int64_t bytes_held() const;
  int64_t reuses() const { return reuses_; }

 private:
  struct Block;
  int64_t min_bytes_;
  int64_t reuses_ = 0;
  std::vector<std::shared_ptr<Block>> blocks_;
};

/// Makes `pool` this thread's scratch pool until the scope ends (scopes nest).
class ScratchScope {
 public:
  explicit ScratchScope(ScratchPool& pool);
  ~ScratchScope();
  ScratchScope(const ScratchScope&) = delete;
  ScratchScope& operator=(const ScratchScope&) = delete;

 private:
  ScratchPool* previous_;
};

/// torch::empty(sizes, options), from this thread's pool when there is one and the tensor is
/// large enough (CPU tensors only).
torch::Tensor scratch_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace twosed::linalg
