#pragma once

#include "kvmfleet/common/error.hpp"
#include "kvmfleet/common/result.hpp"

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

namespace kvmfleet::http {

namespace bhttp = boost::beast::http;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;
using HttpStatus = bhttp::status;
using Verb = bhttp::verb;

// Answers a request. A handler may call `respond` before returning (the usual case)
// or keep it and call it later from any thread (long polls such as ?wait=); it must
// be called exactly once. Handlers do no network I/O themselves.
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&&, Responder)>;

using RequestHeader = bhttp::request_header<>;

// Where a streamed request body goes, chunk by chunk, instead of into memory: for the
// few routes whose bodies may be of any size (an image upload). Its calls come one at a
// time; exactly one of finish and abort ends it.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // The next piece of the body. An error is answered (the connection then closes).
  virtual kvmfleet::Status write(const char* data, std::size_t size) = 0;
  // The whole body arrived: answer the request through `respond` (exactly once).
  virtual void finish(Responder respond) = 0;
  // The body ended early (the client closed or stalled past the read timeout), or a
  // write failed: undo whatever the body made.
  virtual void abort() = 0;
};

// Asked once a request's header has arrived: a sink to stream its body into, nullptr to
// read the body whole (within the body limit) and hand it to the Handler as usual, or
// the error that answers the request without reading its body.
using BodyOpener = std::function<kvmfleet::Result<std::shared_ptr<BodySink>>(const RequestHeader&)>;

// The one place where error categories become HTTP statuses.
HttpStatus status_for(ErrorCode code);

Response json_response(HttpStatus status, const nlohmann::json& body, unsigned version = 11,
                       bool keep_alive = true);
// The same, for a body already serialized as json_response would (see json_text).
Response json_response(HttpStatus status, std::string text, unsigned version, bool keep_alive);
// What json_response puts in a body for `body`.
std::string json_text(const nlohmann::json& body);
// {"error": {...}} with the status that status_for gives.
Response error_response(const Error& error, unsigned version = 11, bool keep_alive = true);

// The bearer token of an Authorization header, or empty.
std::string_view bearer_token(const Request& req);

// Whether a Content-Type value names the media type `type` (lowercase, e.g.
// "application/json"): compared without case, parameters such as charset ignored.
bool media_type_is(std::string_view content_type, std::string_view type);

// The codings a request's body may come in: a Content-Encoding other than identity is
// unsupported_media (415), a Transfer-Encoding other than chunked not_implemented (501).
Status check_codings(const Request& req);

}  // namespace kvmfleet::http
