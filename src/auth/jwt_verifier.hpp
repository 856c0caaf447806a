// JwtVerifier: checks the token a client passes in its CONNECT auth
// ({auth: {token}}) and returns the Identity its claims give (--auth jwt).
//
// HS256/384/512 with a shared secret, or RS256/384/512 and ES256/384/512
// with a public key: one PEM file, or a JWKS file whose keys are picked by
// the token's "kid". The algorithm must be of the configured kind (a token
// signed "none", or HS256 against a public key, is refused before any
// signature check). Signatures are checked by libjwt (OpenSSL); claims are
// read here: "exp" is required, "nbf", "iss" and "aud" are checked when
// given or configured, each within the leeway. Never throws from verify().
#pragma once

#include "auth/identity.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>

namespace chat::auth {

struct JwtOptions {
  std::string secret;               // HS*: the shared secret
  std::string public_key_file;      // RS*/ES*: one PEM public key
  std::string jwks_file;            // RS*/ES*: a JWKS ({"keys": [...]}) with "kid"s
  std::string issuer;               // required "iss" when not empty
  std::string audience;             // required in "aud" when not empty
  std::chrono::seconds leeway{30};  // clock skew allowed for exp and nbf
};

// Why a token was refused: code for programs, message for people.
struct AuthError {
  std::string
      code;  // UNAUTHORIZED (missing, malformed, bad signature, wrong claims), TOKEN_EXPIRED
  std::string message;
};

class JwtVerifier {
 public:
  // Loads the key material; throws std::invalid_argument with a clear
  // message when none or more than one kind is given, or a file is unusable.
  explicit JwtVerifier(JwtOptions options);

  std::variant<Identity, AuthError> verify(std::string_view token, std::int64_t now_ms) const;
  // The algorithms accepted, for the start-up log ("HS256,HS384,HS512").
  std::string algorithms() const;

 private:
  struct Key {
    std::string pem;  // or the secret
    bool rsa = false, ec = false, hmac = false;
  };
  const Key* key_for(std::string_view alg, const std::string& kid, AuthError& err) const;

  JwtOptions options_;
  Key single_;                       // the secret or the PEM key
  std::map<std::string, Key> kids_;  // from the JWKS
};

}  // namespace chat::auth
