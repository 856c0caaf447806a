// Room patterns, the room policy and the token checks that need no client
// (the official client's side is tests/integration/auth-jwt.test.mjs).
#include "auth/identity.hpp"
#include "auth/jwt_verifier.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <variant>

namespace {

using chat::auth::AuthError;
using chat::auth::Identity;
using chat::auth::JwtOptions;
using chat::auth::JwtVerifier;
using chat::auth::pattern_matches;
using chat::auth::RoomPolicy;

TEST(AuthTest, PatternsMatchWholeNames) {
  EXPECT_TRUE(pattern_matches("team-*", "team-red"));
  EXPECT_TRUE(pattern_matches("team-*", "team-"));
  EXPECT_FALSE(pattern_matches("team-*", "my-team-red"));
  EXPECT_TRUE(pattern_matches("*-ops", "eu-ops"));
  EXPECT_FALSE(pattern_matches("*-ops", "eu-ops2"));
  EXPECT_TRUE(pattern_matches("a*b*c", "aXbYbZc"));
  EXPECT_FALSE(pattern_matches("a*b*c", "aXbYbZ"));
  EXPECT_TRUE(pattern_matches("*", "anything"));
  EXPECT_TRUE(pattern_matches("staff", "staff"));
  EXPECT_FALSE(pattern_matches("staff", "staff2"));
  EXPECT_FALSE(pattern_matches("", "x"));
}

TEST(AuthTest, RestrictedRoomsNeedAClaimAndPostClaimsLimitPosting) {
  const RoomPolicy policy({"staff", "team-*"});
  Identity user;
  user.rooms = {"team-red"};
  EXPECT_TRUE(policy.may_join(user, "general"));
  EXPECT_TRUE(policy.may_join(user, "team-red"));
  EXPECT_FALSE(policy.may_join(user, "team-blue"));
  EXPECT_FALSE(policy.may_join(user, "staff"));
  EXPECT_TRUE(policy.may_post(user, "staff"));  // no post claim: wherever a member
  user.post = std::vector<std::string>{"team-*"};
  EXPECT_FALSE(policy.may_post(user, "general"));
  EXPECT_TRUE(policy.may_post(user, "team-red"));
  Identity admin;
  admin.admin = true;
  admin.post = std::vector<std::string>{};
  EXPECT_TRUE(policy.may_join(admin, "staff"));
  EXPECT_TRUE(policy.may_post(admin, "staff"));
}

TEST(AuthTest, KeysAreCheckedAtStart) {
  EXPECT_THROW(JwtVerifier(JwtOptions{}), std::invalid_argument);
  JwtOptions short_secret;
  short_secret.secret = "too short";
  EXPECT_THROW(JwtVerifier{short_secret}, std::invalid_argument);
  JwtOptions missing;
  missing.public_key_file = "/nonexistent/key.pem";
  EXPECT_THROW(JwtVerifier{missing}, std::invalid_argument);
}

TEST(AuthTest, MalformedTokensAreRefusedWithAReason) {
  JwtOptions o;
  o.secret = std::string(40, 's');
  const JwtVerifier v(o);
  for (const std::string& token :
       {std::string(), std::string("abc"), std::string("a.b.c"), std::string("...."),
        std::string(9000, 'x'),
        // {"alg":"none"} . {"sub":"u","exp":9999999999} . (no signature)
        std::string("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ."),
        // {"alg":"HS256"} with a signature of another key
        std::string("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA")}) {
    const auto r = v.verify(token, 1000);
    ASSERT_TRUE(std::holds_alternative<AuthError>(r)) << token;
    EXPECT_EQ(std::get<AuthError>(r).code, "UNAUTHORIZED") << token;
    EXPECT_FALSE(std::get<AuthError>(r).message.empty());
  }
}

}  // namespace
