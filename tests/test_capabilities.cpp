// `attn-bench list` derives a variant's backends from supports() on probe problems
// (runner/capabilities.hpp): the binary's answer equals what the backends' dispatch says here,
// every variant runs on the CPU, and a backend that refuses an op drops the variants needing it.
#include <doctest/doctest.h>

#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "runner/capabilities.hpp"
#include "variants/registry.hpp"

using namespace ab;

namespace {

std::string run_binary(const std::string& args) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((std::string(ATTN_BINARY) + " " + args).c_str(), "r"), pclose);
  REQUIRE(p);
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
  return out;
}

// A backend that forwards to the CPU but has no sparse prefill op.
class NoSparsePrefill final : public Backend {
 public:
  NoSparsePrefill() : cpu_(capability_backends().front().backend.release()) {}
  std::string name() const override { return "no-sparse"; }
  TensorRef alloc(const Shape4& s, DType d) override { return cpu_->alloc(s, d); }
  void upload(const HostTensor& h, const TensorRef& t) override { cpu_->upload(h, t); }
  HostTensor download(const TensorRef& t) override { return cpu_->download(t); }
  void poison(const TensorRef& t) override { cpu_->poison(t); }
  void release_all() override { cpu_->release_all(); }
  double time(const std::function<void()>& fn, CacheMode m) override { return cpu_->time(fn, m); }
  Support supports_sdpa(const SdpaArgs& a) const override { return cpu_->supports_sdpa(a); }
  void sdpa(const SdpaArgs& a) override { cpu_->sdpa(a); }
  IndexLists upload_indices(const std::vector<int32_t>& o, const std::vector<int32_t>& i) override {
    return cpu_->upload_indices(o, i);
  }

 private:
  std::unique_ptr<Backend> cpu_;
};

}  // namespace

TEST_CASE("list: backends are what supports() answers on the probe problems") {
  const auto listed = nlohmann::json::parse(run_binary("list --json"));
  const std::vector<NamedBackend> backends = capability_backends();
  REQUIRE(listed.size() == registry().size());
  for (const auto& v : listed) {
    const RegistryEntry* e = find_variant(v["name"].get<std::string>());
    REQUIRE(e);
    const auto variant = e->make(resolve_params(e->info, {}));
    const std::vector<std::string> here = supported_backends(*variant, backends);
    INFO("variant " << e->info.name);
    CHECK(v["backends"].get<std::vector<std::string>>() == here);
    // Every variant runs on the CPU backend, the reference implementation of every op.
    CHECK(std::find(here.begin(), here.end(), "cpu") != here.end());
  }
}

TEST_CASE("list: a backend without an op loses exactly the variants that call it") {
  std::vector<NamedBackend> one;
  one.push_back({"no-sparse", std::make_unique<NoSparsePrefill>()});
  for (const char* name : {"proxyattn", "anchor", "sale", "dhsa", "sea", "vtc_cls"}) {
    const RegistryEntry* e = find_variant(name);
    REQUIRE(e);
    INFO("variant " << name);
    CHECK(supported_backends(*e->make(resolve_params(e->info, {})), one).empty());
  }
  for (const char* name : {"mha", "gqa", "streaming"}) {
    const RegistryEntry* e = find_variant(name);
    INFO("variant " << name);
    CHECK(supported_backends(*e->make(resolve_params(e->info, {})), one) == std::vector<std::string>{"no-sparse"});
  }
}
