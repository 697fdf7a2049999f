// ClientSecurity: how a client tool (`client`, `loadgen`) reaches a broker that wants TLS and
// credentials: --tls, --cafile, --cert/--key, --tls-server-name, --username and --password or
// --password-file. The tools' option structs derive from it, so that both spell, check and load
// these options the same way.
//
// Plain values; check() is pure, loadPasswordFile() and makeTlsContext() read files (start-up
// only). Any thread.
#pragma once

#include <optional>
#include <string>

#include "tern/net/tls.hpp"

namespace tern::net {

struct ClientSecurity {
  // --tls: every socket over TLS, the broker's certificate verified against --cafile (empty: the
  // system's CAs) and --tls-server-name (empty: the host connected to); --cert/--key: a client
  // certificate to present.
  bool tls = false;
  std::string caFile;
  std::string certFile;
  std::string keyFile;
  std::string tlsServerName;
  // Credentials of CONNECT (--username, --password or --password-file). After
  // loadPasswordFile(), `password` holds the file's first line and passwordFile is empty.
  std::string username;
  std::optional<std::string> password;
  std::string passwordFile;

  // Why these options cannot be used together (a one-line usage error), or "": TLS files without
  // --tls, --cert without --key, both password options, a password without a user, line feeds
  // (they would end a line-protocol frame), fields past MQTT's 65535 bytes.
  std::string check() const;
  // Reads the first line of passwordFile (without its line end) into `password`; nothing to do
  // without one. Returns "" or why the file cannot be used.
  std::string loadPasswordFile();
  // The client TLS context the options ask for (null context, no error, without --tls); `error`
  // is one line when the files cannot be used.
  TlsContext::Made makeTlsContext() const;
};

}  // namespace tern::net
