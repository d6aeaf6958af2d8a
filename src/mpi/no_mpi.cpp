// A build without MPI (TWOSED_WITH_MPI off): one process, rank 0 of 1.
#include <unistd.h>

#include <cstdio>

#include "mpi/ranks.h"

namespace twosed::mpi {

void init(int*, char***) {
  if (launched())
    std::fprintf(stderr, "twosed: warning: started by an MPI launcher, but built without MPI: every rank runs alone\n");
}
int rank() {
  return 0;
}
int size() {
  return 1;
}
bool is_worker() {
  return false;
}
std::string host() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}
const SampleExecutor* executor() {
  return nullptr;
}
int serve(const ExecutionContext&) {
  return 0;
}
std::string stats() {
  return "";
}
int finish(int code) {
  return code;
}

}  // namespace twosed::mpi
