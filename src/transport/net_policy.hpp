// Pure helpers of the edge policy: which peers are trusted proxies (CIDR
// lists), the client address behind them (X-Forwarded-For), and which
// browser origins may use the server (Origin against Host and an allow-list).
#pragma once

#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chat::transport {

// One address block: "10.0.0.0/8", "::1", "fd00::/8", "192.168.1.7".
struct Cidr {
  boost::asio::ip::address base;  // IPv4-mapped IPv6 is stored as IPv4
  unsigned prefix = 0;
  bool contains(const boost::asio::ip::address& a) const;
};

// nullopt when text is not an address or a block.
std::optional<Cidr> parse_cidr(std::string_view text);

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as IPv4, others unchanged.
boost::asio::ip::address unmap(const boost::asio::ip::address& a);

class TrustedProxies {
 public:
  TrustedProxies() = default;
  // Comma-separated blocks; "none" or "" for no proxy. Throws
  // std::invalid_argument naming the bad entry (start-up only).
  static TrustedProxies parse(std::string_view list);
  bool contains(const boost::asio::ip::address& a) const;
  bool empty() const { return blocks_.empty(); }

 private:
  std::vector<Cidr> blocks_;
};

// The client address of a request from peer carrying X-Forwarded-For values
// forwarded (all headers joined with ","; empty when absent). The list is
// read from the right: each hop added by a trusted proxy is believed, the
// first address not in trusted is the client. Without a trusted peer the
// header is ignored. Unparsable entries stop the walk.
boost::asio::ip::address resolve_client(const boost::asio::ip::address& peer,
                                        std::string_view forwarded, const TrustedProxies& trusted);

// "Scheme://host[:port]" lower-cased with the scheme's default port removed;
// nullopt for anything else ("null", paths, user info).
std::optional<std::string> normalize_origin(std::string_view origin);

// Whether a browser page at origin may use this server: its own origin
// (scheme + host the request was sent to), or one of allowed (normalized).
bool origin_allowed(std::string_view origin, std::string_view scheme, std::string_view host,
                    const std::vector<std::string>& allowed);

}  // namespace chat::transport
