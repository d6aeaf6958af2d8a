// The thread counts of execution.h for the front binary `twosed` (main.cpp), which links
// neither OpenBLAS nor LibTorch (twosed-torch gets these from src/linalg/linalg.cpp). What the
// front computes (the estimator on stored spectra, reports) runs on this one thread.
#include <algorithm>
#include <thread>

#include "twosed/execution.h"

namespace twosed {

int current_threads() {
  return 1;
}

int hardware_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace twosed
