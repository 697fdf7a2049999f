// MetricsText: writes metrics in the Prometheus text exposition format (version 0.0.4, what every
// Prometheus server and promtool read): for each metric family a `# HELP` and a `# TYPE` line,
// then its samples, `name{label="value",...} value`.
//
// The writer enforces what the format requires and a reader would reject otherwise: names match
// [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not starting with __), a family's
// samples follow its header and carry its name; label values and help text are escaped (backslash, double quote in values, line feed). A call
// that breaks a rule about names is a programming error (names are constants in tern's code),
// caught by an assertion in debug builds; values are never the caller's problem.
//
// Ownership: a plain value, one per scrape. Threads: one at a time.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace tern::common {

class MetricsText {
 public:
  enum class Type { kCounter, kGauge, kHistogram };
  using Label = std::pair<std::string_view, std::string_view>;

  // Starts the family `name`: its HELP and TYPE lines. A counter's name ends in _total
  // (Prometheus convention; asserted).
  void family(std::string_view name, Type type, std::string_view help);
  // One sample of the current family. REQUIRES: family() was called.
  void sample(std::initializer_list<Label> labels, double value);
  void sample(std::initializer_list<Label> labels, std::uint64_t value);
  void sample(std::initializer_list<Label> labels, std::int64_t value);
  // A family with one sample and no labels.
  template <typename T>
  void single(std::string_view name, Type type, std::string_view help, T value) {
    family(name, type, help);
    sample({}, value);
  }

  // A histogram family of one series without labels: HELP, TYPE, then `<name>_bucket{le="B"}`
  // for each bound in `boundsSeconds` (cumulative counts of `bucketCounts`, which holds one
  // count per bucket, the last for everything above the last bound), `le="+Inf"`, `<name>_sum`
  // and `<name>_count` (the sum of `bucketCounts`). REQUIRES: bucketCounts.size() ==
  // boundsSeconds.size() + 1, bounds increasing; the name does not end in _total.
  void histogram(std::string_view name, std::string_view help,
                 std::span<const double> boundsSeconds, std::span<const std::uint64_t> bucketCounts,
                 double sumSeconds);

  const std::string& text() const noexcept { return out_; }
  std::string take() noexcept { return std::move(out_); }

  static bool validName(std::string_view name) noexcept;
  static bool validLabelName(std::string_view name) noexcept;
  // The content type of text(), for the HTTP response.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  void startSample(std::initializer_list<Label> labels);

  std::string out_;
  std::string family_;
};

}  // namespace tern::common
