#include "tern/common/metrics_text.hpp"

#include <fmt/format.h>

#include <cassert>
#include <cmath>
#include <iterator>

namespace tern::common {
namespace {

bool nameStart(char ch) noexcept {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}
bool nameChar(char ch) noexcept {
  return nameStart(ch) || (ch >= '0' && ch <= '9');
}

const char* typeName(MetricsText::Type type) noexcept {
  switch (type) {
    case MetricsText::Type::kCounter:
      return "counter";
    case MetricsText::Type::kGauge:
      return "gauge";
    case MetricsText::Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text escapes backslash and line feed; label values also the double quote.
void appendEscaped(std::string& out, std::string_view text, bool quote) {
  for (const char ch : text) {
    if (ch == '\\') {
      out += "\\\\";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '"' && quote) {
      out += "\\\"";
    } else {
      out.push_back(ch);
    }
  }
}

}  // namespace

bool MetricsText::validName(std::string_view name) noexcept {
  if (name.empty() || !(nameStart(name[0]) || name[0] == ':')) return false;
  for (const char ch : name)
    if (!nameChar(ch) && ch != ':') return false;
  return true;
}

bool MetricsText::validLabelName(std::string_view name) noexcept {
  if (name.empty() || !nameStart(name[0]) || name.starts_with("__")) return false;
  for (const char ch : name)
    if (!nameChar(ch)) return false;
  return true;
}

void MetricsText::family(std::string_view name, Type type, std::string_view help) {
  assert(validName(name));
  assert(type != Type::kCounter || name.ends_with("_total"));
  family_.assign(name);
  out_ += "# HELP ";
  out_ += name;
  out_.push_back(' ');
  appendEscaped(out_, help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_.push_back(' ');
  out_ += typeName(type);
  out_.push_back('\n');
}

void MetricsText::startSample(std::initializer_list<Label> labels) {
  assert(!family_.empty());
  out_ += family_;
  if (labels.size() == 0) {
    out_.push_back(' ');
    return;
  }
  out_.push_back('{');
  bool first = true;
  for (const Label& label : labels) {
    assert(validLabelName(label.first));
    if (!first) out_.push_back(',');
    first = false;
    out_ += label.first;
    out_ += "=\"";
    appendEscaped(out_, label.second, true);
    out_.push_back('"');
  }
  out_ += "} ";
}

void MetricsText::sample(std::initializer_list<Label> labels, double value) {
  startSample(labels);
  if (std::isnan(value)) {
    out_ += "NaN";
  } else if (std::isinf(value)) {
    out_ += value > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out_), "{}", value);  // shortest form that reads back
  }
  out_.push_back('\n');
}

void MetricsText::histogram(std::string_view name, std::string_view help,
                            std::span<const double> boundsSeconds,
                            std::span<const std::uint64_t> bucketCounts, double sumSeconds) {
  assert(bucketCounts.size() == boundsSeconds.size() + 1);
  assert(!name.ends_with("_total"));
  family(name, Type::kHistogram, help);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bucketCounts.size(); ++i) {
    cumulative += bucketCounts[i];
    if (i < boundsSeconds.size()) {
      fmt::format_to(std::back_inserter(out_), "{}_bucket{{le=\"{}\"}} {}\n", name,
                     boundsSeconds[i], cumulative);
    } else {
      fmt::format_to(std::back_inserter(out_), "{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
    }
  }
  fmt::format_to(std::back_inserter(out_), "{}_sum {}\n{}_count {}\n", name, sumSeconds, name,
                 cumulative);
}

void MetricsText::sample(std::initializer_list<Label> labels, std::uint64_t value) {
  startSample(labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void MetricsText::sample(std::initializer_list<Label> labels, std::int64_t value) {
  startSample(labels);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

}  // namespace tern::common
