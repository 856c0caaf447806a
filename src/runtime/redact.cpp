// redact_url; see redact.hpp.
#include "runtime/redact.hpp"

namespace chat::runtime {

std::string redact_url(std::string_view url) {
  const auto scheme = url.find("://");
  const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  // The authority ends at the first '/', '?' or '#' after the scheme; the
  // user info at the last '@' inside it (a password may contain '@').
  auto end = url.find_first_of("/?#", start);
  if (end == std::string_view::npos) end = url.size();
  const auto at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  const auto userinfo = url.substr(start, at - start);
  const auto colon = userinfo.find(':');
  std::string out(url.substr(0, start));
  if (colon == std::string_view::npos) {
    out += "***";
  } else {
    out += userinfo.substr(0, colon);
    out += ":***";
  }
  out += url.substr(at);
  return out;
}

}  // namespace chat::runtime
