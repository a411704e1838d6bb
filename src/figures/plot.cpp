#include "figures/plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <string_view>

namespace ab::figures {

// ---- ticks and text ------------------------------------------------------------------------

std::vector<double> linear_ticks(double lo, double hi, int target) {
  std::vector<double> t;
  if (!std::isfinite(lo) || !std::isfinite(hi) || hi < lo) return t;
  if (hi == lo) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (double v = first; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  if (!(lo > 0) || !(hi >= lo)) return t;
  const int a = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int b = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  auto collect = [&](std::initializer_list<double> mults) {
    std::vector<double> out;
    for (int e = a; e <= b; ++e)
      for (double m : mults) {
        const double v = m * std::pow(10.0, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push_back(v);
      }
    return out;
  };
  t = collect({1.0});
  if (t.size() < 3) t = collect({1.0, 2.0, 5.0});
  if (t.size() < 3) t = collect({1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0});
  if (t.size() < 2) t = linear_ticks(lo, hi, 4);  // within one step of 1..9: plain ticks
  return t;
}

std::string tick_text(double v, bool binary_k) {
  if (!std::isfinite(v)) return "";
  if (binary_k && v >= 4096 && std::fmod(v, 1024.0) == 0) {
    if (std::fmod(v, 1024.0 * 1024.0) == 0) return fmt::format("{:.0f}M", v / (1024.0 * 1024.0));
    return fmt::format("{:.0f}k", v / 1024.0);
  }
  const double a = std::fabs(v);
  if (a == 0) return "0";
  if (a >= 1e6 || a < 1e-3) {
    std::string s = fmt::format("{:.1e}", v);  // 1.0e+06, 2.5e-07
    const auto e = s.find('e');
    if (e != std::string::npos) {  // 1e+06 → 1e6, 2.5e-04 → 2.5e-4
      std::string mant = s.substr(0, e), ex = s.substr(e + 1);
      if (mant.size() > 2 && mant.compare(mant.size() - 2, 2, ".0") == 0) mant.resize(mant.size() - 2);
      const bool neg = ex[0] == '-';
      ex = ex.substr(1);
      ex.erase(0, std::min(ex.find_first_not_of('0'), ex.size() - 1));
      return mant + "e" + (neg ? "-" : "") + ex;
    }
    return s;
  }
  std::string s = fmt::format("{:.3g}", v);
  if (s.find('e') != std::string::npos) s = fmt::format("{:.0f}", v);
  return s;
}

std::string palette(int i) {
  // Okabe–Ito order with the weak yellow last and darkened for a white background.
  static const char* kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                   "#E69F00", "#56B4E9", "#000000", "#B8A200"};
  if (i < 0) return "#888888";
  return kColours[i % 8];
}

Marker palette_marker(int i) {
  static const Marker kMarkers[] = {Marker::circle, Marker::square, Marker::triangle, Marker::diamond};
  return kMarkers[(std::max(i, 0) / 8) % 4];
}

std::string colormap(double t) {
  static const int kStops[9][3] = {{0x44, 0x01, 0x54}, {0x47, 0x2d, 0x7b}, {0x3b, 0x52, 0x8b},
                                   {0x2c, 0x72, 0x8e}, {0x21, 0x91, 0x8c}, {0x28, 0xae, 0x80},
                                   {0x5e, 0xc9, 0x62}, {0xad, 0xdc, 0x30}, {0xfd, 0xe7, 0x25}};
  if (!std::isfinite(t)) return "#dddddd";
  t = std::clamp(t, 0.0, 1.0) * 8.0;
  const int i = std::min(7, static_cast<int>(t));
  const double f = t - i;
  int c[3];
  for (int k = 0; k < 3; ++k) c[k] = static_cast<int>(std::lround(kStops[i][k] + f * (kStops[i + 1][k] - kStops[i][k])));
  return fmt::format("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
}

double text_width(const std::string& s, double px) {
  double w = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) == 0x80) continue;  // UTF-8 continuation byte
    // Average advance of DejaVu/Arial-like sans fonts: narrow punctuation, wide capitals.
    if (c == 'i' || c == 'l' || c == 'j' || c == '.' || c == ',' || c == '\'' || c == '|' || c == ':' || c == ';' || c == '(' || c == ')')
      w += 0.34;
    else if (c == 'm' || c == 'w' || c == 'M' || c == 'W')
      w += 0.9;
    else if (c >= 'A' && c <= 'Z')
      w += 0.7;
    else
      w += 0.6;
  }
  return w * px;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

namespace {

// ---- shared geometry -----------------------------------------------------------------------

constexpr double kWidth = 760;

struct Range {
  double lo = NAN, hi = NAN;
  std::vector<double> ticks;
  Scale scale = Scale::linear;
  bool binary_k = false;
  double to_unit(double v) const {  // 0..1 across the axis
    if (scale == Scale::log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

bool usable(double v, Scale s) { return std::isfinite(v) && (s == Scale::linear || v > 0); }

Range make_range(const Axis& a, std::vector<double> data) {
  Range r;
  r.scale = a.scale;
  data.erase(std::remove_if(data.begin(), data.end(), [&](double v) { return !usable(v, a.scale); }), data.end());
  double lo = data.empty() ? (a.scale == Scale::log ? 1 : 0) : *std::min_element(data.begin(), data.end());
  double hi = data.empty() ? (a.scale == Scale::log ? 10 : 1) : *std::max_element(data.begin(), data.end());
  if (std::isfinite(a.min)) lo = a.min;
  if (std::isfinite(a.max)) hi = a.max;
  if (a.ticks_at_data) {
    std::set<double> d(data.begin(), data.end());
    r.ticks.assign(d.begin(), d.end());
    r.binary_k = std::all_of(r.ticks.begin(), r.ticks.end(), [](double v) { return v >= 1 && std::fmod(v, 1024.0) == 0; });
  }
  if (a.scale == Scale::log) {
    if (hi <= lo) lo /= 2, hi *= 2;
    const double pad = std::pow(hi / lo, 0.06);
    if (!std::isfinite(a.min)) lo /= pad;
    if (!std::isfinite(a.max)) hi *= pad;
    if (!a.ticks_at_data) r.ticks = log_ticks(lo, hi);
  } else {
    if (hi <= lo) lo -= std::max(1.0, std::fabs(lo) * 0.5), hi += std::max(1.0, std::fabs(hi) * 0.5);
    const double pad = (hi - lo) * 0.05;
    if (!std::isfinite(a.min)) lo -= pad;
    if (!std::isfinite(a.max)) hi += pad;
    if (!a.ticks_at_data) r.ticks = linear_ticks(lo, hi, 5);
  }
  r.lo = lo;
  r.hi = hi;
  r.ticks.erase(std::remove_if(r.ticks.begin(), r.ticks.end(), [&](double v) { return v < lo || v > hi; }), r.ticks.end());
  return r;
}

std::string num(double v) { return fmt::format("{:.1f}", v); }

std::string marker_svg(Marker m, double x, double y, const std::string& colour) {
  const std::string stroke = " stroke=\"#ffffff\" stroke-width=\"0.8\"";
  switch (m) {
    case Marker::circle:
      return fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.6\" fill=\"{}\"{}/>", num(x), num(y), colour, stroke);
    case Marker::square:
      return fmt::format("<rect x=\"{}\" y=\"{}\" width=\"7\" height=\"7\" fill=\"{}\"{}/>", num(x - 3.5), num(y - 3.5), colour, stroke);
    case Marker::triangle:
      return fmt::format("<path d=\"M{} {}L{} {}L{} {}Z\" fill=\"{}\"{}/>", num(x), num(y - 4.5), num(x + 4.2),
                         num(y + 3), num(x - 4.2), num(y + 3), colour, stroke);
    case Marker::diamond:
      return fmt::format("<path d=\"M{} {}L{} {}L{} {}L{} {}Z\" fill=\"{}\"{}/>", num(x), num(y - 4.6), num(x + 4.2),
                         num(y), num(x), num(y + 4.6), num(x - 4.2), num(y), colour, stroke);
    case Marker::cross:
      return fmt::format("<path d=\"M{} {}L{} {}M{} {}L{} {}\" stroke=\"{}\" stroke-width=\"2\"/>", num(x - 4), num(y - 4),
                         num(x + 4), num(y + 4), num(x - 4), num(y + 4), num(x + 4), num(y - 4), colour);
    case Marker::none: return "";
  }
  return "";
}

struct LegendLayout {
  double col_w = 0;
  int cols = 1, rows = 0;
};

LegendLayout legend_layout(const std::vector<const Series*>& entries, double avail) {
  LegendLayout l;
  for (const auto* s : entries) l.col_w = std::max(l.col_w, text_width(s->name, 11) + 40);
  l.col_w = std::min(l.col_w, avail);
  l.cols = std::max(1, static_cast<int>(avail / std::max(l.col_w, 1.0)));
  l.rows = entries.empty() ? 0 : static_cast<int>((entries.size() + l.cols - 1) / l.cols);
  return l;
}

std::string svg_open(double w, double h, const std::string& id, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" data-figure=\"{2}\" role=\"img\">\n"
      "<title>{3}</title>\n<rect width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n",
      num(w), num(h), xml_escape(id), xml_escape(title));
}

std::string xy_svg(const Figure& f) {
  std::vector<double> xs, ys;
  for (const auto& s : f.series)
    for (const auto& p : s.points) {
      if (!usable(p.x, f.x.scale) || !usable(p.y, f.y.scale)) continue;
      xs.push_back(p.x);
      ys.push_back(p.y);
      if (usable(p.lo, f.y.scale)) ys.push_back(p.lo);
      if (usable(p.hi, f.y.scale)) ys.push_back(p.hi);
    }
  // Marks lie within the data (crossovers between measured points): they set no tick.
  const Range xr = make_range(f.x, xs), yr = make_range(f.y, ys);

  double ytick_w = 0;
  for (double t : yr.ticks) ytick_w = std::max(ytick_w, text_width(tick_text(t, yr.binary_k), 11));
  const double left = 30 + ytick_w + 8, right = 24, top = 40, ph = 300;
  const double pw = kWidth - left - right;
  const double bottom = top + ph;
  std::vector<const Series*> entries;
  for (const auto& s : f.series)
    if (!s.name.empty()) entries.push_back(&s);
  const LegendLayout lg = legend_layout(entries, kWidth - 20);
  const double legend_top = bottom + 58;
  const double height = legend_top + lg.rows * 17 + f.notes.size() * 16 + 12;

  auto X = [&](double v) { return left + xr.to_unit(v) * pw; };
  auto Y = [&](double v) { return bottom - yr.to_unit(v) * ph; };

  std::string o = svg_open(kWidth, height, f.id, f.title);
  o += fmt::format("<text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n", xml_escape(f.title));
  o += fmt::format("<defs><clipPath id=\"clip-{}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath></defs>\n",
                   xml_escape(f.id), num(left), num(top), num(pw), num(ph));
  // Grid and ticks.
  o += "<g class=\"axes\" font-size=\"11\" fill=\"#333333\">\n";
  for (double t : xr.ticks) {
    const double x = X(t);
    o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#e5e5e5\"/>", num(x), num(top), num(bottom));
    o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#333333\"/>", num(x), num(bottom), num(bottom + 5));
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", num(x), num(bottom + 18),
                     xml_escape(tick_text(t, xr.binary_k)));
  }
  for (double t : yr.ticks) {
    const double y = Y(t);
    o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#e5e5e5\"/>", num(left), num(y), num(left + pw));
    o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#333333\"/>", num(left - 5), num(y), num(left));
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", num(left - 8), num(y + 4),
                     xml_escape(tick_text(t, yr.binary_k)));
  }
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333333\"/>\n", num(left),
                   num(top), num(pw), num(ph));
  // Axis labels at 12 px, smaller (down to 9 px) when that is what fits beside the plot.
  auto fit = [](const std::string& s, double room) { return std::clamp(12.0 * room / std::max(1.0, text_width(s, 12)), 9.0, 12.0); };
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{}\">{}</text>\n", num(left + pw / 2),
                   num(bottom + 38), num(fit(f.x.label, pw)), xml_escape(f.x.label));
  o += fmt::format("<text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\" font-size=\"{}\">{}</text>\n",
                   num(top + ph / 2), num(fit(f.y.label, ph - 4)), xml_escape(f.y.label));
  o += "</g>\n";

  // Data, clipped to the plot area.
  o += fmt::format("<g class=\"data\" clip-path=\"url(#clip-{})\">\n", xml_escape(f.id));
  for (const auto& s : f.series) {
    const std::string c = palette(s.colour);
    std::vector<const Point*> pts;
    for (const auto& p : s.points)
      if (usable(p.x, f.x.scale) && usable(p.y, f.y.scale)) pts.push_back(&p);
    if (pts.empty()) continue;
    if (s.band) {
      std::string d;
      std::vector<const Point*> b;
      for (const auto* p : pts)
        if (usable(p->lo, f.y.scale) && usable(p->hi, f.y.scale)) b.push_back(p);
      for (size_t i = 0; i < b.size(); ++i) d += fmt::format("{}{} {}", i ? "L" : "M", num(X(b[i]->x)), num(Y(b[i]->hi)));
      for (size_t i = b.size(); i-- > 0;) d += fmt::format("L{} {}", num(X(b[i]->x)), num(Y(b[i]->lo)));
      if (b.size() >= 2) o += fmt::format("<path d=\"{}Z\" fill=\"{}\" fill-opacity=\"0.18\" stroke=\"none\"/>\n", d, c);
    } else {
      for (const auto* p : pts)
        if (usable(p->lo, f.y.scale) && usable(p->hi, f.y.scale))
          o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"1.2\"/>\n",
                           num(X(p->x)), num(Y(p->lo)), num(Y(p->hi)), c);
    }
    if (s.line && pts.size() >= 2) {
      std::string d;
      for (size_t i = 0; i < pts.size(); ++i) d += fmt::format("{}{} {}", i ? "L" : "M", num(X(pts[i]->x)), num(Y(pts[i]->y)));
      o += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{}/>\n", d, c,
                       s.colour < 0 ? "1.2" : "1.8", s.dashed ? " stroke-dasharray=\"6 4\"" : "");
    }
    for (const auto* p : pts) {
      const std::string mk = marker_svg(s.marker, X(p->x), Y(p->y), c);
      if (mk.empty()) continue;
      o += "<g>" + mk + fmt::format("<title>{}: ({}, {})</title></g>\n", xml_escape(s.name), tick_text(p->x), tick_text(p->y));
    }
  }
  o += "</g>\n";

  // Annotations: label boxes pushed down until they overlap no earlier one.
  std::vector<std::array<double, 4>> boxes;
  for (const auto& m : f.marks) {
    if (!usable(m.x, f.x.scale) || !usable(m.y, f.y.scale)) continue;
    const double x = X(m.x), y = Y(m.y);
    const std::string c = palette(m.colour);
    o += marker_svg(Marker::cross, x, y, c) + "\n";
    const double w = text_width(m.text, 10.5);
    double tx = x + 6, ty = y - 8;
    if (tx + w > left + pw) tx = x - 6 - w;
    tx = std::clamp(tx, left + 2, std::max(left + 2, left + pw - w - 2));
    ty = std::max(ty, top + 12);
    for (int guard = 0; guard < 40; ++guard) {
      bool hit = false;
      for (const auto& b : boxes)
        if (tx < b[2] && tx + w > b[0] && ty - 10 < b[3] && ty + 2 > b[1]) hit = true;
      if (!hit) break;
      ty += 13;
    }
    boxes.push_back({tx, ty - 10, tx + w, ty + 2});
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10.5\" fill=\"{}\" stroke=\"#ffffff\" stroke-width=\"3\" "
                     "paint-order=\"stroke\">{}</text>\n",
                     num(tx), num(ty), c, xml_escape(m.text));
  }

  // Legend under the plot.
  o += "<g class=\"legend\" font-size=\"11\">\n";
  for (size_t i = 0; i < entries.size(); ++i) {
    const Series& s = *entries[i];
    const int col = static_cast<int>(i) / lg.rows, row = static_cast<int>(i) % lg.rows;
    const double x = 10 + col * lg.col_w, y = legend_top + row * 17;
    const std::string c = palette(s.colour);
    if (s.line)
      o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.8\"{}/>", num(x),
                       num(y - 4), num(x + 24), num(y - 4), c, s.dashed ? " stroke-dasharray=\"6 4\"" : "");
    else if (s.band)
      o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"24\" height=\"8\" fill=\"{}\" fill-opacity=\"0.18\"/>", num(x), num(y - 8), c);
    o += marker_svg(s.marker, x + 12, y - 4, c);
    o += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", num(x + 30), num(y), xml_escape(s.name));
  }
  for (size_t i = 0; i < f.notes.size(); ++i)
    o += fmt::format("<text x=\"10\" y=\"{}\" fill=\"#333333\">{}</text>\n", num(legend_top + lg.rows * 17 + i * 16 + 4),
                     xml_escape(f.notes[i]));
  o += "</g>\n</svg>\n";
  return o;
}

