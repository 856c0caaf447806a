// The head of an HTTP/1.1 message, as the load generator and the reflector
// read it: the WebSocket upgrade only.
#pragma once

#include <cctype>
#include <string_view>

namespace loadgen {

// The value of a header (name given in lower case) in a head that ends with
// its last line's "\r\n"; empty when absent. The first line is skipped.
inline std::string_view header_value(std::string_view head, std::string_view lower_name) {
  std::size_t at = head.find("\r\n");
  while (at != std::string_view::npos && at + 2 < head.size()) {
    const auto line_start = at + 2;
    const auto line_end = head.find("\r\n", line_start);
    const auto line = head.substr(line_start, line_end - line_start);
    bool match = line.size() > lower_name.size() && line[lower_name.size()] == ':';
    for (std::size_t i = 0; match && i < lower_name.size(); ++i)
      match = std::tolower(static_cast<unsigned char>(line[i])) == lower_name[i];
    if (match) {
      auto v = line.substr(lower_name.size() + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return v;
    }
    at = line_end;
  }
  return {};
}

}  // namespace loadgen
