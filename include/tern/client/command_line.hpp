// The command line of the `client` program: its options, verbs and exit codes (docs/client.md).
//
//   client [--host H] [--port P] [--timeout S] [--raw] [--wait S] [--request-socket 1|2]
//          [--tls [--cafile F] [--cert F --key F] [--tls-server-name N]]
//          [--username U [--password P | --password-file F]]   (also with pub and sub)
//   client pub -t TOPIC (-m MSG | -l | -n) [-r] [-i ID] [--host H] [--port P] [--timeout S]
//   client sub -t FILTER [-t FILTER...] [-C COUNT] [-W S] [-v] [-R] [-i ID] [--host H] ...
//
// parseCommandLine() is separate from main() so the tests can check what each option means.
// Pure: no I/O, any thread. loadPasswordFile() and makeTlsContext() read the files the options
// name, once, before a mode runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tern/net/client_security.hpp"
#include "tern/net/tls.hpp"

namespace tern::client {

// The process exit status. When several failures happen in one run, the first one decides.
enum class ExitCode : int {
  kOk = 0,            // every request was answered, none with ERROR
  kFailed = 1,        // an ERROR reply, a request before connect, a socket closed by the broker, a
                      // reply not in time, or stdout not writable
  kUsage = 2,         // bad usage, or the broker cannot be reached (resolve, connect refused or
                      // timed out)
  kTimedOut = 3,      // sub: -W passed before -C messages arrived (mosquitto_sub uses 27)
  kInterrupted = 130  // interactive mode ended by ^C (128 + SIGINT, as a shell reports it)
};

// TLS and credentials (net::ClientSecurity): the credentials go in CONNECT as
// CONNECT@<client-id>@<user>@<password>.
struct ConnectionOptions : net::ClientSecurity {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  double timeoutSeconds = 5;  // TCP connect, each handshake reply, each request's reply
  // Made by makeTlsContext() after parsing (null without --tls); not set by the parser.
  std::shared_ptr<const net::TlsContext> tlsContext;

  const std::string& effectiveTlsServerName() const noexcept {
    return tlsServerName.empty() ? host : tlsServerName;
  }
};

// Options of the line mode (no verb): interactive on a terminal, else requests from stdin.
struct LineModeOptions {
  bool raw = false;        // print frames exactly as received
  double waitSeconds = 0;  // stdin mode: keep receiving pushes this long after EOF
  int requestSocket = 1;   // 1 or 2: which request socket carries the requests
};

struct PubOptions {
  enum class Source { kMessage, kLines, kEmpty };
  std::string topic;
  Source source = Source::kMessage;
  std::string message;  // with kMessage
  bool retain = false;
  std::string clientId;  // empty: the broker assigns one
};

struct SubOptions {
  std::vector<std::string> filters;
  std::uint64_t count = 0;      // -C: stop after this many messages; 0: no limit
  double timeLimitSeconds = 0;  // -W: stop after this long; 0: no limit
  bool verbose = false;         // -v: print "<topic> <contents>"
  bool skipRetained = false;    // -R: do not print RETAINED pushes
  std::string clientId;
};

enum class Verb { kNone, kPub, kSub };

struct CommandLine {
  Verb verb = Verb::kNone;
  ConnectionOptions connection;
  LineModeOptions lineMode;
  PubOptions pub;
  SubOptions sub;
};

struct ParsedCommandLine {
  // Set when the program should run; empty after --help, --version or a usage error.
  std::optional<CommandLine> commandLine;
  ExitCode exitCode = ExitCode::kOk;  // without commandLine: kOk (help, version) or kUsage
  std::string output;                 // help or version text, for stdout
  std::string error;                  // the usage error and a hint, for stderr
};

ParsedCommandLine parseCommandLine(int argc, const char* const* argv);

// Reads the first line of options.passwordFile (without its line end) into options.password and
// clears passwordFile; nothing to do without one. Returns "" or why the file cannot be used.
std::string loadPasswordFile(ConnectionOptions& options);

// Sets options.tlsContext from --cafile, --cert and --key when options.tls. Returns "" or why
// the files cannot be used (one line).
std::string makeTlsContext(ConnectionOptions& options);

}  // namespace tern::client
