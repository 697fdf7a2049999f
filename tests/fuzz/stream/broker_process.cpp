// Starting, watching and stopping the broker under test. See broker_process.hpp.
#include "broker_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

namespace tern::fuzz {

namespace {

// The broker's PID for the interrupt handler; 0 when none runs. A pid_t fits in sig_atomic_t on
// Linux, and the handler only reads it.
volatile std::sig_atomic_t g_brokerPid = 0;

// Paths for the interrupt handler to remove, written before the handlers can run on them.
char g_cleanup[16][256];
volatile std::sig_atomic_t g_cleanupCount = 0;

void writeStderr(const char* text) noexcept {
  const std::size_t length = std::strlen(text);
  [[maybe_unused]] const ssize_t n = ::write(2, text, length);
}

void onInterrupt(int) {
  const pid_t pid = static_cast<pid_t>(g_brokerPid);
  if (pid > 0) {
    ::kill(pid, SIGTERM);
    int status = 0;
    bool reaped = false;
    for (int i = 0; i < 300 && !reaped; ++i) {  // up to 3 s
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        reaped = true;
      } else {
        const timespec tick{0, 10'000'000};
        ::nanosleep(&tick, nullptr);
      }
    }
    if (!reaped) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
  }
  for (int i = 0; i < g_cleanupCount; ++i) {
    if (::unlink(g_cleanup[i]) != 0) ::rmdir(g_cleanup[i]);
  }
  writeStderr("stream_fuzz: interrupted; the broker was stopped\n");
  ::_exit(130);
}

// The port in a start-up line "tern broker listening on 127.0.0.1:<port> (...)", or 0.
std::uint16_t portOf(std::string_view line) {
  const std::size_t at = line.find("listening on ");
  if (at == std::string_view::npos) return 0;
  const std::size_t space = line.find(' ', at + 13);
  const std::size_t colon = line.rfind(':', space);
  if (colon == std::string_view::npos || colon < at) return 0;
  return static_cast<std::uint16_t>(std::atoi(std::string(line.substr(colon + 1)).c_str()));
}

}  // namespace

void removeOnInterrupt(const std::string& path) {
  const int n = g_cleanupCount;
  if (n >= 16 || path.size() >= sizeof g_cleanup[0]) return;
  std::memcpy(g_cleanup[n], path.c_str(), path.size() + 1);
  g_cleanupCount = n + 1;
}

void installInterruptHandlers() {
  struct sigaction action {};
  action.sa_handler = onInterrupt;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGINT, SIGTERM, SIGHUP})
    ::sigaction(signal, &action, nullptr);
}

std::unique_ptr<BrokerProcess> BrokerProcess::start(const std::string& path,
                                                    const std::vector<std::string>& args,
                                                    Listeners listeners, Millis timeout,
                                                    std::string& error) {
  std::unique_ptr<BrokerProcess> broker(new BrokerProcess());
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    return nullptr;
  }
  char errPath[] = "/tmp/stream-fuzz-broker-stderr-XXXXXX";
  const int errFd = ::mkostemp(errPath, O_CLOEXEC);
  const int nullFd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (errFd < 0 || nullFd < 0) {
    error = std::string("temporary file: ") + std::strerror(errno);
    return nullptr;
  }
  ::unlink(errPath);
  std::vector<std::string> argv{path};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> pointers;
  for (std::string& a : argv)
    pointers.push_back(a.data());
  pointers.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(nullFd, 0);
    ::dup2(out[1], 1);
    ::dup2(errFd, 2);
    ::execv(pointers[0], pointers.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(nullFd);
  // Our end only: the broker's stdout stays blocking, as a program expects.
  ::fcntl(out[0], F_SETFL, ::fcntl(out[0], F_GETFL) | O_NONBLOCK);
  broker->stdout_ = out[0];
  broker->stderr_ = errFd;
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  broker->pid_ = pid;
  g_brokerPid = pid;

  // Read the start-up lines until every port is known.
  const Clock::time_point deadline = Clock::now() + timeout;
  LineReader reader(broker->stdout_);
  std::string line;
  const auto known = [&] {
    return broker->linePort_ != 0 && broker->mqttPort_ != 0 &&
           (!listeners.tls || (broker->lineTlsPort_ != 0 && broker->mqttTlsPort_ != 0)) &&
           (!listeners.ws || broker->mqttWsPort_ != 0) &&
           (!listeners.wss || broker->mqttWssPort_ != 0);
  };
  while (!known() && reader.next(line, deadline)) {
    if (line.find("(line protocol)") != std::string::npos) broker->linePort_ = portOf(line);
    if (line.find("(mqtt)") != std::string::npos) broker->mqttPort_ = portOf(line);
    if (line.find("(line protocol+tls)") != std::string::npos) broker->lineTlsPort_ = portOf(line);
    if (line.find("(mqtt+tls)") != std::string::npos) broker->mqttTlsPort_ = portOf(line);
    if (line.find("(mqtt+ws)") != std::string::npos) broker->mqttWsPort_ = portOf(line);
    if (line.find("(mqtt+wss)") != std::string::npos) broker->mqttWssPort_ = portOf(line);
  }
  if (!known()) {
    error = "the broker did not report all its ports (line, MQTT";
    error += listeners.tls ? ", line+TLS, MQTT+TLS" : "";
    error += listeners.ws ? ", MQTT+WS" : "";
    error += listeners.wss ? ", MQTT+WSS" : "";
    error += ")";
    if (!broker->alive()) error += "; it exited with " + describeStatus(*broker->status_);
    error += "; stderr:\n" + broker->stderrText();
    return nullptr;
  }
  return broker;
}

BrokerProcess::~BrokerProcess() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    waitFor(Millis(5000));
  }
  if (g_brokerPid == pid_) g_brokerPid = 0;
  for (int fd : {stdout_, stderr_})
    if (fd >= 0) ::close(fd);
}

bool BrokerProcess::alive() {
  if (status_) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = status;
    g_brokerPid = 0;
    return false;
  }
  return true;
}

bool BrokerProcess::waitFor(Millis timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (alive()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(Millis(5));
  }
  return true;
}

int BrokerProcess::stop(Millis timeout) {
  if (alive()) {
    ::kill(pid_, SIGTERM);
    if (!waitFor(timeout)) {
      ::kill(pid_, SIGKILL);
      waitFor(Millis(5000));
    }
  }
  return status_.value_or(-1);
}

std::string BrokerProcess::stderrText() const {
  std::string text;
  char chunk[16384];
  for (off_t offset = 0;;) {
    const ssize_t n = ::pread(stderr_, chunk, sizeof chunk, offset);
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    offset += n;
  }
  return text;
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

}  // namespace tern::fuzz
