// stream_fuzz: a black-box, structure-aware fuzzer that drives the real broker over loopback.
//
// Starts the broker, runs the seed corpus (or the --replay cases), then generated and mutated
// cases until --seconds or --cases; after every case the liveness probe must pass and the broker
// must still run. On a failure it writes the case, the cases before it and the broker's stderr to
// --artifacts and exits 1. At the end the broker must exit 0 on SIGTERM. README.md has the rest.
//
// Exit codes: 0 no failure, 1 a failure (artifacts written), 2 bad usage or set-up, 130
// interrupted.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <sys/wait.h>

#include <unistd.h>

#include "broker_process.hpp"
#include "case.hpp"
#include "executor.hpp"
#include "generator.hpp"
#include "probe.hpp"
#include "support/test_certificates.hpp"
#include "tern/auth/password_file.hpp"
#include "tern/net/tls.hpp"

namespace fs = std::filesystem;
using namespace tern::fuzz;

namespace {

constexpr int kFailure = 1;
constexpr int kUsage = 2;
constexpr std::size_t kRecentCases = 16;  // written next to a failing case: the state before it
constexpr std::size_t kPoolSize = 512;    // generated cases kept as mutation parents

struct Options {
  std::string broker;
  double seconds = 0;
  std::uint64_t cases = 0;
  std::uint64_t seed = 0;
  bool seedGiven = false;
  std::string corpus = TERN_STREAM_FUZZ_CORPUS;
  bool corpusGiven = false;
  std::string artifacts = "stream_fuzz_artifacts";
  std::vector<std::string> replay;
  std::vector<std::string> brokerArgs;
  double probeSeconds = 5;
};

// A password file of the run's own, in a fresh directory under /tmp: "user" with password
// "secret", the credentials the generated CONNECTs give when they give the right ones. Removed
// when the fuzzer exits normally.
struct RunPasswordFile {
  RunPasswordFile() {
    char pattern[] = "/tmp/stream-fuzz-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) return;
    dir = pattern;
    path = dir + "/passwords";
    removeOnInterrupt(path);
    removeOnInterrupt(dir);
    tern::auth::PasswordFile file;
    file.set("user", tern::auth::PasswordHash::make("secret"));
    if (!file.save(path).empty()) path.clear();
  }
  ~RunPasswordFile() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir + "/data", ec);  // the broker's --data-dir
    if (!path.empty()) ::unlink(path.c_str());
    if (!dir.empty()) ::rmdir(dir.c_str());
  }
  std::string dir;
  std::string path;
};

// The run's TLS material, made at start-up in a fresh directory under /tmp (removed at exit, and
// by the interrupt handler): a CA, the broker's certificate for 127.0.0.1, one client certificate
// the CA signed, and the client contexts the executor and the probe use.
struct RunCertificates {
  explicit RunCertificates(std::string& error) {
    try {
      certificates = std::make_unique<tern::testing::TestCertificates>();
      clientBase = certificates->makeClient("stream-fuzz-client");
    } catch (const std::exception& e) {
      error = e.what();
      return;
    }
    for (const std::string& path :
         {certificates->caFile(), certificates->serverCert(), certificates->serverKey(),
          clientBase + ".crt", clientBase + ".key", certificates->dir()}) {
      removeOnInterrupt(path);
    }
    tern::net::TlsOptions options;
    options.caFile = certificates->caFile();
    auto made = tern::net::TlsContext::make(tern::net::TlsContext::Side::kClient, options);
    options.certFile = clientBase + ".crt";
    options.keyFile = clientBase + ".key";
    auto madeCert = tern::net::TlsContext::make(tern::net::TlsContext::Side::kClient, options);
    if (!made.context || !madeCert.context) {
      error = made.error.empty() ? madeCert.error : made.error;
      return;
    }
    client = std::move(made.context);
    clientWithCert = std::move(madeCert.context);
  }
  std::unique_ptr<tern::testing::TestCertificates> certificates;
  std::string clientBase;
  std::shared_ptr<const tern::net::TlsContext> client;
  std::shared_ptr<const tern::net::TlsContext> clientWithCert;
};

