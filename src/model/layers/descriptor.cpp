// The layer descriptors' registry table and the helpers the layer files share (no LibTorch).
#include "model/layers/descriptor.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>

namespace twosed::layers {

int64_t ParameterShape::numel() const {
  return prod(shape);
}

double LayerDescriptor::init_bound(const LayerSpec& l) const {
  return 1.0 / std::sqrt(static_cast<double>(fan_in(l)));
}

int64_t LayerDescriptor::positions_per_channel(const LayerSpec& l) const {
  int64_t q = 1;
  for (size_t i = 1; i < l.out_shape.size(); ++i) q *= l.out_shape[i];
  return q;
}

const std::vector<const LayerDescriptor*>& descriptors() {
  // A function-local table: safe to use from other translation units' static initialisers.
  static const std::vector<const LayerDescriptor*> table = [] {
    std::vector<const LayerDescriptor*> t{
#define TWOSED_DESCRIPTOR_ENTRY(kind) &kind_descriptor<LayerKind::kind>(),
        TWOSED_LAYER_KINDS(TWOSED_DESCRIPTOR_ENTRY)
#undef TWOSED_DESCRIPTOR_ENTRY
    };
    for (size_t i = 0; i < t.size(); ++i)
      if (static_cast<size_t>(t[i]->kind()) != i)
        throw std::logic_error(fmt::format("layer registry: entry {} describes another LayerKind", i));
    return t;
  }();
  return table;
}

const LayerDescriptor& descriptor(LayerKind kind) {
  return *descriptors().at(static_cast<size_t>(kind));
}

std::string token_help() {
  std::vector<std::string> items;
  for (const auto* d : descriptors())
    if (d->head() != 0) items.push_back(d->form());
  for (const auto* d : descriptors())
    for (const auto& k : d->keywords()) items.push_back(k);
  std::string out = "expected ";
  for (size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "" : i + 1 == items.size() ? " or " : ", ") + items[i];
  return out;
}

int64_t prod(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

bool read_number(const std::string& s, size_t& pos, int64_t& out) {
  size_t start = pos;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
  if (pos == start || pos - start > 9) return false;
  out = std::stoll(s.substr(start, pos - start));
  return true;
}

void read_stride_padding(const std::string& tok, size_t& pos, LayerSpec& l, bool allow_padding,
                         const std::string& form) {
  bool seen_s = false, seen_p = false;
  while (pos < tok.size()) {
    const char c = tok[pos++];
    int64_t v;
    if (c == 's' && !seen_s && read_number(tok, pos, v) && v >= 1) {
      l.stride = v;
      seen_s = true;
    } else if (c == 'p' && allow_padding && !seen_p && read_number(tok, pos, v)) {
      l.padding = v;
      seen_p = true;
    } else {
      throw TokenError("expected " + form);
    }
  }
}

void require_image(const LayerSpec& l) {
  if (l.in_shape.size() != 3)
    throw TokenError(fmt::format("needs a CxHxW input, but the input here is flat ({})", shape_str(l.in_shape)));
}

int64_t window(const LayerSpec& l, int64_t size, int64_t k, int64_t s, int64_t p) {
  const int64_t span = size + 2 * p - k;
  if (span < 0)
    throw TokenError(fmt::format("kernel {} does not fit the {} input (padding {})", k, shape_str(l.in_shape), p));
  return span / s + 1;
}

}  // namespace twosed::layers
