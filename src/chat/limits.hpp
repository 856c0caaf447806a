// Limits the chat application enforces on user input (configurable by flags).
#pragma once

#include <cstddef>
#include <string>

namespace chat::app {

struct Limits {
  std::size_t max_name = 32;       // characters (code points) after trimming
  std::size_t max_message = 2000;  // characters (code points)
  std::size_t max_room_name = 40;
  std::size_t max_rooms_per_user = 20;
  double rate_per_second = 20.0;     // chat events per user per second
  double burst = 40.0;               // bucket size
  std::size_t max_list_users = 500;  // users returned by "list users"
  // Per client address (all its users and sessions; CONNECTs count too) and
  // per room (messages into it on this replica). 0 disables.
  double ip_rate_per_second = 200.0;
  double ip_burst = 1000.0;
  double room_rate_per_second = 200.0;
  double room_burst = 400.0;
  std::size_t max_list_rooms = 200;  // rooms returned by "list rooms" (the largest first)
  std::string default_room = "general";
};

}  // namespace chat::app
