// JobRunner: runs the jobs (job.hpp) of one worker's connections, a bounded slice per connection
// per loop turn, so that no request holds the worker for long.
//
// A slice stops at its budget (the loop then does not sleep: runnable()) or when the job's output
// is full (the job then waits: for room, which the socket announces once drained and the worker
// passes to wakeIfRoom(), or for an MQTT acknowledgement, which calls wake()). A line request socket handles its next request once
// its jobs are done (its input is held meanwhile: Connection::heldByJobs); an MQTT connection goes
// on reading until it has kMaxJobs, since its jobs may wait for acknowledgements behind in its
// input.
//
// Ownership: part of the worker's WorkerCore; the worker's thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "connection.hpp"
#include "job.hpp"

namespace tern::broker {

class WorkerCore;

class JobRunner {
 public:
  // Work per connection per turn (RetainedCursor units: a node entered, a child level copied, a
  // message offered): tens of microseconds of replay.
  static constexpr std::size_t kSliceUnits = 256;
  // Jobs an MQTT connection may have before its input waits for them.
  static constexpr std::size_t kMaxJobs = 16;

  explicit JobRunner(WorkerCore& core) : core_(core) {}

  // Queues `job` on `c` (bound) and runs its first slice at once (most replays are small and end
  // there). Called while `c`'s input is being handled: if the job does not finish now, `c` is held
  // and the caller's frame loop stops.
  void start(Connection& c, Job&& job);
  // One slice for every connection with jobs.
  void runAll();
  // Some output drained: a job waiting for room that now has it runs next turn.
  void wakeIfRoom() noexcept;
  // An acknowledgement arrived on `c`: its job may go on.
  void wake(const Connection& c) noexcept {
    if (c.jobs) runnable_ = true;
  }
  // `c` closes: its jobs end.
  void drop(Connection& c);
  // Whether the loop should not sleep this turn.
  bool runnable() const noexcept { return runnable_; }

 private:
  // Runs c's jobs for up to kSliceUnits; true when none is left (c.jobs is then null).
  bool runSlice(Connection& c);
  // c's last job is done: lets its held input be handled again.
  void finish(Connection& c);

  WorkerCore& core_;
  std::vector<Connection*> busy_;  // connections with jobs
  std::vector<Connection*> scratch_;
  bool runnable_ = false;
};

}  // namespace tern::broker