// The broker's command line: the fuzzer's defaults (free ports on loopback, TLS listeners of
// both protocols that ask for a client certificate but do not require one, MQTT over WebSockets
// plain and over TLS, 3 workers, small
// limits so that fuzz cases reach them, passwords checked for CONNECTs that give a user while
// anonymous ones are let in), each dropped when --broker-arg names the same option.
std::vector<std::string> brokerArguments(const std::vector<std::string>& extra,
                                         const std::string& passwordFile,
                                         const tern::testing::TestCertificates& certificates) {
  // Persistence on (sync mode), so that hostile input also drives the store: retained
  // publishes, persistent sessions, their queues; in the run's directory, removed at exit.
  const std::string dataDir = fs::path(passwordFile).parent_path().string() + "/data";
  const std::vector<std::pair<std::string, std::string>> kDefaults = {
      {"--password-file", passwordFile},
      {"--data-dir", dataDir},
      {"--tls-cert", certificates.serverCert()},
      {"--tls-key", certificates.serverKey()},
      {"--tls-ca", certificates.caFile()},
      {"--tls-port", "auto"},
      {"--mqtt-tls-port", "auto"},
      {"--ws-port", "auto"},
      {"--wss-port", "auto"},
      {"--allow-anonymous", "true"},
      {"--port", "0"},
      {"--mqtt-port", "auto"},
      {"--bind", "127.0.0.1"},
      {"--log-level", "warn"},
      {"--workers", "3"},
      {"--handshake-timeout", "2"},
      {"--max-line", "4096"},
      {"--max-packet-size", "65536"},
      {"--max-inflight", "4"},
      {"--max-queued-messages", "50"},
      {"--max-queued-bytes", "262144"},
  };
  std::vector<std::string> args;
  // The I/O backend under test, as the functional suite takes it (tools/test runs both).
  const char* io = std::getenv("TERN_TEST_IO");
  const bool ioGiven = std::any_of(extra.begin(), extra.end(),
                                   [](const std::string& a) { return a.starts_with("--io"); });
  if (io != nullptr && *io != '\0' && !ioGiven) args.insert(args.end(), {"--io", io});
  for (const auto& [name, value] : kDefaults) {
    const bool overridden = std::any_of(extra.begin(), extra.end(), [&](const std::string& a) {
      return a == name || a.starts_with(name + "=");
    });
    if (!overridden) args.insert(args.end(), {name, value});
  }
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The last value given to option `name` (as "--name value" or "--name=value"), or empty.
std::string optionValue(const std::vector<std::string>& args, const std::string& name) {
  std::string value;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) value = args[i + 1];
    if (args[i].starts_with(name + "=")) value = args[i].substr(name.size() + 1);
  }
  return value;
}

// Whether the broker opens the listener of port option `name` ("off" and "0" turn it off).
bool listens(const std::vector<std::string>& args, const std::string& name) {
  const std::string value = optionValue(args, name);
  return !value.empty() && value != "off" && value != "0";
}

unsigned workersOf(const std::vector<std::string>& args) {
  unsigned workers = 1;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--workers" && i + 1 < args.size()) workers = std::atoi(args[i + 1].c_str());
    if (args[i].starts_with("--workers=")) workers = std::atoi(args[i].c_str() + 10);
  }
  return std::max(1u, workers);
}

double timeoutScale() {
  const char* text = std::getenv("TERN_TEST_TIMEOUT_SCALE");
  const double scale = text != nullptr ? std::atof(text) : 1.0;
  return scale > 0 ? scale : 1.0;
}

// Case files: each FILE, or every regular file of a directory (sorted, README* and dot files
// skipped). False with a message on stderr when one does not parse.
bool loadCases(const std::vector<std::string>& paths, std::vector<Case>& cases) {
  std::vector<fs::path> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> inside;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_regular_file() && !name.starts_with(".") && !name.starts_with("README")) {
          inside.push_back(entry.path());
        }
      }
      std::sort(inside.begin(), inside.end());
      files.insert(files.end(), inside.begin(), inside.end());
    } else if (fs::is_regular_file(p, ec)) {
      files.emplace_back(p);
    } else {
      std::cerr << "stream_fuzz: no such case file or directory: " << p << "\n";
      return false;
    }
  }
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    std::string error;
    std::string name = file.filename().string();
    if (const std::size_t dot = name.find('.'); dot != std::string::npos && dot > 0) {
      name.resize(dot);
    }
    auto parsed = parseCases(text.str(), name, error);
    if (!parsed) {
      std::cerr << "stream_fuzz: " << file.string() << ": " << error << "\n";
      return false;
    }
    for (Case& c : *parsed) {
      normalize(c);
      cases.push_back(std::move(c));
    }
  }
  return true;
}

