// Job: work that one request started and that goes on over several loop turns, one bounded slice
// per turn, so that no request holds its worker for long (issue 9: one SUBSCRIBE '#' once froze a
// worker for 14.6 s). Two kinds: the retained messages a SUBSCRIBE sends (line protocol and MQTT),
// and a LIST reply, streamed as its socket drains.
//
// Ownership: a connection owns the jobs its requests started (Connection::jobs), oldest first,
// and they end with it; the worker that owns the connection runs them (Worker::runJobs), and only
// it. A job holds no pointer into the retained store between slices (routing::RetainedCursor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string_view>

#include "tern/routing/retained_cursor.hpp"

namespace tern::broker {

struct Job {
  enum class Kind : std::uint8_t {
    kLineReplay,  // RETAINED frames to the session's push socket (or its pending queue)
    kMqttReplay,  // retained PUBLISHes (retain flag set) at min(message QoS, `qos`)
    kList,        // one LIST@{...} frame on the requesting socket
  };

  Job(Kind k, std::string_view filter, routing::RetainedCursor::Scope scope, std::uint8_t q = 0)
      : kind(k), cursor(filter, scope), qos(q) {}

  Kind kind;
  routing::RetainedCursor cursor;
  std::uint8_t qos;          // kMqttReplay: the QoS granted for the filter
  bool listOpened = false;   // kList: "LIST@{" written
  bool listMembers = false;  // kList: at least one member written (the next needs a comma)
  std::size_t charged = 0;   // bytes of cursor memory charged to the worker's account
  // What the last refused offer waits for: room in its output (checked after every flush) or an
  // acknowledgement from the MQTT client (which wakes the loop itself).
  enum class Wait : std::uint8_t { kNothing, kOutput, kAcknowledgement };
  Wait waitingFor = Wait::kNothing;
};

using JobQueue = std::deque<Job>;

}  // namespace tern::broker
