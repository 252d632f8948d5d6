import Foundation

/// A small chart renderer for `smolconv verify --plot`: panels stacked vertically, each with
/// axes, ticks, tick labels, a title, and bars or lines with markers over category positions
/// 0 … n − 1. No Python, no dependencies: pixels into an `RGBImage`, then PNG.
public struct PlotPanel: Sendable {
    public enum Style: Sendable { case bars, lineWithMarkers }

    public var title: String
    public var xLabel: String
    /// Label of each x position (shown thinned out when they would overlap).
    public var xTickLabels: [String]
    /// One value per x position. nil: no value there. +infinity: off the scale (drawn to the top
    /// in `cappedColor`, e.g. a bit-identical tensor's SQNR).
    public var values: [Double?]
    public var style: Style
    public var color: (UInt8, UInt8, UInt8)
    public var cappedColor: (UInt8, UInt8, UInt8) = (120, 120, 120)
    /// A legend line printed under the title (e.g. what capped bars mean).
    public var note: String?

    public init(title: String, xLabel: String, xTickLabels: [String], values: [Double?], style: Style,
                color: (UInt8, UInt8, UInt8), note: String? = nil) {
        precondition(xTickLabels.count == values.count)
        self.title = title; self.xLabel = xLabel; self.xTickLabels = xTickLabels
        self.values = values; self.style = style; self.color = color; self.note = note
    }
}

public enum Plotter {
    static let ink: (UInt8, UInt8, UInt8) = (0, 0, 0)
    static let grid: (UInt8, UInt8, UInt8) = (225, 225, 225)
    /// Font scale: 5 × 7 glyphs drawn 2× (10 × 14 px, 12 px advance).
    static let scale = 2

    public static func render(_ panels: [PlotPanel], width: Int = 960, panelHeight: Int = 380) -> RGBImage {
        var img = RGBImage(width: width, height: max(1, panels.count) * panelHeight)
        for (i, p) in panels.enumerated() {
            draw(p, into: &img, top: i * panelHeight, height: panelHeight)
        }
        return img
    }

    // MARK: Panel

    static func draw(_ p: PlotPanel, into img: inout RGBImage, top: Int, height: Int) {
        let left = 110, right = img.width - 30
        let plotTop = top + (p.note == nil ? 44 : 64), plotBottom = top + height - 62
        text(&img, p.title, x: left, y: top + 12, color: ink)
        if let note = p.note { text(&img, note, x: left, y: top + 34, color: (90, 90, 90)) }

        let finite = p.values.compactMap { $0 }.filter { $0.isFinite }
        let hasCapped = p.values.contains { $0 == .infinity }
        var lo = finite.min() ?? 0, hi = finite.max() ?? 1
        if p.style == .bars { lo = min(lo, 0); hi = max(hi, 0) }
        if hi == lo { hi = lo + (lo == 0 ? 1 : abs(lo) * 0.1) }
        let ticks = niceTicks(lo, hi)
        lo = min(lo, ticks.first!); hi = max(hi, ticks.last!)
        if hasCapped { hi += (hi - lo) * 0.12 }  // headroom: capped bars rise above the last tick
        func yPix(_ v: Double) -> Int {
            plotBottom - Int(((v - lo) / (hi - lo) * Double(plotBottom - plotTop)).rounded())
        }

        // Grid, y ticks and labels.
        for t in ticks {
            let y = yPix(t)
            for x in left..<right { img.set(x, y, grid) }
            for x in (left - 6)..<left { img.set(x, y, ink) }
            let label = tickLabel(t, step: ticks.count > 1 ? ticks[1] - ticks[0] : 1)
            text(&img, label, x: left - 10 - textWidth(label), y: y - 7, color: ink)
        }
        // Axes.
        for y in plotTop...plotBottom { img.set(left, y, ink) }
        for x in left...right { img.set(x, plotBottom, ink) }

        let n = p.values.count
        guard n > 0 else { return }
        let slot = Double(right - left) / Double(n)
        func xPix(_ i: Int) -> Int { left + Int((Double(i) + 0.5) * slot) }

        // X ticks: thin labels so they do not overlap.
        let maxLabel = max(1, p.xTickLabels.map { textWidth($0) }.max() ?? 1)
        let every = max(1, Int((Double(maxLabel + 12) / slot).rounded(.up)))
        for i in 0..<n {
            let x = xPix(i)
            for y in plotBottom..<(plotBottom + 5) { img.set(x, y, ink) }
            if i % every == 0 {
                let l = p.xTickLabels[i]
                text(&img, l, x: x - textWidth(l) / 2, y: plotBottom + 10, color: ink)
            }
        }
        text(&img, p.xLabel, x: (left + right - textWidth(p.xLabel)) / 2, y: plotBottom + 34, color: ink)

        switch p.style {
        case .bars:
            let half = max(1, Int(slot * 0.35))
            let zero = yPix(max(lo, 0))
            for (i, v) in p.values.enumerated() {
                guard let v else { continue }
                let capped = v == .infinity
                let y = capped ? plotTop : yPix(v)
                fillRect(&img, x0: xPix(i) - half, y0: min(y, zero), x1: xPix(i) + half, y1: max(y, zero),
                         color: capped ? p.cappedColor : p.color)
            }
        case .lineWithMarkers:
            var previous: (Int, Int)?
            for (i, v) in p.values.enumerated() {
                guard let v, v.isFinite else { previous = nil; continue }
                let pt = (xPix(i), yPix(v))
                if let q = previous { line(&img, q, pt, color: p.color) }
                previous = pt
            }
            for (i, v) in p.values.enumerated() {
                guard let v, v.isFinite else { continue }
                fillRect(&img, x0: xPix(i) - 3, y0: yPix(v) - 3, x1: xPix(i) + 3, y1: yPix(v) + 3, color: p.color)
            }
        }
    }

