// Figures of 2sED results (curves with standard-error bands, stacked bars) written with gnuplot.
//
// The module only describes what to draw (panels of series or stacked bars) and hands a
// generated gnuplot script to the gnuplot program on stdin; it needs no display, no LibTorch and
// no temporary data files. Output is PNG (pngcairo) or SVG, picked from the file name.
//
// Example:
//   LinePanel p;
//   p.log_x = true;
//   p.series.push_back({"zeta = 0", curve.eps, curve.value, curve.std_error});
//   Figure fig;
//   fig.panels.push_back(p);
//   write_figure(fig, "dims.png");
#pragma once

#include <string>
#include <variant>
#include <vector>

namespace twosed {

/// A line, optionally with a shaded +-y_err band (y_err empty: no band). Non-finite values, and
/// non-positive ones on a log axis, are skipped and leave a gap.
struct PlotSeries {
  std::string label;
  std::vector<double> x, y, y_err;
};

/// A panel of line (or scatter) series.
struct LinePanel {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  bool points = false;  ///< draw markers only (scatter) instead of lines
  std::vector<PlotSeries> series;
};

/// One layer of a stacked bar chart: values[c] is its height in category c.
struct BarStack {
  std::string label;
  std::vector<double> values;
};

/// Stacked bars: one bar per category, each bar stacked from stacks[s].values[category].
struct StackedBarPanel {
  std::string title, x_label, y_label;
  std::vector<std::string> categories;
  std::vector<BarStack> stacks;
};

/// A row of 1..4 panels side by side.
struct Figure {
  std::string title;
  std::vector<std::variant<LinePanel, StackedBarPanel>> panels;
  int panel_width = 640, height = 480;  ///< pixels per panel (png); svg uses the same size
  std::string gnuplot = "gnuplot";      ///< the program to run (looked up in PATH)
};

/// The gnuplot script for `fig` writing to `path` (format from the extension). Data go inline as
/// gnuplot 5 datablocks, so no temporary files. Throws UsageError like write_figure.
std::string gnuplot_script(const Figure& fig, const std::string& path);

/// Writes the figure to `path` (.png or .svg, case-insensitive), through a temporary file next
/// to it that is renamed on success. Throws UsageError for another extension, for 0 or more than
/// 4 panels, a size <= 0, or series (bar stacks) whose lengths differ from x (the categories);
/// throws DataError when gnuplot cannot be run, exits non-zero, or produces no file.
void write_figure(const Figure& fig, const std::string& path);

}  // namespace twosed
