#include "tern/common/metrics_text.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace tern::common {
namespace {

TEST(MetricsText, FamilyHasHelpAndTypeBeforeItsSamples) {
  MetricsText m;
  m.family("tern_messages_dropped_total", MetricsText::Type::kCounter, "Deliveries not made");
  m.sample({{"reason", "queue_full"}}, std::uint64_t{3});
  m.sample({{"reason", "expired"}}, std::uint64_t{0});
  m.single("tern_workers", MetricsText::Type::kGauge, "Worker loops", std::int64_t{2});
  EXPECT_EQ(m.text(),
            "# HELP tern_messages_dropped_total Deliveries not made\n"
            "# TYPE tern_messages_dropped_total counter\n"
            "tern_messages_dropped_total{reason=\"queue_full\"} 3\n"
            "tern_messages_dropped_total{reason=\"expired\"} 0\n"
            "# HELP tern_workers Worker loops\n"
            "# TYPE tern_workers gauge\n"
            "tern_workers 2\n");
}

// The example of the exposition format's documentation: backslash, double quote and line feed
// in a label value are escaped; HELP escapes backslash and line feed only.
TEST(MetricsText, EscapesLabelValuesAndHelpAsTheFormatSays) {
  MetricsText m;
  m.family("msdos_file_access_time_seconds", MetricsText::Type::kGauge,
           "A \"quoted\" path C:\\DIR\nsecond line");
  m.sample({{"path", "C:\\DIR\\FILE.TXT"}, {"error", "Cannot find file:\n\"FILE.TXT\""}},
           1.458255915e9);
  EXPECT_EQ(m.text(),
            "# HELP msdos_file_access_time_seconds A \"quoted\" path C:\\\\DIR\\nsecond line\n"
            "# TYPE msdos_file_access_time_seconds gauge\n"
            "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\","
            "error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1458255915\n");
}

TEST(MetricsText, ValuesInTheFormsTheFormatReads) {
  MetricsText m;
  m.family("g", MetricsText::Type::kGauge, "h");
  m.sample({}, 0.25);
  m.sample({}, std::numeric_limits<double>::infinity());
  m.sample({}, -std::numeric_limits<double>::infinity());
  m.sample({}, std::nan(""));
  m.sample({}, std::int64_t{-7});
  m.sample({}, std::uint64_t{18446744073709551615u});
  m.sample({}, 1e-9);
  EXPECT_EQ(m.text(),
            "# HELP g h\n# TYPE g gauge\n"
            "g 0.25\ng +Inf\ng -Inf\ng NaN\ng -7\ng 18446744073709551615\ng 1e-09\n");
}

TEST(MetricsText, AHistogramHasCumulativeBucketsThenSumAndCount) {
  MetricsText m;
  const double bounds[] = {0.001, 0.5};
  const std::uint64_t counts[] = {2, 0, 3};  // per bucket; the last is above 0.5
  m.histogram("lat_seconds", "h", bounds, counts, 4.25);
  EXPECT_EQ(m.text(),
            "# HELP lat_seconds h\n# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{le=\"0.001\"} 2\nlat_seconds_bucket{le=\"0.5\"} 2\n"
            "lat_seconds_bucket{le=\"+Inf\"} 5\nlat_seconds_sum 4.25\nlat_seconds_count 5\n");
}

TEST(MetricsText, NamesFollowTheFormatsRules) {
  EXPECT_TRUE(MetricsText::validName("tern_bytes_sent_total"));
  EXPECT_TRUE(MetricsText::validName(":recorded:rule"));
  EXPECT_TRUE(MetricsText::validName("_x9"));
  EXPECT_FALSE(MetricsText::validName(""));
  EXPECT_FALSE(MetricsText::validName("9lives"));
  EXPECT_FALSE(MetricsText::validName("tern-bytes"));
  EXPECT_FALSE(MetricsText::validName("tern bytes"));
  EXPECT_TRUE(MetricsText::validLabelName("worker"));
  EXPECT_FALSE(MetricsText::validLabelName("__name__"));  // reserved for Prometheus
  EXPECT_FALSE(MetricsText::validLabelName("a:b"));       // colons are for metric names only
  EXPECT_FALSE(MetricsText::validLabelName("1st"));
}

}  // namespace
}  // namespace tern::common
