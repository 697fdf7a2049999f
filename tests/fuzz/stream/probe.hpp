// Probe: after every case, does the broker still serve a fresh client of each protocol?
//
// The line probe does a whole session on two new sockets: CONNECT@probe-... (CONNACK with a
// token), ATTACH@<token>@push (ATTACHACK@push), SUBSCRIBE@probe/<unique> (SUBACK),
// PUBLISH@probe/<unique>@x (PUBACK), and the push MESSAGE@probe/<unique>@x. The MQTT probe
// connects (CONNACK 0), subscribes to probe/m<unique> at QoS 1 (SUBACK granting 1), publishes
// QoS 1 there and expects its PUBACK and the PUBLISH back. Each probe must finish within one
// deadline. When the broker has TLS listeners, one more client goes over TLS (handshake
// included in its deadline), alternating: odd probes a line session whose two sockets are TLS
// (no client certificate), even ones an MQTT client with a client certificate. When the broker
// has WebSocket listeners, one more MQTT client (the same exchange) goes over WebSockets:
// upgrade request, then its packets in masked binary frames and the broker's decoded from its
// frames; odd probes over mqtt+ws, even ones over mqtt+wss (TLS without a client certificate,
// handshake and upgrade included in its deadline), homed on worker (n / 2) % workers.
//
// The probe's client ids are chosen by their FNV-1a hash (the broker's home-worker rule,
// docs/architecture.md): there is one line session homed on each worker, so a worker that hangs
// or is still busy with a case fails the probe right after that case, and the MQTT client is
// homed on worker n % workers for probe n. If the broker changes that rule the probe still
// works; it just samples the workers less evenly.
//
// Single-threaded.
#pragma once

#include <cstdint>
#include <string>

#include "executor.hpp"
#include "socket_io.hpp"

namespace tern::fuzz {

class Probe {
 public:
  Probe(Endpoints endpoints, unsigned workers, Millis deadline) noexcept
      : endpoints_(std::move(endpoints)),
        workers_(workers == 0 ? 1 : workers),
        deadline_(deadline) {}

  // Runs both probes. Empty on success, else what failed ("line probe: PUBLISH: got '...'").
  std::string check();

 private:
  std::string checkLine(const std::string& unique, const std::string& clientId, bool tls);
  // `ws`: over the WebSocket port (mqtt+ws, or mqtt+wss with `tls`).
  std::string checkMqtt(const std::string& unique, const std::string& clientId, bool tls,
                        bool ws = false);
  // A connected stream (TLS: handshake done; WebSocket: upgrade request sent), or an invalid
  // one with `why` set.
  ClientStream connect(bool line, bool tls, bool ws, Clock::time_point deadline, std::string& why);
  // A client id "<prefix>-<n>-<k>" homed on worker `home`.
  std::string homedId(const std::string& prefix, unsigned home) const;

  Endpoints endpoints_;
  unsigned workers_;
  Millis deadline_;
  std::uint64_t number_ = 0;
};

}  // namespace tern::fuzz
