// JwtVerifier: the token checks of --auth jwt (jwt_verifier.hpp).
#include "auth/jwt_verifier.hpp"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace chat::auth {

using nlohmann::json;

// ------------------------------------------------------------ patterns

bool pattern_matches(std::string_view pattern, std::string_view room) {
  // Greedy with one back-track point: linear for patterns with one '*',
  // at most |pattern| * |room| steps otherwise (both are bounded).
  std::size_t p = 0, r = 0, star = std::string_view::npos, mark = 0;
  while (r < room.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = r;
    } else if (p < pattern.size() && pattern[p] == room[r]) {
      ++p;
      ++r;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      r = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool any_matches(const std::vector<std::string>& patterns, std::string_view room) {
  for (const auto& p : patterns)
    if (pattern_matches(p, room)) return true;
  return false;
}

// ------------------------------------------------------------ keys

namespace {

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(std::string(what) + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// base64url (no padding) to bytes; nullopt on anything else.
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string b64(in);
  for (auto& c : b64) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (!std::isalnum(static_cast<unsigned char>(c)))
      return std::nullopt;
  }
  const std::size_t pad = (4 - b64.size() % 4) % 4;
  b64.append(pad, '=');
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string to_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) return {};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

// The kind of a PEM public key (throws when it is none we can use).
void classify(const std::string& pem, bool& rsa, bool& ec, const std::string& what) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  Pkey key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) throw std::invalid_argument(what + ": not a PEM public key (BEGIN PUBLIC KEY)");
  rsa = EVP_PKEY_base_id(key.get()) == EVP_PKEY_RSA;
  ec = EVP_PKEY_base_id(key.get()) == EVP_PKEY_EC;
  if (!rsa && !ec) throw std::invalid_argument(what + ": the key is neither RSA nor EC");
}

// One JWK (RSA n/e, or EC P-256/384/521 x/y) as a PEM public key.
std::string jwk_to_pem(const json& k, const std::string& what) {
  const auto field = [&](const char* name) {
    auto it = k.find(name);
    if (it == k.end() || !it->is_string())
      throw std::invalid_argument(what + ": \"" + name + "\" missing");
    auto bytes = base64url_decode(it->get_ref<const std::string&>());
    if (!bytes || bytes->empty())
      throw std::invalid_argument(what + ": \"" + name + "\" is not base64url");
    return *bytes;
  };
  const auto kty = k.value("kty", std::string());
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> n(nullptr, BN_free), e(nullptr, BN_free);
  std::string pub;
  const char* type = nullptr;
  if (kty == "RSA") {
    const auto nb = field("n"), eb = field("e");
    n.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(nb.data()),
                      static_cast<int>(nb.size()), nullptr));
    e.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(eb.data()),
                      static_cast<int>(eb.size()), nullptr));
    if (!bld || !n || !e || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()))
      throw std::invalid_argument(what + ": bad RSA key");
    type = "RSA";
  } else if (kty == "EC") {
    const auto crv = k.value("crv", std::string());
    const char* group = crv == "P-256"   ? "prime256v1"
                        : crv == "P-384" ? "secp384r1"
                        : crv == "P-521" ? "secp521r1"
                                         : nullptr;
    if (!group) throw std::invalid_argument(what + ": curve \"" + crv + "\" not supported");
    pub = "\x04" + field("x") + field("y");
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub.data(),
                                          pub.size()))
      throw std::invalid_argument(what + ": bad EC key");
    type = "EC";
  } else {
    throw std::invalid_argument(what + ": kty \"" + kty + "\" not supported (RSA or EC)");
  }
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    throw std::invalid_argument(what + ": the key does not load");
  Pkey key(raw);
  auto pem = to_pem(key.get());
  if (pem.empty()) throw std::invalid_argument(what + ": the key does not load");
  return pem;
}

bool is_hmac(std::string_view alg) {
  return alg == "HS256" || alg == "HS384" || alg == "HS512";
}
bool is_rsa(std::string_view alg) {
  return alg == "RS256" || alg == "RS384" || alg == "RS512";
}
bool is_ec(std::string_view alg) {
  return alg == "ES256" || alg == "ES384" || alg == "ES512";
}

AuthError unauthorized(std::string message) {
  return AuthError{"UNAUTHORIZED", std::move(message)};
}

