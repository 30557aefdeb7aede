// A small SVG line chart of training and validation loss against the step.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace logattn::train {

using Series = std::vector<std::pair<double, double>>;  // (step, loss)

std::string loss_svg(const Series& train, const Series& val, const std::string& title);

}  // namespace logattn::train
