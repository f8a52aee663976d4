#include "kvmfleet/images/image_tool.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <fstream>

namespace kvmfleet::images {
namespace {

using nlohmann::json;

Error refused(std::string reason, std::string message) {
  return invalid(std::move(message), {{"reason", std::move(reason)}});
}

// The keys of qcow2's format-specific data that describe the image itself.
constexpr std::string_view kQcow2Keys[] = {"compat",        "compression-type", "lazy-refcounts",
                                           "refcount-bits", "corrupt",          "extended-l2",
                                           "bitmaps"};

Status check_qcow2(const json& specific) {
  if (!specific.is_object()) return {};
  const auto data = specific.find("data");
  if (data == specific.end()) return {};
  if (!data->is_object()) return refused("unreadable_image", "qemu-img info: bad format-specific");
  for (const auto& [key, value] : data->items()) {
    if (key.starts_with("data-file"))
      return refused("data_file", "image refers to an external data file");
    if (key == "encrypt") return refused("encrypted", "encrypted images are not accepted");
    if (key == "corrupt" && value == true) return refused("corrupt", "image is marked corrupt");
    bool known = false;
    for (auto k : kQcow2Keys) known = known || key == k;
    if (!known)
      return refused("unsupported_feature", "image uses an unsupported qcow2 feature: " + key);
  }
  return {};
}

}  // namespace

Result<std::string> QemuImgTool::info_json(const std::string& path) {
  // qemu-img reads "proto:..." and "json:{...}" as more than a file name: only plain
  // absolute paths of kvmfleet's own making reach it.
  if (!path.starts_with('/') || path.find_first_of(":,") != std::string::npos)
    return internal_error("qemu-img given an unsafe path", {{"path", path}});
  const std::vector<std::string> argv = {"qemu-img", "info", "--output=json", path};
  RunOptions opts;
  opts.timeout = std::chrono::seconds(60);
  opts.output_limit = std::size_t{1} << 20;
  auto out = runner_.run(argv, opts);
  if (!out) return out.error();
  if (!out->success() || out->out_truncated)
    return refused("unreadable_image", "qemu-img cannot read the image");
  return std::move(out->out);
}

Result<ImageInfo> check_image_info(std::string_view json_text, bool iso_signature) {
  const json info = json::parse(json_text, nullptr, false);
  if (!info.is_object()) return refused("unreadable_image", "qemu-img info: not a JSON object");
  for (const auto& [key, _] : info.items())
    if (key.find("backing") != std::string::npos)
      return refused("backing_file", "image has a backing file");
  if (const auto children = info.find("children"); children != info.end()) {
    if (!children->is_array()) return refused("unreadable_image", "qemu-img info: bad children");
    for (const auto& child : *children)
      if (!child.is_object() || child.value("name", "") != "file")
        return refused("external_reference", "image refers to another file");
  }
  if (info.value("encrypted", false) == true)
    return refused("encrypted", "encrypted images are not accepted");
  const auto format = info.find("format");
  const auto vsize = info.find("virtual-size");
  if (format == info.end() || !format->is_string() || vsize == info.end() ||
      !vsize->is_number_unsigned())
    return refused("unreadable_image", "qemu-img info: no format or virtual size");
  const std::string fmt = format->get<std::string>();
  if (const auto filename = info.find("filename");
      filename != info.end() &&
      (!filename->is_string() || filename->get<std::string>().starts_with("json:")))
    return refused("external_reference", "image refers to another file");
  ImageInfo out;
  out.virtual_size = vsize->get<std::uint64_t>();
  if (fmt == "qcow2") {
    if (auto specific = info.find("format-specific"); specific != info.end())
      if (auto st = check_qcow2(*specific); !st) return st.error();
    out.format = "qcow2";
  } else if (fmt == "raw") {
    out.format = iso_signature ? "iso" : "raw";
  } else {
    return refused("unsupported_format", "image format " + fmt + " is not accepted");
  }
  if (out.virtual_size == 0) return refused("unreadable_image", "image is empty");
  return out;
}

bool has_iso9660_signature(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  in.seekg(32769);
  std::array<char, 5> magic{};
  if (!in.read(magic.data(), magic.size())) return false;
  return std::string_view(magic.data(), magic.size()) == "CD001";
}

}  // namespace kvmfleet::images