// A list claim of strings (patterns), bounded.
bool string_list(const json& claims, const char* name, std::vector<std::string>& out,
                 AuthError& err) {
  auto it = claims.find(name);
  if (it == claims.end()) return true;
  if (!it->is_array() || it->size() > kMaxPatterns) {
    err =
        unauthorized(std::string("the token's \"") + name + "\" claim must be a list of at most " +
                     std::to_string(kMaxPatterns) + " room patterns");
    return false;
  }
  for (const auto& p : *it) {
    if (!p.is_string() || p.get_ref<const std::string&>().size() > kMaxPatternBytes) {
      err = unauthorized(std::string("the token's \"") + name + "\" claim holds a bad pattern");
      return false;
    }
    out.push_back(p.get<std::string>());
  }
  return true;
}

}  // namespace

JwtVerifier::JwtVerifier(JwtOptions options) : options_(std::move(options)) {
  const int kinds =
      !options_.secret.empty() + !options_.public_key_file.empty() + !options_.jwks_file.empty();
  if (kinds != 1)
    throw std::invalid_argument(
        "--auth jwt needs exactly one of --jwt-secret (or --jwt-secret-file), --jwt-public-key, "
        "--jwt-jwks");
  if (!options_.secret.empty()) {
    if (options_.secret.size() < 32)
      throw std::invalid_argument("--jwt-secret: use at least 32 bytes (HS256 wants 256 bits)");
    single_.pem = options_.secret;
    single_.hmac = true;
  } else if (!options_.public_key_file.empty()) {
    single_.pem = read_file(options_.public_key_file, "--jwt-public-key");
    classify(single_.pem, single_.rsa, single_.ec, "--jwt-public-key " + options_.public_key_file);
  } else {
    const auto text = read_file(options_.jwks_file, "--jwt-jwks");
    const auto doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array())
      throw std::invalid_argument("--jwt-jwks " + options_.jwks_file +
                                  ": not a JWKS ({\"keys\": [...]})");
    for (const auto& k : doc["keys"]) {
      if (!k.is_object()) continue;
      const auto kid = k.value("kid", std::string());
      const auto what = "--jwt-jwks " + options_.jwks_file + " key \"" + kid + "\"";
      if (k.value("use", std::string("sig")) != "sig") continue;  // encryption keys
      Key key;
      key.pem = jwk_to_pem(k, what);
      classify(key.pem, key.rsa, key.ec, what);
      if (!kids_.emplace(kid, std::move(key)).second)
        throw std::invalid_argument(what + ": kid given twice");
    }
    if (kids_.empty())
      throw std::invalid_argument("--jwt-jwks " + options_.jwks_file + ": no signing key");
  }
}

std::string JwtVerifier::algorithms() const {
  bool rsa = single_.rsa, ec = single_.ec;
  for (const auto& [kid, k] : kids_) {
    rsa = rsa || k.rsa;
    ec = ec || k.ec;
  }
  std::string out;
  if (single_.hmac) out = "HS256,HS384,HS512";
  if (rsa) out += out.empty() ? "RS256,RS384,RS512" : ",RS256,RS384,RS512";
  if (ec) out += out.empty() ? "ES256,ES384,ES512" : ",ES256,ES384,ES512";
  return out;
}

const JwtVerifier::Key* JwtVerifier::key_for(std::string_view alg, const std::string& kid,
                                             AuthError& err) const {
  const Key* key = nullptr;
  if (kids_.empty()) {
    key = &single_;
  } else if (auto it = kids_.find(kid); it != kids_.end()) {
    key = &it->second;
  } else if (kid.empty() && kids_.size() == 1) {
    key = &kids_.begin()->second;
  } else {
    err = unauthorized("the token's key (kid \"" + kid + "\") is not one of the server's");
    return nullptr;
  }
  if ((key->hmac && is_hmac(alg)) || (key->rsa && is_rsa(alg)) || (key->ec && is_ec(alg)))
    return key;
  err = unauthorized("the token's algorithm \"" + std::string(alg) +
                     "\" is not accepted (accepted: " + algorithms() + ")");
  return nullptr;
}

