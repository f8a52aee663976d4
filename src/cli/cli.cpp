#include "kvmfleet/cli/cli.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace kvmfleet::cli {
namespace {

using nlohmann::json;

constexpr const char* kUsage =
    R"(usage: kvmfleet [--url URL] [--token TOKEN | --token-file FILE] [-o table|json] COMMAND

commands:
  hosts                               list hosts
  host get NAME                       show one host
  host add NAME AGENT_URL             register a host (prints its agent token)
  host cordon|uncordon NAME           make a host unschedulable / schedulable
  host fencing show NAME              a host's fence devices (secrets show as set)
  host fencing set NAME FILE          set a host's fence devices from a JSON file:
                                      {"devices": [{"agent": "fence_ipmilan",
                                      "options": {"ip": ..., "password": ...}}]}
  host fence NAME [--wait SECONDS]    power a host off with its fence devices
  host confirm-down NAME --reason TEXT
                                      an admin's word that a host runs nothing
  vms [--host H] [--state S]          list VMs
  vm get ID|NAME                      show one VM
  vm create NAME --memory MIB [--vcpus N] [--disk GIB]... [--host H]
            [--group G] [--ha] [--ha-priority N] [--ha-max-restarts N]
            [--nic NETWORK[,MAC][,MODEL]]... [--start]
            [--image NAME [--disk-size GIB]] [--cdrom ISO_IMAGE]
            [--boot disk,cdrom,network] [--cloud-init-user-data FILE]
            [--cloud-init-meta-data FILE] [--cloud-init-network-config FILE]
            [--hostname NAME] [--ssh-key FILE]... [--wait SECONDS]
                                      --image: the first disk is a copy of the
                                      image; --ssh-key: a .pub or authorized_keys file
  vm start|reboot|destroy ID [--wait SECONDS]
  vm stop ID [--timeout SECONDS] [--force] [--wait SECONDS]
  vm delete ID [--force] [--wait SECONDS]
  vm console ID                       the serial console in this terminal (Ctrl-] leaves)
  vm console-log ID [--tail N]        the last N lines of the console log (default 100)
  vm nic add ID --network NETWORK [--mac MAC] [--model virtio|e1000|rtl8139]
            [--wait SECONDS]          add a NIC (to the running guest too when it runs)
  vm nic remove ID MAC [--wait SECONDS]
                                      remove a NIC
  ha                                  HA: VMs of failed hosts that wait, and why
  place NAME --memory MIB [--vcpus N] [--host H] [--group G]
                                      placement dry run: where and why
  network list                        list networks
  network show NAME                   one network and where it is usable
  network create NAME --bridge BR [--vlan ID --uplink IF] [--mtu N]
            [--wait SECONDS]          make a network on every host that is up
  network delete NAME                 forget a network no VM NIC uses
  ops [--state S] [--limit N]         list operations, newest first
  op get ID [--wait SECONDS]          show (or wait for) one operation
  op cancel ID                        cancel an operation
  images                              list images (also: image list)
  image show NAME                     show one image
  image upload NAME FILE [--sha256 HEX] [--format raw|qcow2|iso]
                                      import an image: its record, then its data
  image delete NAME                   delete an image

URL and token default to $KVMFLEET_URL and $KVMFLEET_TOKEN.
)";

struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> options;  // --key value; flags get "true"
  bool has(const std::string& k) const { return options.count(k) > 0; }
  std::string get(const std::string& k, const std::string& fallback = {}) const {
    auto it = options.find(k);
    return it == options.end() ? fallback : it->second;
  }
};

const std::vector<std::string> kFlags = {"--ha", "--start", "--force", "--help"};

