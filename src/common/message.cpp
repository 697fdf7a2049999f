#include "tern/common/message.hpp"

#include <cstring>
#include <new>

namespace tern::common {
namespace {

// The line protocol's framing rule for "<topic>@<contents>": the topic ends at the first '@' and
// the frame at the first LF, and a CR before the LF is dropped. So the topic may hold neither '@'
// nor LF, and the contents no LF and no trailing CR. The one place this rule is written down.
bool isLineSafe(std::string_view topic, std::string_view contents) noexcept {
  return topic.find_first_of("@\n") == std::string_view::npos &&
         (contents.empty() || (std::memchr(contents.data(), '\n', contents.size()) == nullptr &&
                               contents.back() != '\r'));
}

}  // namespace

MessageRef Message::make(std::string_view topic, std::string_view contents, bool retain,
                         std::uint8_t qos) {
  return create(topic, contents, retain, qos, isLineSafe(topic, contents));
}

MessageRef Message::make5(std::string_view topic, std::string_view contents, bool retain,
                          std::uint8_t qos, std::string_view properties, std::int64_t expiresAt,
                          std::uint64_t origin, const PublishName& name) {
  return create(topic, contents, retain, qos, isLineSafe(topic, contents), properties, expiresAt,
                origin, name);
}

MessageRef Message::makeFromLine(std::string_view topic, std::string_view contents, bool retain) {
  return create(topic, contents, retain, 0, true);
}

MessageRef Message::create(std::string_view topic, std::string_view contents, bool retain,
                           std::uint8_t qos, bool lineSafe, std::string_view properties,
                           std::int64_t expiresAt, std::uint64_t origin, const PublishName& name) {
  const std::size_t publisher = name.serial != 0 ? name.clientId.size() : 0;
  const std::size_t size =
      sizeof(Message) + topic.size() + contents.size() + 2 + properties.size() + publisher;
  void* memory = ::operator new(size);
  auto* message = new (memory)
      Message(static_cast<std::uint32_t>(topic.size()), static_cast<std::uint32_t>(contents.size()),
              static_cast<std::uint32_t>(properties.size()), expiresAt, origin, retain, qos,
              lineSafe, name);
  char* out = message->bytes();
  // memcpy's pointers must be valid even for zero bytes, and an empty string_view may hold null.
  if (!topic.empty()) std::memcpy(out, topic.data(), topic.size());
  out[topic.size()] = '@';
  if (!contents.empty()) std::memcpy(out + topic.size() + 1, contents.data(), contents.size());
  out[topic.size() + 1 + contents.size()] = '\n';
  if (!properties.empty()) {
    std::memcpy(out + topic.size() + contents.size() + 2, properties.data(), properties.size());
  }
  if (publisher != 0) {
    std::memcpy(out + topic.size() + contents.size() + 2 + properties.size(), name.clientId.data(),
                publisher);
  }
  return MessageRef::adopt(message);
}

void Message::destroy() const noexcept {
  this->~Message();
  ::operator delete(const_cast<Message*>(this));
}

}  // namespace tern::common
