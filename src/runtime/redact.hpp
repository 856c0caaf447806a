// Credentials out of log lines: a URL with its password replaced.
#pragma once

#include <string>
#include <string_view>

namespace chat::runtime {

// "amqp://user:secret@host:5672/vh" -> "amqp://user:***@host:5672/vh".
// Anything that looks like user info before the host loses its password
// (the whole user info when it cannot be split); other text is unchanged.
std::string redact_url(std::string_view url);

}  // namespace chat::runtime