std::variant<Identity, AuthError> JwtVerifier::verify(std::string_view token,
                                                      std::int64_t now_ms) const {
  if (token.empty()) return unauthorized("a token is required: connect with {auth: {token}}");
  if (token.size() > kMaxTokenBytes)
    return unauthorized("the token is longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  // The header says which algorithm and key; both are checked against the
  // configuration before libjwt sees the token.
  const auto dot = token.find('.');
  const auto header_bytes =
      dot == std::string_view::npos ? std::nullopt : base64url_decode(token.substr(0, dot));
  const auto header = header_bytes ? json::parse(*header_bytes, nullptr, false) : json();
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string())
    return unauthorized("the token is not a JWT (header.payload.signature)");
  const auto alg = header["alg"].get<std::string>();
  const auto kid = header.contains("kid") && header["kid"].is_string()
                       ? header["kid"].get<std::string>()
                       : std::string();
  AuthError err;
  const Key* key = key_for(alg, kid, err);
  if (!key) return err;

  const std::string text(token);  // libjwt wants it NUL-terminated
  jwt_t* raw = nullptr;
  const int rc =
      jwt_decode(&raw, text.c_str(), reinterpret_cast<const unsigned char*>(key->pem.data()),
                 static_cast<int>(key->pem.size()));
  std::unique_ptr<jwt_t, decltype(&jwt_free)> jwt(raw, jwt_free);
  if (rc != 0 || !jwt || jwt_str_alg(alg.c_str()) != jwt_get_alg(jwt.get()))
    return unauthorized("the token's signature does not verify");
  std::unique_ptr<char, decltype(&free)> grants(jwt_get_grants_json(jwt.get(), nullptr), free);
  const auto claims = grants ? json::parse(grants.get(), nullptr, false) : json();
  if (!claims.is_object()) return unauthorized("the token carries no claims");

  const auto leeway_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.leeway).count();
  const auto time_claim = [&](const char* name, std::int64_t& out) {
    auto it = claims.find(name);
    if (it == claims.end()) return false;
    if (!it->is_number() || !std::isfinite(it->get<double>())) return false;
    const double s = it->get<double>();
    if (s < 0 || s > 1e11) return false;  // beyond year 5000
    out = static_cast<std::int64_t>(s * 1000);
    return true;
  };
  Identity id;
  if (!time_claim("exp", id.expires_ms))
    return unauthorized("the token needs an \"exp\" claim (seconds since the epoch)");
  if (id.expires_ms + leeway_ms <= now_ms) return AuthError{"TOKEN_EXPIRED", "the token expired"};
  std::int64_t nbf = 0;
  if (claims.contains("nbf") && !time_claim("nbf", nbf))
    return unauthorized("the token's \"nbf\" claim is not a time");
  if (nbf > now_ms + leeway_ms) return unauthorized("the token is not valid yet (nbf)");
  if (!options_.issuer.empty() &&
      (!claims.contains("iss") || claims["iss"] != json(options_.issuer)))
    return unauthorized("the token's issuer is not \"" + options_.issuer + "\"");
  if (!options_.audience.empty()) {
    const auto aud = claims.value("aud", json());
    const bool ok =
        aud == json(options_.audience) ||
        (aud.is_array() && std::find(aud.begin(), aud.end(), json(options_.audience)) != aud.end());
    if (!ok) return unauthorized("the token is not for audience \"" + options_.audience + "\"");
  }
  if (!claims.contains("sub") || !claims["sub"].is_string() ||
      claims["sub"].get_ref<const std::string&>().empty() ||
      claims["sub"].get_ref<const std::string&>().size() > kMaxSubjectBytes)
    return unauthorized("the token needs a \"sub\" claim (the user id, 1 to " +
                        std::to_string(kMaxSubjectBytes) + " bytes)");
  id.subject = claims["sub"].get<std::string>();
  if (claims.contains("name")) {
    if (!claims["name"].is_string())
      return unauthorized("the token's \"name\" claim is not a string");
    id.name = claims["name"].get<std::string>();
  } else {
    id.name = id.subject;
  }
  if (!string_list(claims, "rooms", id.rooms, err)) return err;
  if (claims.contains("post")) {
    id.post.emplace();
    if (!string_list(claims, "post", *id.post, err)) return err;
  }
  if (claims.contains("admin")) {
    if (!claims["admin"].is_boolean())
      return unauthorized("the token's \"admin\" claim is not true or false");
    id.admin = claims["admin"].get<bool>();
  }
  return id;
}

}  // namespace chat::auth