bool writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

// The generated and mutated cases of a run, in order: fresh ones from the generator, or mutations
// of a parent from the pool (the file cases, then the generated ones, at most kPoolSize of those).
// Depends only on the seed and the file cases, never on what the broker did.
class CaseSource {
 public:
  CaseSource(std::uint64_t seed, const std::vector<Case>& fileCases)
      : seed_(seed), generator_(seed), pool_(fileCases), files_(fileCases.size()) {}

  const Case& next() {
    Rng& rng = generator_.rng();
    const std::string name = "s" + std::to_string(seed_) + "-" + std::to_string(count_++);
    Case c;
    if (pool_.empty() || rng.chance(35)) {
      c = generator_.generate(name + "-gen");
    } else {
      const Case& base = pool_[rng.below(pool_.size())];
      const Case& other = pool_[rng.below(pool_.size())];
      c = generator_.mutate(base, other, name + "-mut");
    }
    if (pool_.size() < files_ + kPoolSize) {
      pool_.push_back(std::move(c));
      return pool_.back();
    }
    Case& slot = pool_[files_ + rng.below(kPoolSize)];
    slot = std::move(c);
    return slot;
  }

 private:
  std::uint64_t seed_;
  Generator generator_;
  std::vector<Case> pool_;
  std::size_t files_;
  std::uint64_t count_ = 0;
};

// --dump: prints the cases and checks that each one's text reads back as the same case.
int dumpCases(const std::vector<Case>& fileCases, bool replaying, const Options& options) {
  std::vector<Case> cases = fileCases;
  if (!replaying) {
    CaseSource source(options.seed, fileCases);
    for (std::uint64_t n = 0; n < (options.cases != 0 ? options.cases : 10); ++n)
      cases.push_back(source.next());
  }
  int mismatches = 0;
  for (const Case& c : cases) {
    const std::string text = serialize(c);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::string error;
    const auto back = parseCases(text, "", error);
    if (!back || back->size() != 1 || (*back)[0].actions != c.actions) {
      std::fprintf(stderr, "stream_fuzz: case %s does not read back the same: %s\n", c.name.c_str(),
                   error.c_str());
      ++mismatches;
    }
  }
  return mismatches == 0 ? 0 : kFailure;
}

class Campaign {
 public:
  Campaign(const Options& options, BrokerProcess& broker, const RunCertificates& certificates,
           unsigned workers, double scale)
      : options_(options),
        broker_(broker),
        scale_(scale),
        executor_(endpoints(broker, certificates), scale),
        probe_(endpoints(broker, certificates), workers,
               Millis(static_cast<Millis::rep>(options.probeSeconds * 1000 * scale))) {}

  // Runs one case and checks the broker; false once a failure has been reported.
  bool run(const Case& c) {
    executor_.run(c);
    recent_.push_back(c);
    if (recent_.size() > kRecentCases) recent_.pop_front();
    std::string why;
    if (!broker_.alive()) {
      why = "the broker exited (" + describeStatus(*broker_.exitStatus()) + ")";
    } else if (why = probe_.check(); !why.empty() && exitsSoon()) {
      why += "; the broker exited (" + describeStatus(*broker_.exitStatus()) + ")";
    }
    if (why.empty()) return true;
    report(c.name, why);
    return false;
  }

  // Stops the broker and requires exit code 0; false (reported) otherwise.
  bool finish() {
    const int status = broker_.stop(Millis(static_cast<Millis::rep>(15000 * scale_)));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    report("shutdown", "the broker did not exit 0 on SIGTERM (" + describeStatus(status) + ")");
    return false;
  }

