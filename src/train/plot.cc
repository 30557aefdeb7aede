#include "train/plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace logattn::train {

std::string loss_svg(const Series& train, const Series& val, const std::string& title) {
  constexpr double W = 720, H = 420, L = 60, R = 20, T = 40, B = 50;
  double x0 = 0, x1 = 1, y0 = INFINITY, y1 = -INFINITY;
  for (const auto* s : {&train, &val})
    for (const auto& [x, y] : *s) {
      if (!std::isfinite(y)) continue;
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  if (y1 - y0 < 1e-6) y1 = y0 + 1;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return T + (y1 - y) / (y1 - y0) * (H - T - B); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"24\" font-size=\"15\">{}</text>\n",
      W, H, L, title);
  // Axes and a few gridlines with labels.
  for (int i = 0; i <= 4; ++i) {
    const double y = y0 + (y1 - y0) * i / 4, x = x0 + (x1 - x0) * i / 4;
    s += fmt::format(
        "<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3f}</text>\n",
        L, py(y), W - R, py(y), L - 6, py(y) + 4, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.0f}</text>\n", px(x),
                     H - B + 18, x);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", (L + W - R) / 2,
                   H - 12);
  s += fmt::format(
      "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" "
      "text-anchor=\"middle\">loss (nats/token)</text>\n",
      (T + H - B) / 2, (T + H - B) / 2);
  auto line = [&](const Series& ser, const char* color, const char* name, double ly) {
    if (ser.empty()) return;
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"", color);
    for (const auto& [x, y] : ser)
      if (std::isfinite(y)) s += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    s += "\"/>\n";
    s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{} (last {:.4f})</text>\n", W - R - 200,
                     ly, color, name, ser.back().second);
  };
  line(train, "#1f77b4", "train", T + 14);
  line(val, "#d62728", "validation", T + 30);
  return s + "</svg>\n";
}

}  // namespace logattn::train
