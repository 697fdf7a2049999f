#include "broker_context.hpp"

#include "authenticator.hpp"
#include "worker.hpp"

namespace tern::broker {

BrokerContext::BrokerContext(const Config& c) : config(c) {}

BrokerContext::~BrokerContext() = default;

}  // namespace tern::broker