// Black or white text, whichever reads better on `hex` (relative luminance, WCAG 2).
std::string text_on(const std::string& hex) {
  auto ch = [&](int i) {
    const double c = std::stoi(hex.substr(1 + 2 * i, 2), nullptr, 16) / 255.0;
    return c <= 0.03928 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4);
  };
  const double l = 0.2126 * ch(0) + 0.7152 * ch(1) + 0.0722 * ch(2);
  return l > 0.22 ? "#000000" : "#ffffff";
}

std::string maps_svg(const Figure& f) {
  size_t ncols = 0, nrows = 0;
  double title_w = 0, row_label_w = 0;
  for (const auto& m : f.maps) {
    ncols = std::max(ncols, m.cols.size());
    nrows = std::max(nrows, m.rows.size());
    title_w = std::max(title_w, text_width(m.title, 11));
    for (const auto& r : m.rows) row_label_w = std::max(row_label_w, text_width(r, 10));
  }
  const double cell_h = 22;
  const double cell_w = std::max(40.0, std::ceil(title_w / std::max<size_t>(ncols, 1)) + 2);
  const double map_w = cell_w * ncols, map_h = cell_h * nrows;
  const double block_w = row_label_w + 8 + map_w + 18, block_h = 18 + map_h + 22;
  const int per_row = std::max(1, static_cast<int>((kWidth - 20) / block_w));
  const int grid_rows = static_cast<int>((f.maps.size() + per_row - 1) / std::max(per_row, 1));
  const double top = 58;
  const double bar_top = top + grid_rows * (block_h + 10) + 6;
  const double height = bar_top + 44 + f.notes.size() * 16 + 8;

  std::string o = svg_open(kWidth, height, f.id, f.title);
  o += fmt::format("<text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n", xml_escape(f.title));
  o += fmt::format("<text x=\"10\" y=\"40\" font-size=\"11\" fill=\"#333333\">columns: {}; rows: {}</text>\n",
                   xml_escape(f.map_x_label), xml_escape(f.map_y_label));
  for (size_t k = 0; k < f.maps.size(); ++k) {
    const Heatmap& m = f.maps[k];
    const double bx = 10 + (k % per_row) * block_w, by = top + (k / per_row) * (block_h + 10);
    const double mx = bx + row_label_w + 8, my = by + 18;
    o += fmt::format("<g class=\"heatmap\"><text x=\"{}\" y=\"{}\" font-size=\"11\" font-weight=\"bold\">{}</text>\n",
                     num(mx), num(by + 12), xml_escape(m.title));
    for (size_t r = 0; r < m.rows.size(); ++r) {
      o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>", num(mx - 5),
                       num(my + r * cell_h + cell_h / 2 + 4), xml_escape(m.rows[r]));
      for (size_t c = 0; c < m.cols.size(); ++c) {
        const double v = r < m.values.size() && c < m.values[r].size() ? m.values[r][c] : NAN;
        const double t = (v - f.vmin) / (f.vmax - f.vmin);
        const std::string fill = colormap(std::isfinite(v) ? t : NAN);
        o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ffffff\"/>",
                         num(mx + c * cell_w), num(my + r * cell_h), num(cell_w), num(cell_h), fill);
        o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
                         num(mx + c * cell_w + cell_w / 2), num(my + r * cell_h + cell_h / 2 + 3.5),
                         std::isfinite(v) ? text_on(fill) : "#333333",
                         std::isfinite(v) ? fmt::format("{:.0f}", v * f.value_scale) : "–");
      }
    }
    for (size_t c = 0; c < m.cols.size(); ++c)
      o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                       num(mx + c * cell_w + cell_w / 2), num(my + map_h + 13), xml_escape(m.cols[c]));
    o += "</g>\n";
  }
  // Shared colour bar.
  o += "<defs><linearGradient id=\"cbar-" + xml_escape(f.id) + "\">";
  for (int i = 0; i <= 8; ++i) o += fmt::format("<stop offset=\"{}%\" stop-color=\"{}\"/>", i * 12.5, colormap(i / 8.0));
  o += "</linearGradient></defs>\n";
  const double bx = 10 + row_label_w + 8, bw = 240;
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" fill=\"url(#cbar-{})\" stroke=\"#333333\" stroke-width=\"0.5\"/>\n",
                   num(bx), num(bar_top), num(bw), xml_escape(f.id));
  for (int i = 0; i <= 4; ++i) {
    const double v = f.vmin + (f.vmax - f.vmin) * i / 4.0;
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>", num(bx + bw * i / 4.0),
                     num(bar_top + 25), tick_text(v * f.value_scale));
  }
  o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>\n", num(bx + bw + 12), num(bar_top + 10),
                   xml_escape(f.scale_label));
  for (size_t i = 0; i < f.notes.size(); ++i)
    o += fmt::format("<text x=\"10\" y=\"{}\" font-size=\"11\" fill=\"#333333\">{}</text>\n",
                     num(bar_top + 44 + i * 16), xml_escape(f.notes[i]));
  o += "</svg>\n";
  return o;
}

