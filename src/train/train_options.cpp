// Checks of TrainOptions (train.h), apart from the training itself (train.cpp, LibTorch): a
// study file's training options are checked where it is read (twosed_core).
#include <fmt/format.h>

#include <cmath>

#include "twosed/error.h"
#include "twosed/train/train.h"

namespace twosed {

void validate(const TrainOptions& o) {
  if (o.optimizer != "adam" && o.optimizer != "sgd")
    throw OptionError("TrainOptions.optimizer", fmt::format("must be adam or sgd, got '{}'", o.optimizer));
  if (!(std::isfinite(o.lr) && o.lr > 0))
    throw OptionError("TrainOptions.lr", fmt::format("must be a finite number > 0, got {}", o.lr));
  if (o.batch < 1) throw OptionError("TrainOptions.batch", fmt::format("must be an integer >= 1, got {}", o.batch));
  if (o.epochs < 0) throw OptionError("TrainOptions.epochs", fmt::format("must be an integer >= 0, got {}", o.epochs));
  if (!(std::isfinite(o.momentum) && o.momentum >= 0 && o.momentum < 1))
    throw OptionError("TrainOptions.momentum", fmt::format("must be in [0, 1), got {}", o.momentum));
  if (!(std::isfinite(o.weight_decay) && o.weight_decay >= 0))
    throw OptionError("TrainOptions.weight_decay", fmt::format("must be a finite number >= 0, got {}", o.weight_decay));
  for (size_t i = 0; i < o.initial_theta.size(); ++i)
    if (!std::isfinite(o.initial_theta[i]))
      throw OptionError("TrainOptions.initial_theta",
                        fmt::format("must hold finite values, got {} at index {}", o.initial_theta[i], i));
}

}  // namespace twosed
