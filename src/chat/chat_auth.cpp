// ChatService: --auth jwt. The CONNECT hook checks the token; its claims
// say who the user is (subject, name) and where they may join and post;
// a token that expires during a session ends it unless refreshed first
// (docs/protocol.md, "Tokens").
#include "chat/chat_service_internal.hpp"

#include <spdlog/spdlog.h>

#include <utility>

namespace chat::app {

using nlohmann::json;
using transport::Ack;

namespace {
std::string_view token_of(const json& j) {
  if (j.is_string()) return j.get_ref<const std::string&>();
  if (j.is_object())
    if (auto it = j.find("token"); it != j.end() && it->is_string())
      return it->get_ref<const std::string&>();
  return {};
}
}  // namespace

transport::AuthResult ChatService::check_token(const json& auth) {
  auto result = options_.verifier->verify(token_of(auth), now_ms());
  if (auto* err = std::get_if<auth::AuthError>(&result)) {
    auth_refused_.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("CONNECT refused: {}", err->message);
    return std::optional<json>(json{{"message", err->message}, {"data", {{"code", err->code}}}});
  }
  // The socket carries the identity from here (Socket::data()).
  return transport::AuthResult::accept(
      std::make_shared<const auth::Identity>(std::move(std::get<auth::Identity>(result))));
}

bool ChatService::may_join(const LocalUser& u, const std::string& room) {
  if (!u.identity || options_.room_policy.may_join(*u.identity, room)) return true;
  forbidden_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool ChatService::may_post(const LocalUser& u, const std::string& room) {
  if (!u.identity || options_.room_policy.may_post(*u.identity, room)) return true;
  forbidden_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void ChatService::add_subject(const LocalUser& u, json& payload) {
  if (u.identity) payload["sub"] = u.identity->subject;
}

const std::string& ChatService::subject_of(const LocalUser& u) {
  static const std::string none;
  return u.identity ? u.identity->subject : none;
}

void ChatService::on_refresh_token(LocalUser& u, const json& args, Ack ack) {
  if (!admit(u, "refresh token", ack, false)) return;
  auto result =
      options_.verifier->verify(args.empty() ? std::string_view() : token_of(args[0]), now_ms());
  if (auto* err = std::get_if<auth::AuthError>(&result)) {
    auth_refused_.fetch_add(1, std::memory_order_relaxed);
    return fail(u, "refresh token", ack, ChatError{err->code, err->message});
  }
  auto& id = std::get<auth::Identity>(result);
  if (!u.identity || id.subject != u.identity->subject) {
    auth_refused_.fetch_add(1, std::memory_order_relaxed);
    return fail(u, "refresh token", ack,
                ChatError{"FORBIDDEN", "the new token is for another user (sub)"});
  }
  // New claims count for the next join and post; the name stays the one
  // the user logged in with. Restricted rooms the new token no longer
  // names are left at once, as if the user had left them.
  u.identity = std::make_shared<const auth::Identity>(std::move(id));
  json left = json::array();
  const auto rooms = u.rooms;
  for (const auto& room : rooms) {
    if (options_.room_policy.may_join(*u.identity, room)) continue;
    leave_local(u, room);
    {
      auto lk = presence_.lock();
      publish_presence(presence_.leave(u.user_id, room));
    }
    publish_room_event(u, room, "user left", membership_payload(u, room));
    left.push_back(room);
  }
  if (!left.empty()) publish_session(u);
  reply(ack, json{{"ok", true}, {"exp", u.identity->expires_ms / 1000}, {"left", std::move(left)}});
}

void ChatService::expire_tokens(unsigned w) {
  const auto now = now_ms();
  const auto leeway = options_.token_leeway.count();
  std::vector<transport::SocketPtr> expired;
  for (const auto& [socket, u] : states_[w]->users)
    if (u->identity && u->identity->expires_ms + leeway <= now) expired.push_back(u->socket);
  for (const auto& s : expired) {
    auth_expired_.fetch_add(1, std::memory_order_relaxed);
    s->emit("chat error",
            json::array({json{{"code", "TOKEN_EXPIRED"},
                              {"message", "the token expired: connect again with a new one"}}}));
    s->disconnect();
  }
}

}  // namespace chat::app
