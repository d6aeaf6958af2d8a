// Tests of the gnuplot figures: the script text, real PNG/SVG output, and every error path.
// Tests that run gnuplot are skipped where /usr/bin/gnuplot is absent.
#include "twosed/report/plot.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "twosed/error.h"

namespace twosed {
namespace {

namespace fs = std::filesystem;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

bool have_gnuplot() {
  return access("/usr/bin/gnuplot", X_OK) == 0;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A log-x line panel with two banded series (one with a NaN, a non-positive x and an infinite
// error) and a stacked bar panel; the labels carry a quote and an underscore.
Figure sample_figure() {
  LinePanel lines;
  lines.title = "d_zeta(eps)";
  lines.x_label = "eps";
  lines.y_label = "dimension";
  lines.log_x = true;
  lines.series.push_back({"zeta = 0", {1e-6, 1e-4, 1e-2, 1e-1}, {3.0, 2.5, 2.0, 1.0}, {0.1, 0.2, 0.1, 0.05}});
  lines.series.push_back(
      {"it's zeta_0.5", {0.0, 1e-5, 1e-3, 1e-2, 1e-1}, {2.0, 1.9, kNaN, 1.5, 1.2}, {0.1, 0.1, 0.1, kInf, 0.1}});
  StackedBarPanel bars;
  bars.title = "time per phase";
  bars.y_label = "seconds";
  bars.categories = {"mlp", "cnn", "big net"};
  bars.stacks = {{"jacobian", {1.0, 2.0, 3.0}}, {"eigen solve", {0.5, kNaN, 1.5}}};
  Figure fig;
  fig.title = "twosed test figure";
  fig.panels = {lines, bars};
  return fig;
}

class PlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("twosed_test_plot_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Files left in dir_ besides `keep`: a failed or successful run must leave no temporary.
  int stray_files(const std::string& keep = "") {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) n += e.path().filename() != keep;
    return n;
  }
  fs::path dir_;
};

TEST(PlotScript, HasDatablocksAndNoNonFiniteNumbers) {
  const std::string s = gnuplot_script(sample_figure(), "out dir/it's.png");
  EXPECT_NE(s.find("set terminal pngcairo size 1280,480 enhanced font 'Sans,10'"), std::string::npos);
  EXPECT_NE(s.find("set output \"out dir/it's.png\""), std::string::npos);
  EXPECT_NE(s.find("$D0 << EOD\n"), std::string::npos);
  EXPECT_NE(s.find("\nEOD\n"), std::string::npos);
  EXPECT_NE(s.find("set multiplot layout 1,2 title 'twosed test figure'"), std::string::npos);
  EXPECT_NE(s.find("title \"it's zeta_0.5\" noenhanced"), std::string::npos);
  EXPECT_NE(s.find("set logscale x"), std::string::npos);
  EXPECT_EQ(s.find("set logscale y"), std::string::npos);
  EXPECT_NE(s.find("filledcurves"), std::string::npos);
  EXPECT_NE(s.find("fs transparent solid 0.25"), std::string::npos);
  EXPECT_NE(s.find("set style histogram rowstacked"), std::string::npos);
  EXPECT_NE(s.find("set xtics ('mlp' 0, 'cnn' 1, 'big net' 2)"), std::string::npos);
  EXPECT_NE(s.find("unset multiplot\nunset output\n"), std::string::npos);
  for (const char* bad : {"nan", "NaN", "inf", "Inf"}) EXPECT_EQ(s.find(bad), std::string::npos) << bad;
  // Full precision; x = 0 (log axis) and the NaN y are skipped, leaving a blank line (a gap).
  EXPECT_NE(s.find("1.0000000000000001e-05 1.8999999999999999\n\n0.01 1.5\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("\n0 2\n"), std::string::npos);

  const std::string svg = gnuplot_script(sample_figure(), "x.SVG");
  EXPECT_NE(svg.find("set terminal svg size 1280,480 dynamic enhanced font 'Sans,10'"), std::string::npos);
}

TEST(PlotScript, LabelsLoseNewlines) {
  Figure fig;
  LinePanel p;
  p.series.push_back({"two\nlines", {1, 2}, {1, 2}, {}});
  fig.panels = {p};
  const std::string s = gnuplot_script(fig, "a.png");
  EXPECT_NE(s.find("title 'twolines' noenhanced"), std::string::npos);
  EXPECT_EQ(s.find("filledcurves"), std::string::npos);  // no y_err: no band
}

TEST_F(PlotTest, WritesPng) {
  if (!have_gnuplot()) GTEST_SKIP() << "/usr/bin/gnuplot not installed";
  const fs::path out = dir_ / "fig with space.PNG";
  ASSERT_NO_THROW(write_figure(sample_figure(), out.string()));
  const std::string png = read_all(out);
  EXPECT_GT(png.size(), 1024u);
  EXPECT_EQ(png.substr(0, 4), "\x89PNG");
  EXPECT_EQ(stray_files(out.filename().string()), 0);
}

// gnuplot's scanner rejects two '' pairs in a row inside single quotes ('q''''2.png'), so such
// names and titles must still draw: file "q''2.png", titles with quotes, a backslash and '"'.
TEST_F(PlotTest, QuotesInFileNamesAndTitles) {
  if (!have_gnuplot()) GTEST_SKIP() << "/usr/bin/gnuplot not installed";
  Figure fig = sample_figure();
  fig.title = "study it''s \"quoted\" \\ back";
  const fs::path out = dir_ / "q''2.png";
  const std::string s = gnuplot_script(fig, out.string());
  EXPECT_NE(s.find("title \"study it''s \\\"quoted\\\" \\\\ back\""), std::string::npos) << s;
  ASSERT_NO_THROW(write_figure(fig, out.string()));
  EXPECT_EQ(read_all(out).substr(0, 4), "\x89PNG");
  EXPECT_EQ(stray_files(out.filename().string()), 0);
}

TEST_F(PlotTest, WritesSvgWithLabels) {
  if (!have_gnuplot()) GTEST_SKIP() << "/usr/bin/gnuplot not installed";
  const fs::path out = dir_ / "fig.svg";
  ASSERT_NO_THROW(write_figure(sample_figure(), out.string()));
  const std::string svg = read_all(out);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  for (const char* label :
       {"zeta = 0", "it's zeta_0.5", "jacobian", "eigen solve", "big net", "d_zeta(eps)", "twosed test figure"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  EXPECT_EQ(stray_files("fig.svg"), 0);
}

TEST_F(PlotTest, EmptyPanelsStillDraw) {
  if (!have_gnuplot()) GTEST_SKIP() << "/usr/bin/gnuplot not installed";
  Figure fig;
  LinePanel all_nan;
  all_nan.log_y = true;
  all_nan.series.push_back({"nothing", {1, 2}, {kNaN, -1.0}, {}});
  fig.panels = {all_nan, StackedBarPanel{}};
  EXPECT_NO_THROW(write_figure(fig, (dir_ / "empty.png").string()));
}

TEST(PlotErrors, BadInputIsUsageError) {
  Figure fig = sample_figure();
  EXPECT_THROW(write_figure(fig, "x.pdf"), UsageError);
  EXPECT_THROW(write_figure(fig, "png"), UsageError);
  EXPECT_THROW(write_figure(fig, "dir.png/x"), UsageError);
  try {
    gnuplot_script(fig, "x.pdf");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "figure file 'x.pdf': expected a .png or .svg file name");
  }
  Figure none;
  EXPECT_THROW(write_figure(none, "x.png"), UsageError);
  Figure five = sample_figure();
  five.panels.resize(5, five.panels[0]);
  EXPECT_THROW(write_figure(five, "x.png"), UsageError);
  Figure mismatched = sample_figure();
  std::get<LinePanel>(mismatched.panels[0]).series[0].y.pop_back();
  EXPECT_THROW(write_figure(mismatched, "x.png"), UsageError);
  Figure bad_err = sample_figure();
  std::get<LinePanel>(bad_err.panels[0]).series[0].y_err.push_back(1.0);
  EXPECT_THROW(gnuplot_script(bad_err, "x.png"), UsageError);
  Figure bad_bars = sample_figure();
  std::get<StackedBarPanel>(bad_bars.panels[1]).stacks[0].values.pop_back();
  EXPECT_THROW(gnuplot_script(bad_bars, "x.png"), UsageError);
}

TEST_F(PlotTest, MissingGnuplotIsDataError) {
  Figure fig = sample_figure();
  fig.gnuplot = "/nonexistent/gnuplot";
  const fs::path out = dir_ / "fig.png";
  try {
    write_figure(fig, out.string());
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot run '/nonexistent/gnuplot'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("install gnuplot-nox"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(stray_files(), 0);
}

TEST_F(PlotTest, FailingGnuplotIsDataErrorAndKeepsOldFile) {
  Figure fig = sample_figure();
  fig.gnuplot = "/bin/false";
  const fs::path out = dir_ / "fig.png";
  std::ofstream(out) << "old";
  EXPECT_THROW(write_figure(fig, out.string()), DataError);
  EXPECT_EQ(read_all(out), "old");
  EXPECT_EQ(stray_files("fig.png"), 0);
}

TEST_F(PlotTest, GnuplotErrorMessageIsReported) {
  if (!have_gnuplot()) GTEST_SKIP() << "/usr/bin/gnuplot not installed";
  // A directory that does not exist: gnuplot cannot open its output and says so.
  try {
    write_figure(sample_figure(), (dir_ / "no such dir" / "fig.png").string());
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open file"), std::string::npos) << e.what();
  }
  EXPECT_EQ(stray_files(), 0);
}

}  // namespace
}  // namespace twosed
