// DedupeWindow: per-origin FIFO of recent ids.
#include "bus/dedupe_window.hpp"

namespace chat::bus {

bool DedupeWindow::first_time(const std::string& origin, const std::string& id) {
  if (per_origin_ == 0) return true;
  auto& w = by_origin_[origin];
  if (!w.ids.insert(id).second) return false;
  w.order.push_back(id);
  if (w.order.size() > per_origin_) {
    w.ids.erase(w.order.front());
    w.order.pop_front();
  }
  return true;
}

}  // namespace chat::bus
