// /v1/images (docs/images.md; api/openapi.yaml is the contract).
#include "handlers.hpp"

#include "kvmfleet/images/image_service.hpp"
#include "kvmfleet/images/vm_images.hpp"

#include <algorithm>
#include <charconv>

namespace kvmfleet::api {
namespace {

// Streams one upload's pieces into the image, and answers once it ends.
class UploadSink final : public http::BodySink {
 public:
  UploadSink(std::shared_ptr<Call> call, std::unique_ptr<images::Upload> upload)
      : call_(std::move(call)), upload_(std::move(upload)) {}

  Status write(const char* data, std::size_t size) override { return upload_->write(data, size); }
  void finish(http::Responder respond) override {
    call_->respond = std::move(respond);
    answer(*call_, upload_->finish());
  }
  void abort() override { upload_->abort(); }

  static void answer(Call& c, const Result<images::Image>& image) {
    if (!image) return c.fail(image.error());
    c.ok(HttpStatus::ok, images::to_json(*image));
  }

 private:
  std::shared_ptr<Call> call_;
  std::unique_ptr<images::Upload> upload_;
};

}  // namespace

void list_images(Controller& svc, Call& c) {
  json items = json::array();
  for (const auto& image : svc.images().list()) items.push_back(images::to_json(image));
  c.ok(HttpStatus::ok, {{"items", std::move(items)}});
}

void create_image(Controller& svc, Call& c) {
  auto body = body_of(c);
  if (!body) return c.fail(body.error());
  auto req = images::parse_image_create(*body);
  if (!req) return c.fail(req.error());
  auto image = svc.images().create(*req);
  if (!image) return c.fail(image.error());
  auto res = http::json_response(HttpStatus::created, images::to_json(*image), c.req.version(),
                                 c.req.keep_alive());
  res.set(http::bhttp::field::location, "/v1/images/" + image->name);
  c.reply(std::move(res));
}

void get_image(Controller& svc, Call& c) {
  auto image = svc.images().get(c.param("image"));
  if (!image) return c.fail(image.error());
  c.ok(HttpStatus::ok, images::to_json(*image));
}

void delete_image(Controller& svc, Call& c) {
  const std::string& name = c.param("image");
  auto users = svc.state().read([&](const ClusterState::Data& d) {
    std::vector<std::string> names;
    for (const auto& [id, vm] : d.vms)
      if (images::uses_image(vm.spec, name)) names.push_back(vm.spec.name);
    std::sort(names.begin(), names.end());
    return names;
  });
  if (!users.empty())
    return c.fail(conflict("VMs are made from this image; delete them first",
                           {{"image", name}, {"reason", "image_in_use"}, {"vms", users}}));
  if (auto st = svc.images().remove(name); !st) return c.fail(st.error());
  c.ok(HttpStatus::ok, json::object());
}

// A host's agent fetching a piece of an image's data to make a VM's disk from it
// (docs/images.md): ?offset=N (default 0) &length=N (1..8 MiB).
void agent_image_data(Controller& svc, Call& c) {
  auto number = [&](const char* key, std::uint64_t fallback) -> Result<std::uint64_t> {
    auto it = c.query.find(key);
    if (it == c.query.end()) return fallback;
    std::uint64_t v = 0;
    const auto& t = it->second;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc{} || ptr != t.data() + t.size())
      return invalid(std::string(key) + " must be a non-negative integer", {{"field", key}});
    return v;
  };
  auto offset = number("offset", 0);
  if (!offset) return c.fail(offset.error());
  auto length = number("length", images::ImageService::kMaxReadPiece);
  if (!length) return c.fail(length.error());
  if (*length > images::ImageService::kMaxReadPiece) *length = 0;  // refused below
  auto data = svc.images().read_data(c.param("image"), *offset, static_cast<std::size_t>(*length));
  if (!data) return c.fail(data.error());
  http::Response res{HttpStatus::ok, c.req.version()};
  res.set(http::bhttp::field::content_type, "application/octet-stream");
  res.keep_alive(c.req.keep_alive());
  res.body() = std::move(*data);
  res.prepare_payload();
  c.reply(std::move(res));
}

// The body already read whole (a server without open_body, or a small one).
void upload_image(Controller& svc, Call& c) {
  auto upload = svc.images().begin_upload(c.param("image"));
  if (!upload) return c.fail(upload.error());
  const std::string& body = c.req.body();
  if (auto st = (*upload)->write(body.data(), body.size()); !st) return c.fail(st.error());
  UploadSink::answer(c, (*upload)->finish());
}

Result<std::shared_ptr<http::BodySink>> open_image_upload(Controller& svc, Call& c) {
  auto upload = svc.images().begin_upload(c.param("image"));
  if (!upload) return upload.error();
  return std::shared_ptr<http::BodySink>(
      std::make_shared<UploadSink>(c.shared_from_this(), std::move(*upload)));
}

}  // namespace kvmfleet::api
