#include "tern/client/command_line.hpp"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

namespace tern::client {
namespace {

constexpr char kDescription[] =
    "tern's command-line client for the line protocol (docs/protocol.md).\n"
    "\n"
    "Without a verb it runs a session. When stdin and stdout are terminals it is interactive: a\n"
    "prompt with line editing, replies print as 'server: <reply>' and pushed messages as\n"
    "'<topic>: <contents>' above the prompt, without disturbing what is being typed (keys:\n"
    "docs/client.md). Otherwise it reads one request per line from stdin, sends each once the\n"
    "previous one is answered, prints replies and pushes one per line as they arrive, and at EOF\n"
    "(after --wait) disconnects and exits.\n"
    "\n"
    "Type 'connect' or 'connect@<client-id>' first: it opens the three sockets of a session\n"
    "(CONNECT, then ATTACH of the second request socket and of the push socket). 'disconnect'\n"
    "sends DISCONNECT and waits for DISCONNACK. Every other line is sent as typed, e.g.\n"
    "  publish@weather/temp@21C@retain   subscribe@weather/*   unsubscribe@weather/*\n"
    "  list   list@weather/#   ping   stats\n"
    "\n"
    "Verbs, in the style of mosquitto_pub and mosquitto_sub: 'client pub --help', 'client sub\n"
    "--help'.";

constexpr char kExitCodes[] =
    "Exit status (the first failure decides when there are several):\n"
    "  0    success: every request was answered, none with ERROR\n"
    "  1    the broker answered ERROR to a request, a request came before 'connect', the broker\n"
    "       closed a socket, a reply did not come within --timeout, or stdout failed\n"
    "  2    bad usage, or the broker cannot be reached (name not resolved, connection refused or\n"
    "       not answered within --timeout, TLS handshake failed)\n"
    "  3    sub: -W passed before -C messages arrived (mosquitto_sub uses 27 here)\n"
    "  130  interactive mode ended with ^C";

// The text of --password, kept apart so that "given" (even empty) can be told from "not given".
struct SecretText {
  std::string password;
};

void addConnectionOptions(CLI::App& app, ConnectionOptions& options, SecretText& secret) {
  app.add_option("--host", options.host, "Broker host name or address")
      ->type_name("HOST")
      ->capture_default_str();
  app.add_option("-p,--port", options.port, "Broker line-protocol port")
      ->check(CLI::Range(1, 65535).description(""))
      ->type_name("PORT")
      ->capture_default_str();
  app.add_option("--timeout", options.timeoutSeconds,
                 "Seconds allowed for the TCP connect, each handshake reply and each request's "
                 "reply; a reply later than this ends the run (exit 1)")
      ->check(CLI::PositiveNumber.description(""))
      ->type_name("SECONDS")
      ->capture_default_str();
  app.add_flag("--tls", options.tls,
               "Connect the three sockets with TLS (1.2 or 1.3); the broker's certificate is "
               "verified");
  app.add_option("--cafile", options.caFile,
                 "With --tls: PEM CAs that verify the broker (default: the system's CAs)")
      ->type_name("FILE");
  app.add_option("--cert", options.certFile,
                 "With --tls: PEM client certificate (chain) to present; needs --key")
      ->type_name("FILE");
  app.add_option("--key", options.keyFile, "With --tls: PEM private key of --cert")
      ->type_name("FILE");
  app.add_option("--tls-server-name", options.tlsServerName,
                 "With --tls: the name (or IP address) the broker's certificate must carry, also "
                 "sent as SNI (default: --host)")
      ->type_name("NAME");
  app.add_option("-u,--username", options.username,
                 "User name sent in CONNECT (CONNECT@<id>@<user>@<password>)")
      ->type_name("NAME");
  app.add_option("-P,--password", secret.password,
                 "Password sent with --username. Visible to every user in ps: prefer "
                 "--password-file")
      ->type_name("TEXT");
  app.add_option("--password-file", options.passwordFile,
                 "File whose first line is the password (instead of --password)")
      ->type_name("FILE");
}

// Why the TLS and credential options cannot be used together, or "".
std::string checkSecurity(const ConnectionOptions& o) {
  // '@' separates CONNECT's fields.
  if (o.username.find('@') != std::string::npos) return "--username must not contain '@'";
  return o.check();
}

void addClientId(CLI::App& app, std::string& clientId) {
  app.add_option("-i,--id", clientId,
                 "Client-id: 1 to 64 of [A-Za-z0-9_.-] (default: the broker assigns one). A live "
                 "session with the same id is taken over")
      ->type_name("ID");
}

bool usable(std::string_view text) {
  return !text.empty() && text.find('@') == text.npos && text.find('\n') == text.npos;
}

}  // namespace

ParsedCommandLine parseCommandLine(int argc, const char* const* argv) {
  CommandLine line;
  CLI::App app(kDescription, "client");
  app.get_formatter()->column_width(30);
  app.set_version_flag("--version", TERN_VERSION);
  app.require_subcommand(0, 1);
  SecretText secret;
  addConnectionOptions(app, line.connection, secret);
  app.add_flag("--raw", line.lineMode.raw,
               "Print every frame exactly as the broker sent it (CONNACK@..., ATTACHACK@..., "
               "PUBACK, MESSAGE@t@x, RETAINED@t@x), one per line");
  app.add_option("--wait", line.lineMode.waitSeconds,
                 "Stdin mode: after EOF and the last reply, keep printing pushes this many seconds "
                 "before disconnecting")
      ->check(CLI::NonNegativeNumber.description(""))
      ->type_name("SECONDS")
      ->capture_default_str();
  app.add_option("--request-socket", line.lineMode.requestSocket,
                 "Which request socket carries the requests: 1 (the CONNECT socket) or 2 (both "
                 "are attached, as the protocol requires)")
      ->check(CLI::Range(1, 2).description(""))
      ->type_name("1|2")
      ->capture_default_str();

  CLI::App* pub = app.add_subcommand(
      "pub",
      "Publish: connect, send PUBLISH, wait for PUBACK, disconnect. Prints nothing on success; "
      "an ERROR reply goes to stderr (exit 1).");
  addConnectionOptions(*pub, line.connection, secret);
  pub->add_option("-t,--topic", line.pub.topic, "Topic to publish to (no '@', no wildcards)")
      ->type_name("TOPIC")
      ->required();
  CLI::Option* message =
      pub->add_option("-m,--message", line.pub.message, "Message contents")->type_name("MSG");
  bool fromLines = false;
  bool emptyMessage = false;
  CLI::Option* lines = pub->add_flag("-l,--stdin-line", fromLines,
                                     "Publish each line of stdin as a message, each PUBACK "
                                     "awaited before the next; blank lines are skipped");
  CLI::Option* empty =
      pub->add_flag("-n,--null-message", emptyMessage,
                    "Publish empty contents (with -r: delete the retained message)");
  message->excludes(lines)->excludes(empty);
  lines->excludes(empty);
  pub->add_flag("-r,--retain", line.pub.retain,
                "Retain the message: stored for the topic and sent to later subscribers");
  addClientId(*pub, line.pub.clientId);
  pub->footer(kExitCodes);

  CLI::App* sub = app.add_subcommand(
      "sub",
      "Subscribe: connect, send SUBSCRIBE for each filter (each SUBACK awaited), print the "
      "contents of each pushed message, one per line, until -C, -W, SIGINT or SIGTERM; then "
      "DISCONNECT. Retained messages of a filter are pushed right after its SUBACK.");
  addConnectionOptions(*sub, line.connection, secret);
  sub->add_option("-t,--topic", line.sub.filters,
                  "Filter to subscribe to; repeat for more. '+' or '*' matches one level, '#' "
                  "any number of levels (last level only)")
      ->type_name("FILTER")
      ->required();
  sub->add_option("-C,--count", line.sub.count,
                  "Exit after COUNT messages (0: no limit); with -R retained ones do not count")
      ->check(CLI::NonNegativeNumber.description(""))
      ->type_name("COUNT");
  sub->add_option("-W,--time-limit", line.sub.timeLimitSeconds,
                  "Exit after SECONDS, counted from the end of the handshake; with -C, exit 3 if "
                  "fewer than COUNT messages arrived (0: no limit)")
      ->check(CLI::NonNegativeNumber.description(""))
      ->type_name("SECONDS");
  sub->add_flag("-v,--verbose", line.sub.verbose, "Print '<topic> <contents>'");
  sub->add_flag("-R,--no-retained", line.sub.skipRetained,
                "Do not print (or count) RETAINED pushes, only live messages");
  addClientId(*sub, line.sub.clientId);
  sub->footer(kExitCodes);

  app.footer(kExitCodes);

  ParsedCommandLine result;
  auto usageError = [&](std::string text) {
    result.exitCode = ExitCode::kUsage;
    result.error = "error: " + std::move(text) + "\nRun with --help for more information.\n";
    return result;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out;
    std::ostringstream err;
    const int code = app.exit(e, out, err);
    result.output = out.str();
    result.error = err.str();
    result.exitCode = code == 0 ? ExitCode::kOk : ExitCode::kUsage;
    return result;
  }

  const auto given = [&](const char* name) {
    return app.count(name) + pub->count(name) + sub->count(name) > 0;
  };
  if (given("--username") && line.connection.username.empty()) {
    return usageError("--username must not be empty");
  }
  if (given("--password")) line.connection.password = secret.password;
  if (std::string error = checkSecurity(line.connection); !error.empty()) {
    return usageError(std::move(error));
  }

  if (pub->parsed()) {
    line.verb = Verb::kPub;
    if (fromLines) {
      line.pub.source = PubOptions::Source::kLines;
    } else if (emptyMessage) {
      line.pub.source = PubOptions::Source::kEmpty;
    } else if (message->count() == 0) {
      return usageError("pub needs one of -m MSG, -l or -n");
    }
  } else if (sub->parsed()) {
    line.verb = Verb::kSub;
    for (const std::string& filter : line.sub.filters) {
      if (!usable(filter)) {
        return usageError("a filter must be non-empty, without '@' or line feed: '" + filter + "'");
      }
    }
  }
  if (line.verb != Verb::kNone) {
    for (const char* name : {"--raw", "--wait", "--request-socket"}) {
      if (app.count(name) > 0) {
        return usageError(std::string(name) + " applies only to the session mode (no verb)");
      }
    }
    const std::string& id = line.verb == Verb::kPub ? line.pub.clientId : line.sub.clientId;
    if (!id.empty() && !usable(id)) return usageError("a client-id must not contain '@'");
  }
  result.commandLine = std::move(line);
  return result;
}

std::string loadPasswordFile(ConnectionOptions& options) {
  return options.loadPasswordFile();
}

std::string makeTlsContext(ConnectionOptions& options) {
  options.tlsContext.reset();
  if (!options.tls) return {};
  net::TlsContext::Made made = options.makeTlsContext();
  if (!made.context) return "--tls: " + made.error;
  options.tlsContext = std::move(made.context);
  return {};
}

}  // namespace tern::client