// ---- PGFPlots ----------------------------------------------------------------------------------

std::string tex(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto rest = std::string_view(s).substr(i);
    auto starts = [&](std::string_view u) { return rest.substr(0, u.size()) == u; };
    if (starts("†")) { o += "\\textsuperscript{\\dag}"; i += std::string_view("†").size() - 1; continue; }
    if (starts("‡")) { o += "\\textsuperscript{\\ddag}"; i += std::string_view("‡").size() - 1; continue; }
    if (starts("×")) { o += "$\\times$"; i += std::string_view("×").size() - 1; continue; }
    if (starts("≈")) { o += "$\\approx$"; i += std::string_view("≈").size() - 1; continue; }
    if (starts("≥")) { o += "$\\geq$"; i += std::string_view("≥").size() - 1; continue; }
    if (starts("–") || starts("—")) { o += "--"; i += 2; continue; }
    if (starts("…")) { o += "\\ldots{}"; i += 2; continue; }
    if (starts("±")) { o += "$\\pm$"; i += 1; continue; }
    switch (c) {
      case '\\': o += "\\textbackslash{}"; break;
      case '&': case '%': case '$': case '#': case '_': case '{': case '}': o += '\\'; o += c; break;
      case '~': o += "\\textasciitilde{}"; break;
      case '^': o += "\\textasciicircum{}"; break;
      case '<': o += "\\textless{}"; break;
      case '>': o += "\\textgreater{}"; break;
      case '|': o += "\\textbar{}"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x80) {
          // Other non-ASCII: one '?' per character (pdflatex without extra packages).
          if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) o += '?';
        } else {
          o += c;
        }
    }
  }
  return o;
}

