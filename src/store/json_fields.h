// Typed reads of JSON numbers for the store's readers (spectra files, stored sample rows).
// nlohmann's get<int64_t>() on a float is an unchecked cast (undefined behaviour out of range,
// silent truncation inside it), so integers are checked to be integers first.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "twosed/error.h"

namespace twosed::json_fields {

// obj[key] as an int64; `where` prefixes the error ("PATH:LINE").
inline int64_t integer(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto& v = obj.at(key);
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())))
    throw DataError(fmt::format("{}: key \"{}\" must be an integer in int64 range, found {}", where, key, v.dump()));
  return v.get<int64_t>();
}

// obj[key] as a uint64 (a seed): a non-negative integer.
inline uint64_t unsigned_integer(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto& v = obj.at(key);
  if (!v.is_number_unsigned())
    throw DataError(fmt::format("{}: key \"{}\" must be a non-negative integer, found {}", where, key, v.dump()));
  return v.get<uint64_t>();
}

}  // namespace twosed::json_fields
