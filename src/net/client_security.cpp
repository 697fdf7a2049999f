#include "tern/net/client_security.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

namespace tern::net {

std::string ClientSecurity::check() const {
  if (!tls) {
    for (const auto& [value, name] : {std::pair{&caFile, "--cafile"},
                                      {&certFile, "--cert"},
                                      {&keyFile, "--key"},
                                      {&tlsServerName, "--tls-server-name"}}) {
      if (!value->empty()) return std::string(name) + " needs --tls";
    }
  }
  if (!certFile.empty() && keyFile.empty()) return "--cert needs --key (the certificate's key)";
  if (certFile.empty() && !keyFile.empty()) return "--key needs --cert";
  if (password && !passwordFile.empty()) {
    return "--password and --password-file exclude each other (prefer --password-file: a "
           "password on the command line is visible in ps)";
  }
  if ((password || !passwordFile.empty()) && username.empty()) {
    return "--password and --password-file need --username";
  }
  if (username.find('\n') != std::string::npos) return "--username must not contain a line feed";
  if (password && password->find('\n') != std::string::npos) {
    return "--password must not contain a line feed";
  }
  if (username.size() > 65535 || (password && password->size() > 65535)) {
    return "--username and --password must be at most 65535 bytes";
  }
  return {};
}

std::string ClientSecurity::loadPasswordFile() {
  if (passwordFile.empty()) return {};
  std::ifstream file(passwordFile);
  if (!file) return "cannot read --password-file " + passwordFile + ": " + std::strerror(errno);
  std::string line;
  std::getline(file, line);
  if (file.bad()) return "cannot read --password-file " + passwordFile;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  password = std::move(line);
  passwordFile.clear();
  return {};
}

TlsContext::Made ClientSecurity::makeTlsContext() const {
  if (!tls) return {};
  TlsOptions options;
  options.caFile = caFile;
  options.certFile = certFile;
  options.keyFile = keyFile;
  return TlsContext::make(TlsContext::Side::kClient, options);
}

}  // namespace tern::net