std::string g(double v) { return fmt::format("{:.6g}", v); }

std::string pgf_mark(Marker m) {
  switch (m) {
    case Marker::circle: return "*";
    case Marker::square: return "square*";
    case Marker::triangle: return "triangle*";
    case Marker::diamond: return "diamond*";
    case Marker::cross: return "x";
    case Marker::none: return "none";
  }
  return "*";
}

std::string colour_defs() {
  std::string o;
  for (int i = 0; i < 8; ++i) o += fmt::format("\\definecolor{{abc{}}}{{HTML}}{{{}}}\n", i, palette(i).substr(1));
  o += "\\definecolor{abcgrey}{HTML}{888888}\n";
  return o;
}

std::string cname(int i) { return i < 0 ? "abcgrey" : fmt::format("abc{}", i % 8); }

std::string xy_pgf(const Figure& f) {
  std::vector<double> xs;
  for (const auto& s : f.series)
    for (const auto& p : s.points)
      if (usable(p.x, f.x.scale)) xs.push_back(p.x);
  const Range xr = make_range(f.x, xs);
  std::string o = "% attn-bench figure: " + f.title + "\n% " + f.caption + "\n";
  o += "% Needs \\usepackage{pgfplots} (compat 1.16 or later) in the preamble.\n\\begin{tikzpicture}\n" + colour_defs();
  std::vector<std::string> opts = {"width=0.95\\linewidth", "height=0.55\\linewidth",
                                   "xlabel={" + tex(f.x.label) + "}", "ylabel={" + tex(f.y.label) + "}",
                                   "grid=major", "major grid style={gray!20}", "legend cell align=left",
                                   "legend style={font=\\scriptsize, at={(0.5,-0.22)}, anchor=north, legend columns=2, draw=none}",
                                   "tick label style={font=\\footnotesize}", "title={" + tex(f.title) + "}",
                                   "title style={font=\\small}"};
  if (f.x.scale == Scale::log) opts.push_back("xmode=log");
  if (f.y.scale == Scale::log) opts.push_back("ymode=log");
  if (f.y.scale == Scale::log) opts.push_back("log ticks with fixed point");
  if (std::isfinite(f.x.min)) opts.push_back("xmin=" + g(f.x.min));
  if (std::isfinite(f.x.max)) opts.push_back("xmax=" + g(f.x.max));
  if (std::isfinite(f.y.min)) opts.push_back("ymin=" + g(f.y.min));
  if (std::isfinite(f.y.max)) opts.push_back("ymax=" + g(f.y.max));
  if (f.x.ticks_at_data && !xr.ticks.empty()) {
    std::string t, l;
    for (double v : xr.ticks) {
      t += (t.empty() ? "" : ",") + g(v);
      l += (l.empty() ? "" : ",") + tick_text(v, xr.binary_k);
    }
    opts.push_back("xtick={" + t + "}");
    opts.push_back("xticklabels={" + l + "}");
    opts.push_back("minor xtick={}");
  } else if (f.x.scale == Scale::log) {
    opts.push_back("log ticks with fixed point");
  }
  o += "\\begin{axis}[\n";
  for (size_t i = 0; i < opts.size(); ++i) o += "  " + opts[i] + (i + 1 < opts.size() ? ",\n" : "]\n");
  for (const auto& s : f.series) {
    std::vector<const Point*> pts;
    for (const auto& p : s.points)
      if (usable(p.x, f.x.scale) && usable(p.y, f.y.scale)) pts.push_back(&p);
    if (pts.empty()) continue;
    const std::string c = cname(s.colour);
    if (s.band) {
      std::string poly;
      std::vector<const Point*> b;
      for (const auto* p : pts)
        if (usable(p->lo, f.y.scale) && usable(p->hi, f.y.scale)) b.push_back(p);
      for (const auto* p : b) poly += fmt::format("({},{}) ", g(p->x), g(p->hi));
      for (size_t i = b.size(); i-- > 0;) poly += fmt::format("({},{}) ", g(b[i]->x), g(b[i]->lo));
      if (b.size() >= 2)
        o += "\\addplot[fill=" + c + ", fill opacity=0.18, draw=none, forget plot] coordinates {" + poly + "} -- cycle;\n";
    }
    std::string style = fmt::format("color={}, mark={}{}{}{}", c, pgf_mark(s.marker), s.line ? "" : ", only marks",
                                    s.dashed ? ", dashed" : "", s.name.empty() ? ", forget plot" : "");
    bool errors = false;
    for (const auto* p : pts)
      if (!s.band && usable(p->lo, f.y.scale) && usable(p->hi, f.y.scale)) errors = true;
    if (errors) style += ", error bars/.cd, y dir=both, y explicit";
    std::string coords;
    for (const auto* p : pts) {
      coords += "(" + g(p->x) + "," + g(p->y) + ")";
      if (errors) {
        const double hi = usable(p->hi, f.y.scale) ? p->hi - p->y : 0, lo = usable(p->lo, f.y.scale) ? p->y - p->lo : 0;
        coords += " +- (0," + g(std::max(hi, lo)) + ")";
      }
      coords += " ";
    }
    o += "\\addplot[" + style + "] coordinates {" + coords + "};\n";
    if (!s.name.empty()) o += "\\addlegendentry{" + tex(s.name) + "}\n";
  }
  for (const auto& m : f.marks) {
    if (!usable(m.x, f.x.scale) || !usable(m.y, f.y.scale)) continue;
    o += "\\addplot[only marks, mark=x, mark size=3pt, color=" + cname(m.colour) + ", forget plot] coordinates {(" +
         g(m.x) + "," + g(m.y) + ")};\n";
    o += "\\node[font=\\tiny, anchor=south west, text=" + cname(m.colour) + "] at (axis cs:" + g(m.x) + "," + g(m.y) +
         ") {" + tex(m.text) + "};\n";
  }
  o += "\\end{axis}\n";
  double y = -0.5;
  for (const auto& n : f.notes) {
    o += fmt::format("\\node[font=\\scriptsize, anchor=north west] at (current axis.below south west) [yshift={:.1f}cm] {{{}}};\n",
                     y - 1.6, tex(n));
    y -= 0.4;
  }
  o += "\\end{tikzpicture}\n";
  return o;
}

