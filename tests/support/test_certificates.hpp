// TestCertificates: a throw-away CA, a server certificate for 127.0.0.1/localhost and client
// certificates, made at test time with OpenSSL (no key is ever committed) and written as PEM files
// into a fresh directory under /tmp that the destructor removes.
//
// Keys are EC P-256 (fast to make: a whole set takes milliseconds). Header-only, for the unit
// tests, the functional tests and the fuzz targets. Single-threaded use by one test.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace tern::testing {

class TestCertificates {
 public:
  TestCertificates() {
    char pattern[] = "/tmp/tern-certs-XXXXXX";
    if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    caKey_ = EVP_EC_gen("P-256");
    ca_ = makeCertificate("tern test CA", caKey_, nullptr, caKey_, /*isCa=*/true, {});
    write(dir_ + "/ca.pem", ca_, nullptr);
    EVP_PKEY* serverKey = EVP_EC_gen("P-256");
    X509* server =
        makeCertificate("localhost", serverKey, ca_, caKey_, false, "IP:127.0.0.1,DNS:localhost");
    write(dir_ + "/server.pem", server, serverKey);
    X509_free(server);
    EVP_PKEY_free(serverKey);
  }
  ~TestCertificates() {
    X509_free(ca_);
    EVP_PKEY_free(caKey_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TestCertificates(const TestCertificates&) = delete;
  TestCertificates& operator=(const TestCertificates&) = delete;

  const std::string& dir() const noexcept { return dir_; }
  std::string caFile() const { return dir_ + "/ca.pem"; }
  std::string serverCert() const { return dir_ + "/server.pem.crt"; }
  std::string serverKey() const { return dir_ + "/server.pem.key"; }

  // A client certificate with subject CN `commonName`, signed by this CA (or, `trusted` false,
  // by a CA of its own that nobody trusts). Returns the base path: <base>.crt and <base>.key.
  std::string makeClient(const std::string& commonName, bool trusted = true) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    EVP_PKEY* otherCaKey = trusted ? nullptr : EVP_EC_gen("P-256");
    X509* otherCa =
        trusted ? nullptr
                : makeCertificate("untrusted CA", otherCaKey, nullptr, otherCaKey, true, {});
    X509* cert = makeCertificate(commonName, key, trusted ? ca_ : otherCa,
                                 trusted ? caKey_ : otherCaKey, false, {});
    const std::string base = dir_ + "/client-" + std::to_string(++clients_) + ".pem";
    write(base, cert, key);
    X509_free(cert);
    X509_free(otherCa);
    EVP_PKEY_free(otherCaKey);
    EVP_PKEY_free(key);
    return base;
  }

 private:
  static X509* makeCertificate(const std::string& commonName, EVP_PKEY* key, X509* issuer,
                               EVP_PKEY* issuerKey, bool isCa, const std::string& altNames) {
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(commonName.c_str()), -1, -1,
                               0);
    X509_set_issuer_name(cert, issuer != nullptr ? X509_get_subject_name(issuer) : name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
    const auto extend = [&](int nid, const char* value) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      if (ext == nullptr) throw std::runtime_error("cannot make a certificate extension");
      X509_add_ext(cert, ext, -1);
      X509_EXTENSION_free(ext);
    };
    extend(NID_basic_constraints, isCa ? "critical,CA:TRUE" : "CA:FALSE");
    if (isCa) extend(NID_key_usage, "critical,keyCertSign,cRLSign");
    if (!altNames.empty()) extend(NID_subject_alt_name, altNames.c_str());
    if (X509_sign(cert, issuerKey, EVP_sha256()) == 0) throw std::runtime_error("X509_sign failed");
    return cert;
  }

  // <path> for a CA alone; <path>.crt and <path>.key otherwise.
  static void write(const std::string& path, X509* cert, EVP_PKEY* key) {
    const std::string certPath = key == nullptr ? path : path + ".crt";
    FILE* f = std::fopen(certPath.c_str(), "w");
    if (f == nullptr) throw std::runtime_error("cannot write " + certPath);
    PEM_write_X509(f, cert);
    std::fclose(f);
    if (key == nullptr) return;
    const std::string keyPath = path + ".key";
    f = std::fopen(keyPath.c_str(), "w");
    if (f == nullptr) throw std::runtime_error("cannot write " + keyPath);
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }

  std::string dir_;
  EVP_PKEY* caKey_ = nullptr;
  X509* ca_ = nullptr;
  int clients_ = 0;
};

}  // namespace tern::testing
