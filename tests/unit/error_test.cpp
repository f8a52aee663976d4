#include "kvmfleet/common/error.hpp"
#include "kvmfleet/http/types.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace kvmfleet;

namespace {
const std::vector<ErrorCode> kAll = {
    ErrorCode::invalid_argument,   ErrorCode::unauthenticated, ErrorCode::permission_denied,
    ErrorCode::not_found,          ErrorCode::conflict,        ErrorCode::insufficient_capacity,
    ErrorCode::payload_too_large,  ErrorCode::request_timeout, ErrorCode::unsupported_media,
    ErrorCode::method_not_allowed, ErrorCode::unavailable,     ErrorCode::timeout,
    ErrorCode::cancelled,          ErrorCode::internal,        ErrorCode::not_implemented};
}

TEST(ErrorTaxonomy, EveryCodeHasAUniqueStableNameThatRoundTrips) {
  std::set<std::string> names;
  for (auto c : kAll) {
    const std::string n(to_string(c));
    EXPECT_TRUE(names.insert(n).second) << n;
    EXPECT_EQ(error_code_from_string(n), c) << n;
  }
  EXPECT_EQ(error_code_from_string("no-such-code"), ErrorCode::internal);
}

TEST(ErrorTaxonomy, MapsToHttpStatusInOnePlace) {
  using S = http::HttpStatus;
  EXPECT_EQ(http::status_for(ErrorCode::invalid_argument), S::bad_request);
  EXPECT_EQ(http::status_for(ErrorCode::unauthenticated), S::unauthorized);
  EXPECT_EQ(http::status_for(ErrorCode::permission_denied), S::forbidden);
  EXPECT_EQ(http::status_for(ErrorCode::not_found), S::not_found);
  EXPECT_EQ(http::status_for(ErrorCode::conflict), S::conflict);
  EXPECT_EQ(http::status_for(ErrorCode::insufficient_capacity), S::unprocessable_entity);
  EXPECT_EQ(http::status_for(ErrorCode::payload_too_large), S::payload_too_large);
  EXPECT_EQ(http::status_for(ErrorCode::request_timeout), S::request_timeout);
  EXPECT_EQ(http::status_for(ErrorCode::unsupported_media), S::unsupported_media_type);
  EXPECT_EQ(http::status_for(ErrorCode::unavailable), S::service_unavailable);
  EXPECT_EQ(http::status_for(ErrorCode::not_implemented), S::not_implemented);
  EXPECT_EQ(http::status_for(ErrorCode::internal), S::internal_server_error);
  for (auto c : kAll) {
    const unsigned s = static_cast<unsigned>(http::status_for(c));
    EXPECT_GE(s, 400u) << to_string(c);
  }
}

TEST(ErrorTaxonomy, ErrorBodyHasCodeMessageDetails) {
  auto res = http::error_response(conflict("busy", {{"vm", "a"}}));
  EXPECT_EQ(res.result(), http::HttpStatus::conflict);
  EXPECT_EQ(res[http::bhttp::field::content_type], "application/json");
  auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["error"]["code"], "conflict");
  EXPECT_EQ(j["error"]["message"], "busy");
  EXPECT_EQ(j["error"]["details"]["vm"], "a");
  Error back = Error::from_json(j);
  EXPECT_EQ(back.code, ErrorCode::conflict);
  EXPECT_EQ(back.message, "busy");
}

TEST(ErrorTaxonomy, InvalidUtf8InAMessageIsReplacedNotThrown) {
  auto res = http::error_response(invalid(std::string("bad \xff\xfe name")));
  EXPECT_FALSE(nlohmann::json::parse(res.body(), nullptr, false).is_discarded());
}
