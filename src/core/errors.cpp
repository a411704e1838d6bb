#include "core/errors.hpp"

#include <algorithm>

namespace ab {

namespace {
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

std::string closest_name(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = static_cast<size_t>(-1);
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Accept up to a third of the word's length in edits (at least 2): "gqaa" -> "gqa".
  const size_t limit = std::max<size_t>(2, word.size() / 3);
  return best_d <= limit ? best : std::string();
}

std::string suggest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string msg;
  const std::string c = closest_name(word, candidates);
  if (!c.empty()) msg += "did you mean '" + c + "'? ";
  msg += "(allowed: ";
  for (size_t i = 0; i < candidates.size(); ++i) msg += (i ? ", " : "") + candidates[i];
  msg += ")";
  return msg;
}

}  // namespace ab
