// What reaches a worker from outside its event loop: the inbox (connections from the acceptors
// and from other workers, authentication verdicts, deliveries routed by other workers and the
// answers to their store fences) and the persistence thread's completions (--data-dir).
// Worker's own thread only, like the rest of Worker.
#include <unistd.h>

#include <memory>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "worker.hpp"

namespace tern::broker {

void Worker::drainInbox() {
  InboxItem items[kInboxBatch];
  std::int64_t drainedAt = 0;  // one clock read per drain that finds deliveries
  for (;;) {
    const std::size_t n = inbox_.popBulk(items, kInboxBatch);
    for (std::size_t k = 0; k < n; ++k) {
      InboxItem& item = items[k];
      switch (item.kind) {
        case InboxItem::Kind::kAccepted: {
          auto c = std::make_unique<Connection>();
          c->fd = item.fd;
          c->protocol = item.protocol;
          c->peer = item.peer;
          c->deadline = common::monotonicNanos() +
                        static_cast<std::int64_t>(config_.handshakeTimeoutSeconds * 1e9);
          if (item.tls) {
            // The handshake is part of the handshake timeout (a client that stops in the middle
            // of it is closed like one that never sends CONNECT).
            if (std::shared_ptr<const net::TlsContext> tls = context_.tlsContext()) {
              c->tls = std::make_unique<net::TlsSession>(*tls);
            }
            if (c->tls == nullptr || c->tls->failed()) {
              TERN_LOG_ERROR("cannot start TLS for a connection from {}: {}",
                             net::toString(c->peer), c->tls ? c->tls->error() : "no context");
              ::close(c->fd);
              context_.connections.release(c->peer, true);
              break;
            }
          }
          if (item.ws) {
            c->ws = std::make_unique<Connection::WebSocket>(wsMaxFrame());
          }
          attach(std::move(c));
          break;
        }
        case InboxItem::Kind::kHandover: {
          Connection* c = attach(std::unique_ptr<Connection>(item.connection));
          // The CONNECT/ATTACH that sent it here is still buffered (and maybe more after it).
          if (core_.reading) {
            const std::uint64_t framesBefore = framesHandled_;
            if (processInput(*c) == InputState::kGone) break;
            noteFrameProgress(*c, framesHandled_ != framesBefore);
          }
          // WebSocket: a close that arrived during the move (decodeDetached) is answered now.
          if (c->ws != nullptr && c->ws->stream.state() != protocol::WsStream::State::kOpen) {
            closeAfterFlush(*c);
          }
          break;
        }
        case InboxItem::Kind::kAuthVerdict: {
          auto* c = static_cast<Connection*>(loop_->user(item.socket));
          // The CONNECT still waits at the front of the input: handle it again, with the verdict.
          if (c == nullptr || !core_.authVerdict(*c, item.attempt, item.accepted)) break;
          if (throttled_ && !c->throttled) {  // handled when this worker reads again
            c->throttled = true;
            throttledList_.push_back(c);
          } else {
            resumeInput(*c);
          }
          break;
        }
        case InboxItem::Kind::kDeliveries:
          if (drainedAt == 0) drainedAt = common::monotonicNanos();
          core_.stats.inboxWait.observe(drainedAt - item.batch->postedAt);
          ++handledBatches_;
          {
            // The batch goes home inside receive(): what its fence needs is read first.
            const unsigned origin = item.batch->origin;
            const std::uint64_t fence = item.batch->fence;
            const std::uint64_t before = core_.store.lastTicket();
            const std::uint64_t remoteBefore = core_.fanout.remoteDeliveries();
            core_.fanout.receive(item.batch,
                                 [this](routing::SubscriberId id, const common::Message& m,
                                        SharedRoute route) { core_.deliverTo(id, m, route); });
            // A shared-subscription delivery handed on to a member on another worker: the
            // answer waits for that worker's writes too (this turn's fence).
            if (fence != 0) {
              core_.store.fenceArrived(
                  origin, fence, before,
                  core_.fanout.remoteDeliveries() != remoteBefore ? core_.store.turnFence() : 0);
            }
          }
          break;
        case InboxItem::Kind::kFence:
          core_.store.fencePassed(item.fence, item.accepted);
          break;
        case InboxItem::Kind::kResolved:
          mqtt_.releaseParked(*item.message);
          item.message->release();
          break;
      }
    }
    if (n < kInboxBatch) return;
  }
}

void Worker::pollStore() {
  if (!core_.store.enabled()) return;
  storeResumed_.clear();
  core_.store.poll(
      [this](unsigned origin, std::uint64_t fence, bool ok) {
        InboxItem item;
        item.kind = InboxItem::Kind::kFence;
        item.fence = fence;
        item.accepted = ok;
        context_.workers[origin]->post(std::move(item));
      },
      [this](const HeldAck& ack) {
        if (ack.resolves != nullptr) {  // also when the publisher's connection is gone
          mqtt_.publisherResolved(*ack.resolves, ack.resolvesRemote);
          ack.resolves->release();
        }
        auto* c = static_cast<Connection*>(loop_->user(ack.socket));
        if (c == nullptr || c->closed) return;
        if (c->heldAcks != 0) --c->heldAcks;
        core_.handler(c->protocol).onDurable(*c, ack);
        if (c->heldAcks == 0 && c->protocol == Protocol::kLine) storeResumed_.push_back(c->socket);
      },
      [this](net::SocketId socket) {
        auto* c = static_cast<Connection*>(loop_->user(socket));
        if (c == nullptr || c->closed) return;
        c->heldByStore = false;
        storeResumed_.push_back(socket);
      });
  // Input is handled after the store's books are settled (it may hold and submit again).
  for (const net::SocketId socket : storeResumed_) {
    if (auto* c = static_cast<Connection*>(loop_->user(socket)); c != nullptr && !c->closed) {
      resumeInput(*c);
    }
  }
}

}  // namespace tern::broker
