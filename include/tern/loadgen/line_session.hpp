// LineSession: a simulated client speaking the line protocol (docs/protocol.md), three sockets.
//
//   slot 0, control: CONNECT@<id> -> CONNACK@<id>@<token>; later SUBSCRIBE@<filter> -> SUBACK
//   slot 1, publish: ATTACH@<token>@request -> ATTACHACK@request; then PUBLISH -> PUBACK
//   slot 2, push:    ATTACH@<token>@push -> ATTACHACK@push; then MESSAGE@<topic>@<contents>
// Publishes all go on one socket because the broker orders deliveries per publishing socket: with
// two, a correct broker could legitimately interleave them and the receivers would report reorders.
// Publishes are pipelined; replies come back in request order, so each PUBACK is matched with the
// oldest unacknowledged publish.
//
// Threading and failure rules: see session.hpp.
#pragma once

#include <memory>

#include "tern/loadgen/session.hpp"

namespace tern::loadgen {

std::unique_ptr<Session> makeLineSession(SessionHost& host, const SessionConfig& config);

}  // namespace tern::loadgen
