// MqttProtocol: MQTT 3.1.1 (and 3.1) and 5.0 on a worker (docs/mqtt.md): packets in
// (protocol/mqtt_decoder), the broker's side of the standard acted on (session state, QoS 1/2
// flows in both directions, wills, keep-alive, persistent sessions and their expiry, takeover,
// 5.0 properties and reason codes), PUBLISH packets out. A connection's packets use the layout of
// the protocol level its CONNECT named (MqttState::level); a 3.1.1 delivery costs what it did
// before 5.0 existed.
//
// Ownership: one per Worker, beside its WorkerCore. Threads: the worker's own thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol_handler.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_packet.hpp"
#include "worker_core.hpp"

namespace tern::broker {

class MqttProtocol final : public ProtocolHandler {
 public:
  explicit MqttProtocol(WorkerCore& core);

  InputState onInput(Connection& c, std::string_view data, std::size_t searched,
                     common::FunctionRef<void(std::size_t)> commit) override;
  bool deliver(Session& s, const common::Message& message, unsigned grantedQos, bool retained,
               SharedRoute route) override;
  bool takeForJob(Connection& c, Job& job, const common::Message& message) override;
  // Publishes the will (unless the client said DISCONNECT or the broker is stopping), ends a clean
  // session, starts the expiry of a persistent one.
  void connectionGone(Session& s, Connection& c) override;
  void onDurable(Connection& c, const HeldAck& ack) override;
  void sessionEnding(Session& s, Connection* (&sockets)[3]) override;
  // Publishes the 5.0 wills whose Will Delay Interval passed (once a second, from the sweep).
  void onSweep(std::int64_t now) override;
  bool timersPending() const noexcept override { return !pendingWills_.empty(); }
  // 5.0: DISCONNECT 0x8D (keep-alive timeout) or 0x8B (server shutting down).
  void serverClosing(Connection& c, ServerClose why) override;

 private:
  // kHeld: the packet waits where it is (a CONNECT whose credentials are being checked).
  enum class Outcome { kDone, kHandedOver, kHeld };

  Outcome onPacket(Connection& c, const protocol::mqtt::Packet& packet);
  Outcome onConnect(Connection& c, const protocol::mqtt::Connect& connect);
  void onPublish(Connection& c, Session& s, const protocol::mqtt::Publish& publish);
  void onSubscribe(Connection& c, Session& s, const protocol::mqtt::Subscribe& subscribe);
  void onUnsubscribe(Connection& c, Session& s, const protocol::mqtt::Unsubscribe& request);
  void onAck(Session& s, const protocol::mqtt::Packet& packet);
  // Sends an in-flight entry (its PUBLISH, or PUBREL once released), numbering it first.
  void send(Connection& c, MqttState::Inflight& entry, bool dup);
  // Gives `entry` the next packet id not in flight, unless it has one.
  static void number(MqttState& m, MqttState::Inflight& entry);
  // Moves queued messages into the in-flight window while it has room.
  void pump(Session& s);
  // After a reconnect: what was in flight again (DUP), then the queue [MQTT-4.4.0-1].
  void resume(Session& s);
  // A protocol violation: closes at once (no further packet; the will is published).
  void abort(Connection& c, std::string_view why);
  // A 5.0 connection: DISCONNECT with `reason` (and `why` as its Reason String), then closed (the
  // will is published); a 3.1.1 one: abort().
  void disconnect(Connection& c, protocol::mqtt::ReasonCode reason, std::string_view why);
  // The protocol level of c's packets (3.1.1 until its CONNECT says otherwise).
  static std::uint8_t levelOf(const Connection& c) noexcept;
  std::size_t inflightLimit(const MqttState& m) const noexcept;
  // 5.0: the seconds an offline session lives for a requested Session Expiry Interval (at most
  // --session-expiry when that is set); 0 never expires.
  double expiryFor(std::uint32_t requested) const noexcept;
  // 5.0: appends to `out` the entries of `properties` a message is forwarded with (all but Topic
  // Alias, Message Expiry Interval and Will Delay Interval, which the broker rewrites or uses).
  static void appendForwarded(std::string& out, const protocol::mqtt::Properties& properties);
  // 5.0: the property entries of a PUBLISH of `message` to a 5.0 client, into propertyScratch_.
  void publishProperties(const common::Message& message);
  // 5.0: whether `message` fits the client's Maximum Packet Size [MQTT-3.1.2-25]; a drop is
  // counted when it does not.
  bool fitsClient5(Session& s, const common::Message& message, bool shared);
  // 5.0, for a session with subscription options: what its subscriptions that match `message`
  // say, No Local applied (`any` false: none is left).
  struct Matched {
    bool any = false;
    unsigned qos = 0;
    bool retainAsPublished = false;
  };
  // `shared`: the delivery was made for a shared subscription (only those count), or not.
  Matched match(const Session& s, const common::Message& message, bool shared) const;
  // 5.0: the Subscription Identifiers of s's subscriptions that match, into propertyScratch_.
  void appendSubscriptionIds(const Session& s, const common::Message& message, bool shared);
  // 5.0, towards a client that accepts Topic Aliases: the alias of header.topic into
  // propertyScratch_ (given on first use, then sent without the topic), while aliases are left.
  void applyTopicAlias(MqttState& m, protocol::mqtt::Publish& header);
  void publishWill(MqttState& m);
  // 5.0: a successful CONNACK into core_.scratch, with the properties that say what this server
  // offers; `assigned`: the client id is the server's; `grantedExpiry` >= 0: the Session Expiry
  // Interval granted, when it is not the one asked for.
  void writeConnack5(const Session& s, bool sessionPresent, bool assigned, double grantedExpiry);

