#include "job_runner.hpp"

#include <algorithm>

#include "worker_core.hpp"

namespace tern::broker {

void JobRunner::start(Connection& c, Job&& job) {
  if (!c.jobs) {
    c.jobs = std::make_unique<JobQueue>();
    busy_.push_back(&c);
  }
  if (job.kind == Job::Kind::kList) {
    core_.io.output(c).append("LIST@{");
    job.listOpened = true;
    core_.io.send(c);
  }
  c.jobs->push_back(std::move(job));
  c.heldByJobs = c.protocol == Protocol::kLine || c.jobs->size() >= kMaxJobs;
  if (runSlice(c)) {
    // Done at once: the caller's frame loop simply goes on.
    busy_.erase(std::remove(busy_.begin(), busy_.end(), &c), busy_.end());
    c.heldByJobs = false;
  }
}

void JobRunner::runAll() {
  runnable_ = false;
  if (busy_.empty()) return;
  scratch_.swap(busy_);
  busy_.clear();
  for (Connection* c : scratch_) {
    if (c->closed || !c->jobs) continue;
    if (c->closing || c->session == nullptr) {
      drop(*c);
      continue;
    }
    busy_.push_back(c);
    if (runSlice(*c)) finish(*c);
  }
  scratch_.clear();
}

bool JobRunner::runSlice(Connection& c) {
  std::size_t budget = kSliceUnits;
  while (!c.jobs->empty() && budget > 0) {
    Job& job = c.jobs->front();
    bool refused = false;
    const bool done =
        job.cursor.resume(core_.context.retained, budget, [&](const common::Message& m) {
          job.waitingFor = Job::Wait::kNothing;
          refused = !core_.handler(c.protocol).takeForJob(c, job, m);
          return !refused;
        });
    const std::size_t used = job.cursor.lastSlice().units;
    budget = used >= budget ? 0 : budget - used;
    const std::size_t held = job.cursor.memoryBytes();
    core_.memory.bytes += static_cast<std::int64_t>(held) - static_cast<std::int64_t>(job.charged);
    job.charged = held;
    if (!done) {
      // Out of budget: come back next turn without sleeping. Refused: the output is full, and
      // its draining (or an acknowledgement) wakes the loop.
      if (!refused) runnable_ = true;
      return false;
    }
    if (job.kind == Job::Kind::kList) {
      core_.io.output(c).append("}\n");
      core_.io.send(c);
    }
    core_.memory.bytes -= static_cast<std::int64_t>(job.charged);
    c.jobs->pop_front();
  }
  if (!c.jobs->empty()) {
    runnable_ = true;
    return false;
  }
  c.jobs.reset();  // an idle connection holds no queue (a deque allocates ~600 bytes)
  return true;
}

void JobRunner::wakeIfRoom() noexcept {
  // Output that a flush emptied does not announce itself: jobs that wait for room must look.
  const std::size_t room = core_.config.maxQueuedBytes / 2;
  for (Connection* c : busy_) {
    if (runnable_) return;
    if (c->closed || !c->jobs || c->session == nullptr) continue;
    const Job& job = c->jobs->front();
    if (job.waitingFor != Job::Wait::kOutput) continue;
    const std::size_t waiting = job.kind == Job::Kind::kLineReplay
                                    ? core_.pushTargetSize(*c->session)
                                    : core_.io.unsent(*c);
    if (waiting <= room) runnable_ = true;
  }
}

void JobRunner::finish(Connection& c) {
  busy_.erase(std::remove(busy_.begin(), busy_.end(), &c), busy_.end());
  const bool wasHeld = c.heldByJobs;
  c.heldByJobs = false;
  if (wasHeld && !c.closing && !c.closed) core_.io.releaseInput(c);
}

void JobRunner::drop(Connection& c) {
  for (const Job& job : *c.jobs)
    core_.memory.bytes -= static_cast<std::int64_t>(job.charged);
  c.jobs.reset();
  c.heldByJobs = false;
  busy_.erase(std::remove(busy_.begin(), busy_.end(), &c), busy_.end());
}

}  // namespace tern::broker