  // One line of figures; `progress` marks the periodic ones, the last one has none.
  // One line of figures, after any line of trouble figures; `progress` marks the periodic ones.
  void printSummary(std::uint64_t fromFiles, double seconds, bool progress = false) const {
    const ExecutorStats& s = executor_.stats();
    const char* prefix = progress ? "... " : "";
    std::printf("stream_fuzz: %s%llu TLS connections opened, %llu handshakes completed\n", prefix,
                static_cast<unsigned long long>(s.tlsConnections),
                static_cast<unsigned long long>(s.tlsHandshakes));
    std::printf("stream_fuzz: %s%llu WebSocket connections opened, %llu upgrades completed\n",
                prefix, static_cast<unsigned long long>(s.wsConnections),
                static_cast<unsigned long long>(s.wsUpgrades));
    if (s.connectFailures != 0 || s.actionsSkipped != 0) {
      std::printf("stream_fuzz: %s%llu connects failed, %llu actions skipped (case time limit)\n",
                  prefix, static_cast<unsigned long long>(s.connectFailures),
                  static_cast<unsigned long long>(s.actionsSkipped));
    }
    std::printf(
        "stream_fuzz: %s%llu cases run (%llu from files), %llu connections opened, %llu bytes "
        "sent, %.1f s, %.1f cases/s\n",
        prefix, static_cast<unsigned long long>(s.cases),
        static_cast<unsigned long long>(std::min<std::uint64_t>(s.cases, fromFiles)),
        static_cast<unsigned long long>(s.connections),
        static_cast<unsigned long long>(s.bytesSent), seconds,
        seconds > 0 ? static_cast<double>(s.cases) / seconds : 0.0);
    std::fflush(stdout);
  }

  const ExecutorStats& stats() const noexcept { return executor_.stats(); }

 private:
  static Endpoints endpoints(const BrokerProcess& broker, const RunCertificates& certificates) {
    return {broker.linePort(),    broker.mqttPort(),          broker.lineTlsPort(),
            broker.mqttTlsPort(), broker.mqttWsPort(),        broker.mqttWssPort(),
            certificates.client,  certificates.clientWithCert};
  }

  // After a failed probe: a broker that crashed may still be writing its sanitizer report.
  bool exitsSoon() {
    const Clock::time_point until = Clock::now() + Millis(static_cast<Millis::rep>(2000 * scale_));
    while (broker_.alive()) {
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(Millis(20));
    }
    return true;
  }