 public:
  // --data-dir, start-up: a message a restored queue names, and whether sessions of more than one
  // worker name it (StoreLink::adoptMessage).
  struct RestoredMessage {
    common::MessageRef message;
    bool pinned = false;
  };
  // Makes the persistent session `loaded` (offline) with its subscriptions, queue and in-flight
  // state. Before the worker runs (its thread not started). False when no session can be made.
  bool restore(persist::LoadedSession&& loaded,
               const std::unordered_map<std::uint64_t, RestoredMessage>& messages);

  // --durability sync: the publisher's worker, once the QoS 2 packet id of `message`'s publish is
  // durable (or its write was given up: a storage error, the session ended): its held sends go,
  // here and (`remote`) on the other workers.
  void publisherResolved(const common::Message& message, bool remote);
  // Sends this worker's QoS 2 PUBLISHes of `message` held for its publisher (parkForPublisher).
  void releaseParked(const common::Message& message);

  // Topic Aliases this server accepts from each connection, and gives towards one.
  static constexpr std::uint16_t kInboundTopicAliases = 16;
  static constexpr std::size_t kOutboundTopicAliases = 32;

 private:
  void onDisconnect5(Connection& c, Session& s, const protocol::mqtt::Disconnect& d);
  Session* createSession(std::string clientId, bool cleanSession);
  // Appends the packet core_.scratch holds to c's output.
  void sendScratch(Connection& c);
  // --data-dir (mqtt_persistence.cpp): whether `s` is kept in the store, and its writes.
  bool persistent(const Session& s) const noexcept;
  void storeSession(Session& s);
  // A new entry (seq 0: numbered here, its message referenced) or a new state of entry `seq`.
  void storeEntry(Session& s, std::uint64_t& seq, const common::Message* message, std::uint8_t qos,
                  persist::QueueState state, std::uint16_t packetId);
  // A QoS 2 entry whose PUBREC came: PUBREL pending, its message no longer referenced.
  void storeReleased(Session& s, MqttState::Inflight& entry);
  // Sends an entry just moved in flight and, for a persistent session, stores it as sent (seq 0:
  // a new entry). --durability sync: a QoS 2 PUBLISH waits until that state is durable.
  void sendInflight(Session& s, Connection& c, MqttState::Inflight& entry);
  // Erases entry `seq` (and the message's reference); seq becomes 0.
  void forgetEntry(Session& s, std::uint64_t& seq, const common::Message* message);
  // A QoS 2 publish of persistent session `s` accepted under `packetId`: its serial (for its
  // message's name and its inbound record), noted as unresolved.
  std::uint64_t noteInbound(Session& s, std::uint16_t packetId);
  // Writes packet id `packetId` as awaiting its PUBREL (async mode, at the publish).
  void storeInbound(Session& s, std::uint16_t packetId, std::uint64_t serial);
  // The PUBREL of `packetId`: its record erased, or kept as released while an older publish is
  // unresolved, and the session's resolved-through serial moved on.
  void storeInboundReleased(Session& s, std::uint16_t packetId);
  // A refused PUBREC (5.0) ends the exchange: the publish no longer holds the serial back.
  static void dropUnresolved(MqttState& m, std::uint16_t packetId);
  // The resolved-through serial `m` may write now: below its oldest unresolved publish, else a
  // fresh serial (above every publish so far).
  std::uint64_t resolvedThroughNow(const MqttState& m);
  // Sync mode: holds the PUBREC `ack` of a QoS 2 publish of persistent session `s` until its
  // writes are durable, then writes its packet id (with the publish's `serial`) and holds the
  // PUBREC for that too.
  // `named` (with one reference, which moves into the ack): the publish's message, whose QoS 2
  // sends to persistent sessions wait for the PUBREC's turn; `remote`: some are on other workers.
  void holdForInbound(Connection& c, Session& s, HeldAck ack, std::uint64_t serial,
                      const common::Message* named, bool remote);
  // --durability sync: true when `entry`, a QoS 2 PUBLISH of persistent session `s`, must wait
  // for its message's publisher (common::Message::awaitsPublisher) and was parked for it (once:
  // Inflight::parked).
  bool parkForPublisher(Session& s, MqttState::Inflight& entry);
  // Erases the session's records (it ends, or is no longer persistent).
  void forgetSession(Session& s);
  // The message id of an entry whose message was released (PUBREL pending): never allocated.
  static constexpr std::uint64_t kReleasedMessageId = ~std::uint64_t{0};
  // Sends the PUBACK or PUBREC `ack` describes, with `reason` (5.0).
  void sendAck(Connection& c, const HeldAck& ack, protocol::mqtt::ReasonCode reason);

