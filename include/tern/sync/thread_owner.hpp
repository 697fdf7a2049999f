// ThreadOwner: makes "only the owning thread touches this object" checkable.
//
// An object owned by one event loop embeds a ThreadOwner, binds it on its thread, and asserts with
// TERN_ASSERT_OWNER in its methods. The check runs in debug and sanitizer builds and compiles away
// under NDEBUG. bind() may be called again when an object is handed to another thread on purpose.
#pragma once

#include <cassert>
#include <thread>

namespace tern::sync {

class ThreadOwner {
 public:
  // Makes the calling thread the owner.
  void bind() noexcept { owner_ = std::this_thread::get_id(); }
  // True when the calling thread owns the object (or none was bound yet).
  bool isOwner() const noexcept {
    return owner_ == std::thread::id() || owner_ == std::this_thread::get_id();
  }

 private:
  std::thread::id owner_;
};

}  // namespace tern::sync

#define TERN_ASSERT_OWNER(owner) \
  assert((owner).isOwner() && "touched from a thread that does not own it")