std::optional<Args> parse_args(const std::vector<std::string>& argv, std::ostream& err) {
  Args a;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s == "-o") {
      if (i + 1 >= argv.size()) {
        err << "kvmfleet: -o needs a value\n";
        return std::nullopt;
      }
      a.options.emplace("-o", argv[++i]);
    } else if (s.rfind("--", 0) == 0 && s.size() > 2) {
      const auto eq = s.find('=');
      if (eq != std::string::npos) {
        a.options.emplace(s.substr(0, eq), s.substr(eq + 1));
      } else if (std::find(kFlags.begin(), kFlags.end(), s) != kFlags.end()) {
        a.options.emplace(s, "true");
      } else {
        if (i + 1 >= argv.size()) {
          err << "kvmfleet: " << s << " needs a value\n";
          return std::nullopt;
        }
        a.options.emplace(s, argv[++i]);
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::string cell(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

void print_table(std::ostream& out, const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(headers.size());
  for (std::size_t i = 0; i < headers.size(); ++i) w[i] = headers[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      out << r[i];
      if (i + 1 < r.size()) out << std::string(w[i] - r[i].size() + 2, ' ');
    }
    out << "\n";
  };
  line(headers);
  for (const auto& r : rows) line(r);
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out.push_back(static_cast<char>(c));
    else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

class Runner {
 public:
  std::function<int(const std::string&, const std::string&)> console_;  // Environment::console

  Runner(const Args& a, std::string base, std::string token, http::Client& client,
         std::ostream& out, std::ostream& err, bool terminal)
      : terminal_(terminal),
        a_(a),
        base_(std::move(base)),
        token_(std::move(token)),
        client_(client),
        out_(out),
        err_(err) {
    json_ = a_.get("-o", "table") == "json";
  }

  std::optional<json> call(const std::string& method, const std::string& path,
                           const std::optional<json>& body = std::nullopt, int wait_s = 0) {
    const auto timeout = std::chrono::milliseconds((wait_s + 30) * 1000);
    return answer(client_.request(method, base_ + path, token_, body ? body->dump() : std::string{},
                                  timeout));
  }

  // Every item of a paged list (`path` with its query, which ends in a parameter),
  // following next_cursor to the last page: {"items": [...]}.
  std::optional<json> list_all(const std::string& path) {
    json all = json::array();
    std::string cursor;
    while (true) {
      auto j = call("GET", path + (cursor.empty() ? "" : "&cursor=" + url_encode(cursor)));
      if (!j) return std::nullopt;
      for (auto& it : (*j)["items"]) all.push_back(std::move(it));
      if (!j->contains("next_cursor") || !(*j)["next_cursor"].is_string()) break;
      cursor = (*j)["next_cursor"].get<std::string>();
    }
    return json{{"items", std::move(all)}};
  }

  // A call's answer: its JSON, or nothing once the failure is told on err_.
  std::optional<json> answer(const Result<http::ClientResponse>& r) {
    if (!r) {
      err_ << "kvmfleet: " << r.error().message << "\n";
      return std::nullopt;
    }
    auto j = json::parse(r->body, nullptr, false);
    if (r->status >= 400) {
      if (!j.is_discarded() && j.contains("error")) {
        const auto& e = j["error"];
        err_ << "kvmfleet: " << e.value("code", "error") << ": " << e.value("message", "") << "\n";
        if (e.contains("details") && !e["details"].empty())
          err_ << "  details: " << e["details"].dump() << "\n";
      } else {
        err_ << "kvmfleet: HTTP " << r->status << "\n";
      }
      return std::nullopt;
    }
    if (j.is_discarded()) {
      err_ << "kvmfleet: the server answered with something that is not JSON\n";
      return std::nullopt;
    }
    return j;
  }

  int show(const json& j, const std::vector<std::string>& cols, const json* items = nullptr) {
    if (json_) {
      out_ << j.dump(2) << "\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    auto row_of = [&](const json& item) {
      std::vector<std::string> r;
      for (const auto& c : cols) r.push_back(item.contains(c) ? cell(item[c]) : "-");
      return r;
    };
    if (items) {
      for (const auto& it : *items) rows.push_back(row_of(it));
    } else {
      rows.push_back(row_of(j));
    }
    std::vector<std::string> headers;
    for (auto c : cols) {
      std::transform(c.begin(), c.end(), c.begin(), ::toupper);
      headers.push_back(c);
    }
    print_table(out_, headers, rows);
    return 0;
  }

  int show_operation(const json& op) {
    if (json_) return show(op, {});
    out_ << "operation " << op.value("id", "") << "  " << op.value("kind", "") << "  "
         << op.value("state", "") << "  " << op.value("progress", 0) << "%";
    if (op.contains("step") && !op["step"].get<std::string>().empty())
      out_ << "  (" << op["step"].get<std::string>() << ")";
    out_ << "\n";
    if (op.contains("error") && !op["error"].is_null())
      out_ << "  error: " << op["error"].value("code", "") << ": "
           << op["error"].value("message", "") << "\n";
    return op.value("state", "") == "failed" ? 1 : 0;
  }

  std::string wait_query() const {
    return a_.has("--wait") ? "?wait=" + url_encode(a_.get("--wait")) : "";
  }
  int wait_seconds() const {
    try {
      return a_.has("--wait") ? std::stoi(a_.get("--wait")) : 0;
    } catch (...) {
      return 0;
    }
  }

  std::optional<json> vm_body(const std::string& name, bool with_start) {
    json b = {{"name", name}};
    try {
      if (!a_.has("--memory")) {
        err_ << "kvmfleet: --memory is required\n";
        return std::nullopt;
      }
      b["memory_mib"] = std::stoll(a_.get("--memory"));
      if (a_.has("--vcpus")) b["vcpus"] = std::stoi(a_.get("--vcpus"));
      json disks = json::array();
      if (a_.has("--image")) {
        json disk = {{"image", a_.get("--image")}};
        if (a_.has("--disk-size")) disk["size_gib"] = std::stoll(a_.get("--disk-size"));
        disks.push_back(std::move(disk));
      } else if (a_.has("--disk-size")) {
        err_ << "kvmfleet: --disk-size goes with --image (blank disks: --disk GIB)\n";
        return std::nullopt;
      }
      auto range = a_.options.equal_range("--disk");
      for (auto it = range.first; it != range.second; ++it)
        disks.push_back({{"size_gib", std::stoll(it->second)}});
      if (!disks.empty()) b["disks"] = disks;
    } catch (const std::exception&) {
      err_ << "kvmfleet: --memory, --vcpus and --disk take whole numbers\n";
      return std::nullopt;
    }
    // --nic NETWORK[,MAC][,MODEL]: a part with ':' is the MAC, any other the model.
    json nics = json::array();
    auto nic_range = a_.options.equal_range("--nic");
    for (auto it = nic_range.first; it != nic_range.second; ++it) {
      std::vector<std::string> parts;
      std::string rest = it->second;
      for (auto comma = rest.find(','); comma != std::string::npos; comma = rest.find(',')) {
        parts.push_back(rest.substr(0, comma));
        rest = rest.substr(comma + 1);
      }
      parts.push_back(rest);
      json nic = {{"network", parts[0]}};
      for (std::size_t i = 1; i < parts.size(); ++i)
        nic[parts[i].find(':') != std::string::npos ? "mac" : "model"] = parts[i];
      nics.push_back(std::move(nic));
    }
    if (!nics.empty()) b["nics"] = nics;
    if (a_.has("--host")) b["host"] = a_.get("--host");
    if (a_.has("--group")) b["anti_affinity_group"] = a_.get("--group");
    if (a_.has("--ha-priority") || a_.has("--ha-max-restarts")) {
      json ha = {{"enabled", true}};
      try {
        if (a_.has("--ha-priority")) ha["priority"] = std::stoi(a_.get("--ha-priority"));
        if (a_.has("--ha-max-restarts"))
          ha["max_restarts"] = std::stoi(a_.get("--ha-max-restarts"));
      } catch (const std::exception&) {
        err_ << "kvmfleet: --ha-priority and --ha-max-restarts take whole numbers\n";
        return std::nullopt;
      }
      b["ha"] = std::move(ha);
    } else if (a_.has("--ha")) {
      b["ha"] = true;
    }
    if (with_start && a_.has("--start")) b["start"] = true;
    if (a_.has("--cdrom")) b["cdrom"] = {{"image", a_.get("--cdrom")}};
    if (a_.has("--boot")) {
      json boot = json::array();
      std::string rest = a_.get("--boot");
      for (auto comma = rest.find(','); comma != std::string::npos; comma = rest.find(',')) {
        boot.push_back(rest.substr(0, comma));
        rest = rest.substr(comma + 1);
      }
      boot.push_back(rest);
      b["boot"] = std::move(boot);
    }
    json ci = json::object();
    for (auto [flag, key] : {std::pair{"--cloud-init-user-data", "user_data"},
                             std::pair{"--cloud-init-meta-data", "meta_data"},
                             std::pair{"--cloud-init-network-config", "network_config"}}) {
      if (!a_.has(flag)) continue;
      auto text = read_text_file(a_.get(flag));
      if (!text) {
        err_ << "kvmfleet: cannot read " << a_.get(flag) << "\n";
        return std::nullopt;
      }
      ci[key] = std::move(*text);
    }
    if (a_.has("--hostname")) ci["hostname"] = a_.get("--hostname");
    json keys = json::array();
    auto key_range = a_.options.equal_range("--ssh-key");
    for (auto it = key_range.first; it != key_range.second; ++it) {
      auto text = read_text_file(it->second);
      if (!text) {
        err_ << "kvmfleet: cannot read " << it->second << "\n";
        return std::nullopt;
      }
      // One key a line, as in authorized_keys; blank lines and comments skipped.
      std::istringstream lines(*text);
      for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line.front() == '#') continue;
        keys.push_back(line);
      }
    }
    if (!keys.empty()) ci["ssh_authorized_keys"] = std::move(keys);
    if (!ci.empty()) b["cloud_init"] = std::move(ci);
    return b;
  }

  // A small text file given on the command line (the controller checks its size).
  static std::optional<std::string> read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string text;
    char buf[4096];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
      text.append(buf, static_cast<std::size_t>(in.gcount()));
      if (text.size() > (std::size_t{1} << 20)) return std::nullopt;
    }
    return text;
  }

  int run() {
    const auto& p = a_.positional;
    if (p.empty() || a_.has("--help")) {
      out_ << kUsage;
      return p.empty() && !a_.has("--help") ? 2 : 0;
    }
    const std::string& cmd = p[0];
    const std::vector<std::string> host_cols = {"name",
                                                "state",
                                                "schedulable",
                                                "cpus",
                                                "memory_total_mib",
                                                "memory_allocated_mib",
                                                "vm_count",
                                                "last_heartbeat"};
    const std::vector<std::string> vm_cols = {"name", "id",    "state",     "desired_state",
                                              "host", "vcpus", "memory_mib"};
    const std::vector<std::string> op_cols = {"id",       "kind", "state",
                                              "progress", "step", "created_at"};
    if (cmd == "hosts" && p.size() == 1) {
      auto j = list_all("/v1/hosts?limit=1000");
      return j ? show(*j, host_cols, &(*j)["items"]) : 1;
    }
    if (cmd == "host" && p.size() == 3 && p[1] == "get") {
      auto j = call("GET", "/v1/hosts/" + url_encode(p[2]));
      return j ? show(*j, host_cols) : 1;
    }
    if (cmd == "host" && p.size() == 4 && p[1] == "add") {
      auto j = call("POST", "/v1/hosts", json{{"name", p[2]}, {"agent_url", p[3]}});
      if (!j) return 1;
      if (json_) return show(*j, {});
      out_ << "host " << p[2]
           << " registered\nagent token (shown once): " << (*j)["agent_token"].get<std::string>()
           << "\n";
      return 0;
    }
    if (cmd == "host" && p.size() == 3 && (p[1] == "cordon" || p[1] == "uncordon")) {
      auto j =
          call("PATCH", "/v1/hosts/" + url_encode(p[2]), json{{"schedulable", p[1] == "uncordon"}});
      return j ? show(*j, host_cols) : 1;
    }
    if (cmd == "host" && p.size() >= 2 &&
        (p[1] == "fencing" || p[1] == "fence" || p[1] == "confirm-down"))
      return fencing_command(p, host_cols);
    if (cmd == "vms" && p.size() == 1) {
      std::string q = "?limit=1000";
      if (a_.has("--host")) q += "&host=" + url_encode(a_.get("--host"));
      if (a_.has("--state")) q += "&state=" + url_encode(a_.get("--state"));
      auto j = list_all("/v1/vms" + q);
      return j ? show(*j, vm_cols, &(*j)["items"]) : 1;
    }
    if (cmd == "vm" && p.size() == 4 && p[1] == "nic" && p[2] == "add") {
      if (!a_.has("--network")) {
        err_ << "kvmfleet: vm nic add needs --network NETWORK\n";
        return 2;
      }
      json b = {{"network", a_.get("--network")}};
      if (a_.has("--mac")) b["mac"] = a_.get("--mac");
      if (a_.has("--model")) b["model"] = a_.get("--model");
      auto j =
          call("POST", "/v1/vms/" + url_encode(p[3]) + "/nics" + wait_query(), b, wait_seconds());
      return j ? show_operation(*j) : 1;
    }
    if (cmd == "vm" && p.size() == 5 && p[1] == "nic" && p[2] == "remove") {
      // ':' may stand in a path segment as it is (RFC 3986 pchar); the route reads a
      // MAC's colons, not their percent-encoding.
      const bool mac_chars = std::all_of(p[4].begin(), p[4].end(), [](char ch) {
        return ch == ':' || std::isxdigit(static_cast<unsigned char>(ch));
      });
      const std::string mac = mac_chars ? p[4] : url_encode(p[4]);
      auto j = call("DELETE", "/v1/vms/" + url_encode(p[3]) + "/nics/" + mac + wait_query(),
                    std::nullopt, wait_seconds());
      return j ? show_operation(*j) : 1;
    }
    if (cmd == "vm" && p.size() == 3) {
      const std::string& action = p[1];
      const std::string id = url_encode(p[2]);
      if (action == "get") {
        auto j = call("GET", "/v1/vms/" + id);
        return j ? show(*j, vm_cols) : 1;
      }
      if (action == "create") {
        auto body = vm_body(p[2], true);
        if (!body) return 2;
        auto j = call("POST", "/v1/vms" + wait_query(), body, wait_seconds());
        return j ? show_operation(*j) : 1;
      }
      if (action == "start" || action == "reboot" || action == "destroy") {
        auto j = call("POST", "/v1/vms/" + id + "/" + action + wait_query(), json::object(),
                      wait_seconds());
        return j ? show_operation(*j) : 1;
      }
      if (action == "stop") {
        json b = json::object();
        try {
          if (a_.has("--timeout")) b["timeout_s"] = std::stoi(a_.get("--timeout"));
        } catch (const std::exception&) {
          err_ << "kvmfleet: --timeout takes whole seconds\n";
          return 2;
        }
        if (a_.has("--force")) b["force"] = true;
        auto j = call("POST", "/v1/vms/" + id + "/stop" + wait_query(), b, wait_seconds());
        return j ? show_operation(*j) : 1;
      }
      if (action == "console") {
        if (!console_) {
          err_ << "kvmfleet: the console needs a terminal\n";
          return 2;
        }
        return console_(base_ + "/v1/vms/" + id + "/console", token_);
      }
      if (action == "console-log") {
        const std::string q = a_.has("--tail") ? "?tail=" + url_encode(a_.get("--tail")) : "";
        auto j = call("GET", "/v1/vms/" + id + "/console/log" + q);
        if (!j) return 1;
        if (json_) return show(*j, {});
        out_ << (*j)["text"].get<std::string>();
        return 0;
      }
      if (action == "delete") {
        std::string q = wait_query();
        if (a_.has("--force")) q += (q.empty() ? "?" : "&") + std::string("force=true");
        auto j = call("DELETE", "/v1/vms/" + id + q, std::nullopt, wait_seconds());
        return j ? show_operation(*j) : 1;
      }
    }
    if (cmd == "place" && p.size() == 2) {
      auto body = vm_body(p[1], false);
      if (!body) return 2;
      auto j = call("POST", "/v1/placements", body);
      if (!j) return 1;
      if (json_) return show(*j, {});
      out_ << "chosen host: " << cell((*j)["host"]) << "\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& h : (*j)["hosts"])
        rows.push_back({h["host"].get<std::string>(), h["feasible"].get<bool>() ? "yes" : "no",
                        h["feasible"].get<bool>()
                            ? cell(h["total"])
                            : h.value("filter", "") + ": " + h.value("reason", "")});
      print_table(out_, {"HOST", "FEASIBLE", "SCORE / WHY NOT"}, rows);
      return 0;
    }
    if (cmd == "network") return network(p);
    if (cmd == "ha" && p.size() == 1) {
      auto j = call("GET", "/v1/ha");
      if (!j) return 1;
      if (json_) return show(*j, {});
      const auto& r = (*j)["restarts"];
      out_ << "held by the mass-failure guard: " << cell((*j)["held_by_guard"])
           << "\nrestarts: " << cell(r["submitted"]) << " submitted, " << cell(r["succeeded"])
           << " succeeded, " << cell(r["failed"]) << " failed\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& w : (*j)["waiting"])
        rows.push_back({cell(w["name"]), cell(w["host"]), cell(w["reason"]), cell(w["message"])});
      if (!rows.empty()) print_table(out_, {"VM", "HOST", "WAITS", "WHY"}, rows);
      return 0;
    }
    if (cmd == "ops" && p.size() == 1) {
      std::string q = "?limit=" + url_encode(a_.get("--limit", "50"));
      if (a_.has("--state")) q += "&state=" + url_encode(a_.get("--state"));
      auto j = call("GET", "/v1/operations" + q);
      return j ? show(*j, op_cols, &(*j)["items"]) : 1;
    }
    if (cmd == "op" && p.size() == 3 && p[1] == "get") {
      auto j = call("GET", "/v1/operations/" + url_encode(p[2]) + wait_query(), std::nullopt,
                    wait_seconds());
      return j ? show_operation(*j) : 1;
    }
    if ((cmd == "images" && p.size() == 1) || (cmd == "image" && p.size() == 2 && p[1] == "list")) {
      auto j = call("GET", "/v1/images");
      return j ? show(*j, image_cols_, &(*j)["items"]) : 1;
    }
    if (cmd == "image" && p.size() == 3 && p[1] == "show") {
      auto j = call("GET", "/v1/images/" + url_encode(p[2]));
      return j ? show(*j, image_cols_) : 1;
    }
    if (cmd == "image" && p.size() == 4 && p[1] == "upload") return upload_image(p[2], p[3]);
    if (cmd == "image" && p.size() == 3 && p[1] == "delete") {
      auto j = call("DELETE", "/v1/images/" + url_encode(p[2]));
      if (!j) return 1;
      if (!json_) out_ << "image " << p[2] << " deleted\n";
      return json_ ? show(*j, {}) : 0;
    }
    if (cmd == "op" && p.size() == 3 && p[1] == "cancel") {
      auto j = call("DELETE", "/v1/operations/" + url_encode(p[2]));
      return j ? show_operation(*j) : 1;
    }
    err_ << "kvmfleet: unknown command\n" << kUsage;
    return 2;
  }

  int network(const std::vector<std::string>& p) {
    const std::vector<std::string> cols = {"name", "bridge", "vlan", "uplink", "mtu", "usable_on"};
    // How many hosts can carry the network now, out of all.
    auto with_usable = [](json n) {
      int usable = 0;
      for (const auto& [_, h] : n["hosts"].items()) usable += h.value("usable", false);
      n["usable_on"] = std::to_string(usable) + "/" + std::to_string(n["hosts"].size());
      return n;
    };
    if (p.size() == 2 && p[1] == "list") {
      auto j = call("GET", "/v1/networks");
      if (!j) return 1;
      if (json_) return show(*j, {});
      json items = json::array();
      for (const auto& n : (*j)["items"]) items.push_back(with_usable(n));
      return show(*j, cols, &items);
    }
    if (p.size() == 3 && p[1] == "show") {
      auto j = call("GET", "/v1/networks/" + url_encode(p[2]));
      if (!j) return 1;
      if (json_) return show(*j, {});
      show(with_usable(*j), cols);
      std::vector<std::vector<std::string>> rows;
      for (const auto& [host, h] : (*j)["hosts"].items())
        rows.push_back({host, h.value("usable", false) ? "yes" : "no", h.value("reason", "-"),
                        h.value("setup", "-")});
      out_ << "\n";
      print_table(out_, {"HOST", "USABLE", "WHY NOT", "SETUP"}, rows);
      return 0;
    }
    if (p.size() == 3 && p[1] == "create") {
      if (!a_.has("--bridge")) {
        err_ << "kvmfleet: --bridge is required\n";
        return 2;
      }
      json b = {{"name", p[2]}, {"bridge", a_.get("--bridge")}};
      try {
        if (a_.has("--vlan")) b["vlan"] = std::stoi(a_.get("--vlan"));
        if (a_.has("--mtu")) b["mtu"] = std::stoi(a_.get("--mtu"));
      } catch (const std::exception&) {
        err_ << "kvmfleet: --vlan and --mtu take whole numbers\n";
        return 2;
      }
      if (a_.has("--uplink")) b["uplink"] = a_.get("--uplink");
      auto j = call("POST", "/v1/networks" + wait_query(), b, wait_seconds());
      if (!j) return 1;
      const int rc = show_operation(*j);
      if (!json_ && j->contains("result") && (*j)["result"].contains("hosts"))
        for (const auto& [host, outcome] : (*j)["result"]["hosts"].items())
          out_ << "  " << host << ": " << cell(outcome) << "\n";
      return rc;
    }
    if (p.size() == 3 && p[1] == "delete") {
      auto j = call("DELETE", "/v1/networks/" + url_encode(p[2]));
      if (!j) return 1;
      if (!json_) out_ << "network " << p[2] << " deleted\n";
      return 0;
    }
    err_ << "kvmfleet: unknown command\n" << kUsage;
    return 2;
  }

 private:
  // host fencing show|set, host fence, host confirm-down.
  int fencing_command(const std::vector<std::string>& p,
                      const std::vector<std::string>& host_cols) {
    if (p[1] == "fencing" && p.size() == 4 && p[2] == "show") {
      auto j = call("GET", "/v1/hosts/" + url_encode(p[3]) + "/fencing");
      return j ? show_devices(*j) : 1;
    }
    if (p[1] == "fencing" && p.size() == 5 && p[2] == "set") {
      // From a file, so that passwords are on no command line.
      auto text = read_text_file(p[4]);
      if (!text) {
        err_ << "kvmfleet: cannot read " << p[4] << "\n";
        return 2;
      }
      auto body = json::parse(*text, nullptr, false);
      if (body.is_discarded()) {
        err_ << "kvmfleet: " << p[4] << " does not hold JSON\n";
        return 2;
      }
      auto j = call("PUT", "/v1/hosts/" + url_encode(p[3]) + "/fencing", body);
      return j ? show_devices(*j) : 1;
    }
    if (p[1] == "fence" && p.size() == 3) {
      auto j = call("POST", "/v1/hosts/" + url_encode(p[2]) + "/fence" + wait_query(),
                    json::object(), wait_seconds());
      if (!j) return 1;
      const int rc = show_operation(*j);
      if (!json_ && j->contains("result") && (*j)["result"].contains("devices"))
        for (const auto& outcome : (*j)["result"]["devices"]) out_ << "  " << cell(outcome) << "\n";
      return rc;
    }
    if (p[1] == "confirm-down" && p.size() == 3) {
      if (!a_.has("--reason")) {
        err_ << "kvmfleet: --reason is required\n";
        return 2;
      }
      auto j = call("POST", "/v1/hosts/" + url_encode(p[2]) + "/confirm-down",
                    json{{"reason", a_.get("--reason")}});
      return j ? show(*j, host_cols) : 1;
    }
    err_ << "kvmfleet: unknown command\n" << kUsage;
    return 2;
  }

  int show_devices(const json& j) {
    if (json_) return show(j, {});
    std::vector<std::vector<std::string>> rows;
    int n = 0;
    for (const auto& d : j["devices"]) {
      std::string opts;
      for (const auto& [k, v] : d["options"].items())
        opts += (opts.empty() ? "" : " ") + k + "=" + (v.is_object() ? "(set)" : cell(v));
      rows.push_back({std::to_string(++n), d["agent"].get<std::string>(), opts});
    }
    print_table(out_, {"#", "AGENT", "OPTIONS"}, rows);
    return 0;
  }

  // `image upload`: the record, then the data streamed from the file.
  int upload_image(const std::string& name, const std::string& file) {
    json body = {{"name", name}};
    if (a_.has("--sha256")) body["sha256"] = a_.get("--sha256");
    if (a_.has("--format")) body["format"] = a_.get("--format");
    if (!call("POST", "/v1/images", body)) return 1;
    http::UploadProgress progress;
    if (terminal_)
      progress = [this, last = -1](std::uint64_t sent, std::uint64_t total) mutable {
        const int pct = total == 0 ? 100 : static_cast<int>(sent * 100 / total);
        if (pct == last) return;
        last = pct;
        err_ << "\ruploading: " << pct << "% (" << (sent >> 20) << " of " << (total >> 20)
             << " MiB)" << (sent == total ? "\n" : "") << std::flush;
      };
    // A generous bound for any size: an hour.
    auto j = answer(client_.upload(base_ + "/v1/images/" + url_encode(name) + "/data", token_, file,
                                   progress, std::chrono::hours(1)));
    return j ? show(*j, image_cols_) : 1;
  }

  const std::vector<std::string> image_cols_ = {"name", "state",        "format",
                                                "size", "virtual_size", "sha256"};
  bool terminal_ = false;
  const Args& a_;
  std::string base_;
  std::string token_;
  http::Client& client_;
  std::ostream& out_;
  std::ostream& err_;
  bool json_ = false;
};

}  // namespace

int run(const std::vector<std::string>& argv, const Environment& env, http::Client& client,
        std::ostream& out, std::ostream& err) {
  auto args = parse_args(argv, err);
  if (!args) return 2;
  const std::string fmt = args->get("-o", "table");
  if (fmt != "table" && fmt != "json") {
    err << "kvmfleet: -o must be table or json\n";
    return 2;
  }
  std::string url = args->get("--url", env.url.empty() ? "http://127.0.0.1:8400" : env.url);
  while (!url.empty() && url.back() == '/') url.pop_back();
  std::string token = args->get("--token", env.token);
  if (args->has("--token-file")) {
    std::ifstream in(args->get("--token-file"));
    if (!in || !std::getline(in, token)) {
      err << "kvmfleet: cannot read the token file\n";
      return 2;
    }
  }
  Runner r(*args, url, token, client, out, err, env.terminal);
  r.console_ = env.console;
  return r.run();
}

}  // namespace kvmfleet::cli