  void report(const std::string& caseName, const std::string& why) {
    // Stop first, so that a sanitizer report still being written is complete in stderr.
    const int status = broker_.stop(Millis(static_cast<Millis::rep>(10000 * scale_)));
    std::string name = caseName;  // a file name: no '/' or anything odd from a case file
    for (char& ch : name)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '.') ch = '_';
    std::error_code ec;
    const fs::path dir = fs::absolute(options_.artifacts, ec);
    fs::create_directories(dir, ec);
    const fs::path caseFile = dir / (name + ".case");
    const fs::path recentFile = dir / (name + ".recent.case");
    const fs::path stderrFile = dir / (name + ".broker-stderr.txt");
    std::string recent;
    for (const Case& c : recent_)
      recent += serialize(c) + "\n";
    bool ok = writeFile(recentFile, recent) && writeFile(stderrFile, broker_.stderrText());
    if (!recent_.empty() && name != "shutdown")
      ok = writeFile(caseFile, serialize(recent_.back())) && ok;
    std::printf("stream_fuzz: FAILURE after case %s: %s\n", name.c_str(), why.c_str());
    std::printf("  broker:        %s\n", describeStatus(status).c_str());
    if (name != "shutdown") std::printf("  case:          %s\n", caseFile.c_str());
    std::printf("  recent cases:  %s (the last %zu, in order)\n", recentFile.c_str(),
                recent_.size());
    std::printf("  broker stderr: %s\n", stderrFile.c_str());
    std::printf("  replay:        stream_fuzz --broker %s --replay %s\n", options_.broker.c_str(),
                (name != "shutdown" ? caseFile : recentFile).c_str());
    if (!ok) std::printf("  (writing some of these files failed)\n");
    std::fflush(stdout);
  }

  const Options& options_;
  BrokerProcess& broker_;
  double scale_;
  Executor executor_;
  Probe probe_;
  std::deque<Case> recent_;
};

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{
      "stream_fuzz: starts the broker, drives it over 127.0.0.1 with generated and mutated line "
      "and MQTT sessions, and checks after every case that a fresh client of each protocol is "
      "still served.",
      "stream_fuzz"};
  bool dump = false;
  app.add_option("--broker", options.broker, "The broker binary (required unless --dump)");
  app.add_flag("--dump", dump,
               "Print the cases a run would play (the --replay files, or the corpus and --cases "
               "generated ones) without a broker, and check that each reads back unchanged");
  app.add_option("--seconds", options.seconds, "Stop generating after this many seconds");
  app.add_option("--cases", options.cases, "Stop after this many generated or mutated cases");
  app.add_option("--seed", options.seed, "Seed of the generator (default: from the clock)");
  app.add_option("--corpus", options.corpus, "Seed cases, run first")->capture_default_str();
  app.add_option("--artifacts", options.artifacts, "Where a failure's files go")
      ->capture_default_str();
  app.add_option("--replay", options.replay,
                 "Run only these case files (or directories of them), then stop");
  app.add_option("--broker-arg", options.brokerArgs,
                 "Extra broker argument (repeatable; --broker-arg='--workers 4')");
  app.add_option("--probe-timeout", options.probeSeconds,
                 "Seconds each liveness probe may take, before TERN_TEST_TIMEOUT_SCALE")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  options.seedGiven = app.count("--seed") > 0;
  options.corpusGiven = app.count("--corpus") > 0;
  if (!options.seedGiven) {
    options.seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) % 1000000007;
  }
  const bool replaying = !options.replay.empty();
  if (!replaying && options.seconds <= 0 && options.cases == 0) options.seconds = 60;

  std::vector<std::string> extra;
  for (const std::string& a : options.brokerArgs) {
    std::istringstream words(a);
    for (std::string w; words >> w;)
      extra.push_back(w);
  }
  const double scale = timeoutScale();

  std::vector<Case> fileCases;
  if (replaying) {
    if (!loadCases(options.replay, fileCases)) return kUsage;
  } else if (fs::is_directory(options.corpus) || options.corpusGiven) {
    if (!loadCases({options.corpus}, fileCases)) return kUsage;
  } else {
    std::cerr << "stream_fuzz: no corpus at " << options.corpus << "; generating only\n";
  }

  if (dump) return dumpCases(fileCases, replaying, options);
  if (options.broker.empty()) {
    std::cerr << "stream_fuzz: --broker is required\n";
    return kUsage;
  }

  installInterruptHandlers();
  const RunPasswordFile passwords;
  if (passwords.path.empty()) {
    std::cerr << "stream_fuzz: could not write a password file under /tmp\n";
    return kUsage;
  }
  std::string error;
  const RunCertificates certificates(error);
  if (!certificates.client) {
    std::cerr << "stream_fuzz: could not make the TLS certificates: " << error << "\n";
    return kUsage;
  }
  const std::vector<std::string> args =
      brokerArguments(extra, passwords.path, *certificates.certificates);
  const bool tls = std::find(args.begin(), args.end(), "--tls-cert") != args.end() ||
                   std::any_of(args.begin(), args.end(),
                               [](const std::string& a) { return a.starts_with("--tls-cert="); });
  BrokerProcess::Listeners listeners;
  listeners.tls = tls;
  listeners.ws = listens(args, "--ws-port");
  listeners.wss = tls && listens(args, "--wss-port");
  auto broker = BrokerProcess::start(options.broker, args, listeners,
                                     Millis(static_cast<Millis::rep>(15000 * scale)), error);
  if (!broker) {
    std::cerr << "stream_fuzz: cannot start " << options.broker << ": " << error << "\n";
    return kUsage;
  }
  std::string command = options.broker;
  for (const std::string& a : args)
    command += " " + a;
  std::printf("stream_fuzz: seed %llu, %zu cases from %s; broker pid %d: %s\n",
              static_cast<unsigned long long>(options.seed), fileCases.size(),
              replaying ? "--replay" : options.corpus.c_str(), static_cast<int>(broker->pid()),
              command.c_str());
  std::fflush(stdout);

  const Clock::time_point started = Clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(Clock::now() - started).count();
  };
  Campaign campaign(options, *broker, certificates, workersOf(args), scale);
  bool ok = true;
  for (const Case& c : fileCases) {
    if (!(ok = campaign.run(c))) break;
  }
  if (ok && !replaying) {
    CaseSource source(options.seed, fileCases);
    double nextProgress = 10;
    for (std::uint64_t n = 0; ok; ++n) {
      if (options.cases != 0 && n >= options.cases) break;
      if (options.seconds > 0 && elapsed() >= options.seconds) break;
      ok = campaign.run(source.next());
      if (elapsed() >= nextProgress) {
        nextProgress += 10;
        campaign.printSummary(fileCases.size(), elapsed(), true);
      }
    }
  }
  if (ok) ok = campaign.finish();
  campaign.printSummary(fileCases.size(), elapsed());
  return ok ? 0 : kFailure;
}
