// Edge policy helpers; see net_policy.hpp.
#include "transport/net_policy.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace chat::transport {

namespace ip = boost::asio::ip;

namespace {
std::string_view strip(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<ip::address> parse_address(std::string_view s) {
  boost::system::error_code ec;
  auto a = ip::make_address(std::string(s), ec);
  if (ec) return std::nullopt;
  return unmap(a);
}

// An X-Forwarded-For entry: "1.2.3.4", "1.2.3.4:5678", "::1", "[::1]:5678".
std::optional<ip::address> parse_hop(std::string_view s) {
  s = strip(s);
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    return parse_address(s.substr(1, close - 1));
  }
  if (std::count(s.begin(), s.end(), ':') == 1) s = s.substr(0, s.find(':'));
  return parse_address(s);
}
}  // namespace

ip::address unmap(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

bool Cidr::contains(const ip::address& raw) const {
  const auto a = unmap(raw);
  if (a.is_v4() != base.is_v4()) return false;
  if (a.is_v4()) {
    const auto x = a.to_v4().to_uint(), y = base.to_v4().to_uint();
    const std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
    return (x & mask) == (y & mask);
  }
  const auto x = a.to_v6().to_bytes(), y = base.to_v6().to_bytes();
  unsigned bits = prefix;
  for (std::size_t i = 0; i < x.size() && bits > 0; ++i) {
    const unsigned take = std::min(bits, 8u);
    const auto mask = static_cast<unsigned char>(0xFF << (8 - take));
    if ((x[i] & mask) != (y[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::optional<Cidr> parse_cidr(std::string_view text) {
  text = strip(text);
  const auto slash = text.find('/');
  auto a = parse_address(text.substr(0, slash));
  if (!a) return std::nullopt;
  const unsigned max = a->is_v4() ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    const auto p = text.substr(slash + 1);
    const auto r = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || r.ec != std::errc{} || r.ptr != p.data() + p.size() || prefix > max)
      return std::nullopt;
  }
  return Cidr{*a, prefix};
}

TrustedProxies TrustedProxies::parse(std::string_view list) {
  TrustedProxies t;
  if (strip(list) == "none") return t;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const auto item = strip(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (item.empty()) continue;
    auto c = parse_cidr(item);
    if (!c)
      throw std::invalid_argument("not an address or CIDR block: \"" + std::string(item) + "\"");
    t.blocks_.push_back(*c);
  }
  return t;
}

bool TrustedProxies::contains(const ip::address& a) const {
  return std::any_of(blocks_.begin(), blocks_.end(), [&](const Cidr& c) { return c.contains(a); });
}

ip::address resolve_client(const ip::address& peer, std::string_view forwarded,
                           const TrustedProxies& trusted) {
  auto current = unmap(peer);
  while (trusted.contains(current) && !strip(forwarded).empty()) {
    const auto comma = forwarded.rfind(',');
    const auto hop = comma == std::string_view::npos ? forwarded : forwarded.substr(comma + 1);
    forwarded = comma == std::string_view::npos ? std::string_view{} : forwarded.substr(0, comma);
    if (strip(hop).empty()) continue;
    auto a = parse_hop(hop);
    if (!a) break;
    current = *a;
  }
  return current;
}

std::optional<std::string> normalize_origin(std::string_view origin) {
  origin = strip(origin);
  const auto sep = origin.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  std::string scheme(origin.substr(0, sep));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (char c : scheme)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return std::nullopt;
  std::string_view authority = origin.substr(sep + 3);
  if (authority.empty() || authority.find_first_of("/?#@ ") != std::string_view::npos)
    return std::nullopt;
  std::string auth(authority);
  std::transform(auth.begin(), auth.end(), auth.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // Port: after the last ':' unless that is inside an IPv6 literal.
  const auto colon = auth.rfind(':');
  const auto bracket = auth.rfind(']');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    const auto port = auth.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443"))
      auth.resize(colon);
  }
  if (auth.empty()) return std::nullopt;
  return scheme + "://" + auth;
}

bool origin_allowed(std::string_view origin, std::string_view scheme, std::string_view host,
                    const std::vector<std::string>& allowed) {
  const auto o = normalize_origin(origin);
  if (!o) return false;
  if (!host.empty()) {
    std::string self(scheme);
    self += "://";
    self += host;
    if (const auto s = normalize_origin(self); s && *s == *o) return true;
  }
  return std::find(allowed.begin(), allowed.end(), *o) != allowed.end();
}

}  // namespace chat::transport
