// API keys; see api_keys.hpp.
#include "auth/api_keys.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace chat::auth {

namespace {

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const auto start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return false;
  return true;
}

std::optional<std::array<unsigned char, 32>> unhex(std::string_view h) {
  if (h.size() != 64) return std::nullopt;
  std::array<unsigned char, 32> out{};
  for (std::size_t i = 0; i < 32; ++i) {
    unsigned v = 0;
    const auto r = std::from_chars(h.data() + 2 * i, h.data() + 2 * i + 2, v, 16);
    if (r.ec != std::errc{} || r.ptr != h.data() + 2 * i + 2) return std::nullopt;
    out[i] = static_cast<unsigned char>(v);
  }
  return out;
}

double positive(std::string_view v, const std::string& where) {
  double d = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), d);
  if (r.ec != std::errc{} || r.ptr != v.data() + v.size() || !std::isfinite(d) || d <= 0)
    throw std::invalid_argument(where + ": \"" + std::string(v) + "\" is not a positive number");
  return d;
}

}  // namespace

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 || n != 32)
    throw std::runtime_error("SHA-256 failed");
  return out;
}

std::string hex(const unsigned char* data, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

std::vector<ApiKey> parse_api_keys(std::string_view text) {
  std::vector<ApiKey> keys;
  std::set<std::string> names;
  std::size_t lineno = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto w = words(line);
    if (w.empty() || w[0].front() == '#') continue;
    const std::string where = "API keys, line " + std::to_string(lineno);
    if (w.size() < 2) throw std::invalid_argument(where + ": expected \"<name> <secret> ...\"");
    ApiKey k;
    if (!valid_name(w[0]))
      throw std::invalid_argument(where +
                                  ": a key name is 1 to 64 letters, digits, '-', '_' or '.'");
    k.name = std::string(w[0]);
    if (!names.insert(k.name).second)
      throw std::invalid_argument(where + ": key \"" + k.name + "\" is named twice");
    if (w[1].starts_with("sha256:")) {
      const auto h = unhex(w[1].substr(7));
      if (!h) throw std::invalid_argument(where + ": sha256: takes 64 hex digits");
      k.hash = *h;
    } else {
      if (w[1].size() < kMinApiSecret)
        throw std::invalid_argument(where + ": the secret of \"" + k.name + "\" is shorter than " +
                                    std::to_string(kMinApiSecret) + " characters");
      k.hash = sha256(w[1]);
    }
    for (std::size_t i = 2; i < w.size(); ++i) {
      const auto eq = w[i].find('=');
      const auto opt = w[i].substr(0, eq);
      const auto val = eq == std::string_view::npos ? std::string_view{} : w[i].substr(eq + 1);
      if (opt == "rooms" && !val.empty()) {
        std::size_t p = 0;
        while (p <= val.size()) {
          const auto c = val.find(',', p);
          const auto pat = val.substr(p, c == std::string_view::npos ? val.size() - p : c - p);
          if (pat.empty() || pat.size() > 1024)
            throw std::invalid_argument(where + ": empty or oversize room pattern");
          k.rooms.emplace_back(pat);
          if (c == std::string_view::npos) break;
          p = c + 1;
        }
      } else if (opt == "rate") {
        k.rate = positive(val, where);
      } else if (opt == "burst") {
        k.burst = positive(val, where);
      } else {
        throw std::invalid_argument(where + ": unknown option \"" + std::string(w[i]) +
                                    "\" (rooms=, rate=, burst=)");
      }
    }
    keys.push_back(std::move(k));
  }
  return keys;
}

std::vector<ApiKey> load_api_keys(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("API keys: cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  auto keys = parse_api_keys(ss.str());
  if (keys.empty()) throw std::invalid_argument("API keys: " + path + " holds no key");
  return keys;
}

const ApiKey* find_api_key(const std::vector<ApiKey>& keys, std::string_view token) {
  if (token.empty()) return nullptr;
  const auto h = sha256(token);
  const ApiKey* found = nullptr;
  for (const auto& k : keys)  // every key, each in constant time
    if (CRYPTO_memcmp(k.hash.data(), h.data(), h.size()) == 0) found = &k;
  return found;
}

}  // namespace chat::auth
