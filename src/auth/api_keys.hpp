// API keys of the publish API: who a backend is.
//
// A keys file holds one key per line (docs/api.md):
//   <name> <secret> [rooms=<pattern>,...] [rate=<per second>] [burst=<n>]
// The secret is the bearer token itself (at least 32 characters) or
// "sha256:<64 hex digits>", its SHA-256, so that the file need not hold it.
// Blank lines and lines starting with '#' are skipped. Only the hashes are
// kept in memory; a presented token is hashed and compared with every key in
// constant time.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chat::auth {

struct ApiKey {
  std::string name;
  std::array<unsigned char, 32> hash{};  // SHA-256 of the secret
  std::vector<std::string> rooms;        // patterns (identity.hpp); empty: every room
  double rate = 0;                       // messages per second; 0: the default
  double burst = 0;                      // 0: the default
};

inline constexpr std::size_t kMinApiSecret = 32;

// Parse a keys file's text; throws std::invalid_argument naming the line.
std::vector<ApiKey> parse_api_keys(std::string_view text);
// Read and parse a file; throws std::invalid_argument (unreadable, bad line, no key).
std::vector<ApiKey> load_api_keys(const std::string& path);

std::array<unsigned char, 32> sha256(std::string_view data);
std::string hex(const unsigned char* data, std::size_t n);

// The key whose secret token is, if any.
const ApiKey* find_api_key(const std::vector<ApiKey>& keys, std::string_view token);

}  // namespace chat::auth