  WorkerCore& core_;
  protocol::mqtt::Decoder decoder_;
  std::string packetScratch_;    // reused for PUBLISH headers (deliveries only)
  std::string propertyScratch_;  // reused for 5.0 property entries
  // 5.0 wills waiting for their Will Delay Interval (stale entries are skipped when due).
  struct PendingWill {
    std::int64_t when;
    routing::SubscriberId session;
  };
  std::vector<PendingWill> pendingWills_;
  // QoS 2 PUBLISHes waiting for their message's publisher (parkForPublisher): the session, the
  // packet id and the message (not owned: its publisher's held PUBREC holds it until the
  // releaseParked that removes these, so it cannot be freed and its address reused before).
  struct Parked {
    routing::SubscriberId session;
    std::uint16_t packetId;
    const common::Message* message;
  };
  std::vector<Parked> parked_;
  // Reused by every SUBSCRIBE: return codes, the distinct filters (views into the packet) and
  // where each filter is in distinctFilters_ (kRefusedFilter: over --max-subscriptions).
  std::vector<std::uint8_t> subackCodes_;
  std::vector<protocol::mqtt::Subscription> distinctFilters_;
  std::unordered_map<std::string_view, std::size_t> filterIndex_;
  static constexpr std::size_t kRefusedFilter = ~std::size_t{0};
  common::LogLimiter storageLog_;  // publishes not acknowledged for a storage error
};

}  // namespace tern::broker
