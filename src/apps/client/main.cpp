// `client`: the stock command-line client of the tern broker (docs/client.md). Argument parsing and
// the choice of a mode only; the modes live in line_mode.cpp and verbs.cpp.

#include <unistd.h>

#include <csignal>

#include "client_app.hpp"
#include "tern/client/command_line.hpp"

int main(int argc, char** argv) {
  using tern::client::Verb;
  namespace app = tern::client::app;

  const tern::client::ParsedCommandLine parsed = tern::client::parseCommandLine(argc, argv);
  if (!parsed.commandLine) {
    app::Output out(STDOUT_FILENO);
    out.buffer() = parsed.output;
    out.flush();
    app::Output err(STDERR_FILENO);
    err.buffer() = parsed.error;
    err.flush();
    return static_cast<int>(parsed.exitCode);
  }
  // A reader that goes away (`client sub ... | head -1`) is an EPIPE from write(2), handled there.
  std::signal(SIGPIPE, SIG_IGN);

  // The files the options name are read once, before any mode: a bad one is a usage error.
  tern::client::CommandLine commandLine = *parsed.commandLine;
  for (const std::string& error : {tern::client::loadPasswordFile(commandLine.connection),
                                   tern::client::makeTlsContext(commandLine.connection)}) {
    if (error.empty()) continue;
    app::Output err(STDERR_FILENO);
    err.line("error: " + error);
    err.flush();
    return static_cast<int>(tern::client::ExitCode::kUsage);
  }
  switch (commandLine.verb) {
    case Verb::kPub:
      return app::runPub(commandLine);
    case Verb::kSub:
      return app::runSub(commandLine);
    case Verb::kNone:
      break;
  }
  if (::isatty(STDIN_FILENO) != 0 && ::isatty(STDOUT_FILENO) != 0) {
    return app::runInteractive(commandLine);
  }
  return app::runStdin(commandLine);
}