std::string maps_pgf(const Figure& f) {
  std::string o = "% attn-bench figure: " + f.title + "\n% " + f.caption + "\n";
  o += "% Needs \\usepackage{pgfplots} (compat 1.16 or later) in the preamble.\n\\begin{tikzpicture}\n";
  const int per_row = 3;
  for (size_t k = 0; k < f.maps.size(); ++k) {
    const Heatmap& m = f.maps[k];
    const double x = (k % per_row) * 5.0, y = -static_cast<double>(k / per_row) * 5.2;
    std::string xt, xl, yt, yl;
    for (size_t c = 0; c < m.cols.size(); ++c) {
      xt += fmt::format("{}{}", c ? "," : "", c);
      xl += fmt::format("{}{{{}}}", c ? "," : "", tex(m.cols[c]));
    }
    for (size_t r = 0; r < m.rows.size(); ++r) {
      yt += fmt::format("{}{}", r ? "," : "", r);
      yl += fmt::format("{}{{{}}}", r ? "," : "", tex(m.rows[r]));
    }
    const bool last = k + 1 == f.maps.size();
    o += fmt::format(
        "\\begin{{axis}}[at={{({:.1f}cm,{:.1f}cm)}}, width=4.6cm, height=4.6cm, scale only axis=false, "
        "title={{{}}}, title style={{font=\\scriptsize}}, tick label style={{font=\\tiny}}, "
        "colormap/viridis, point meta min={}, point meta max={}, y dir=reverse, enlargelimits=false, "
        "xtick={{{}}}, xticklabels={{{}}}, ytick={{{}}}, yticklabels={{{}}}, axis on top{}]\n",
        x, y, tex(m.title), g(f.vmin * f.value_scale), g(f.vmax * f.value_scale), xt, xl, yt, yl,
        last ? ", colorbar, colorbar style={ylabel={" + tex(f.scale_label) + "}, font=\\tiny}" : "");
    o += fmt::format("\\addplot[matrix plot*, mesh/cols={}, point meta=explicit] coordinates {{\n", m.cols.size());
    for (size_t r = 0; r < m.rows.size(); ++r) {
      for (size_t c = 0; c < m.cols.size(); ++c) {
        const double v = r < m.values.size() && c < m.values[r].size() ? m.values[r][c] : NAN;
        o += fmt::format("({},{}) [{}] ", c, r, std::isfinite(v) ? g(v * f.value_scale) : "nan");
      }
      o += "\n";
    }
    o += "};\n";
    for (size_t r = 0; r < m.rows.size(); ++r)
      for (size_t c = 0; c < m.cols.size(); ++c) {
        const double v = r < m.values.size() && c < m.values[r].size() ? m.values[r][c] : NAN;
        if (!std::isfinite(v)) continue;
        const std::string fill = colormap((v - f.vmin) / (f.vmax - f.vmin));
        o += fmt::format("\\node[font=\\tiny, text={}] at (axis cs:{},{}) {{{:.0f}}};\n",
                         text_on(fill) == "#000000" ? "black" : "white", c, r, v * f.value_scale);
      }
    o += "\\end{axis}\n";
  }
  o += "\\end{tikzpicture}\n";
  if (!f.notes.empty()) {
    o += "% Notes:";
    for (const auto& n : f.notes) o += " " + n;
    o += "\n";
  }
  return o;
}

}  // namespace

std::string to_svg(const Figure& f) { return f.maps.empty() ? xy_svg(f) : maps_svg(f); }

std::string to_pgfplots(const Figure& f) { return f.maps.empty() ? xy_pgf(f) : maps_pgf(f); }

}  // namespace ab::figures