    // MARK: Scales

    /// Ticks at 1, 2 or 5 × 10^k covering [lo, hi] with about five intervals.
    static func niceTicks(_ lo: Double, _ hi: Double) -> [Double] {
        let raw = (hi - lo) / 5
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        let first = floor(lo / step) * step, last = ceil(hi / step) * step
        var out: [Double] = []
        var t = first
        while t <= last + step * 1e-9 && out.count < 50 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    /// Fixed-point with as many decimals as the step needs; scientific for tiny or huge steps.
    static func tickLabel(_ v: Double, step: Double) -> String {
        if v == 0 { return "0" }
        if step < 1e-3 || abs(v) >= 1e6 { return String(format: "%.1E", v) }
        let decimals = max(0, Int(ceil(-log10(step) - 1e-9)))
        return String(format: "%.\(decimals)f", v)
    }

    // MARK: Pixels

    static func textWidth(_ s: String) -> Int { s.count * (BitmapFont.width + 1) * scale }

    static func text(_ img: inout RGBImage, _ s: String, x: Int, y: Int, color: (UInt8, UInt8, UInt8)) {
        var cx = x
        for ch in s {
            if let g = BitmapFont.glyph(ch) {
                for (r, row) in g.enumerated() {
                    for (c, bit) in row.enumerated() where bit == "#" {
                        fillRect(&img, x0: cx + c * scale, y0: y + r * scale,
                                 x1: cx + c * scale + scale - 1, y1: y + r * scale + scale - 1, color: color)
                    }
                }
            }
            cx += (BitmapFont.width + 1) * scale
        }
    }

    static func fillRect(_ img: inout RGBImage, x0: Int, y0: Int, x1: Int, y1: Int, color: (UInt8, UInt8, UInt8)) {
        for y in min(y0, y1)...max(y0, y1) {
            for x in min(x0, x1)...max(x0, x1) { img.set(x, y, color) }
        }
    }

    /// A two-pixel-wide Bresenham line.
    static func line(_ img: inout RGBImage, _ a: (Int, Int), _ b: (Int, Int), color: (UInt8, UInt8, UInt8)) {
        var (x, y) = a
        let dx = abs(b.0 - x), dy = -abs(b.1 - y)
        let sx = x < b.0 ? 1 : -1, sy = y < b.1 ? 1 : -1
        var err = dx + dy
        while true {
            img.set(x, y, color); img.set(x + 1, y, color); img.set(x, y + 1, color)
            if x == b.0 && y == b.1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }
}
