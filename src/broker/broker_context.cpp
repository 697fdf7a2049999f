#include "broker_context.hpp"

#include "authenticator.hpp"
#include "worker.hpp"

namespace tern::broker {

BrokerContext::BrokerContext(const Config& c) : config(c) {}

BrokerContext::~BrokerContext() {
  delete acl.load(std::memory_order_acquire);
}

}  // namespace tern::broker
