//! SVG plots, written by hand (a few lines of SVG beat a plotting
//! dependency): latency percentile curves per server, and throughput vs p99.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

use super::results::Results;

const W: f64 = 760.0;
const H: f64 = 440.0;
const L: f64 = 70.0;
const R: f64 = 150.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Writes `latency-<point>.svg` for every latency point and
/// `throughput-p99.svg`; returns nothing but errors.
pub fn write_all(
    results: &Results,
    hists: &HashMap<(String, String, String), Histogram<u64>>,
    out: &Path,
) -> io::Result<()> {
    let mut points: Vec<&str> = Vec::new();
    for s in &results.summaries {
        if s.scenario == "latency" && !points.contains(&s.point.as_str()) {
            points.push(&s.point);
        }
    }
    for point in points {
        let mut series = Vec::new();
        for s in results
            .summaries
            .iter()
            .filter(|s| s.scenario == "latency" && s.point == point)
        {
            if let Some(h) = hists.get(&(s.scenario.clone(), s.point.clone(), s.server.clone())) {
                series.push(Series {
                    name: s.server.clone(),
                    points: percentile_curve(h),
                });
            }
        }
        let name = format!("latency-{}.svg", file_part(point));
        let svg = chart(
            &format!("Round-trip latency by percentile, {point}"),
            "percentile",
            "latency (µs)",
            &series,
            true,
        );
        std::fs::write(out.join(name), svg)?;
    }
    // Throughput vs p99 over the open-loop points, one line per server.
    let mut by_server: Vec<Series> = Vec::new();
    for s in results
        .summaries
        .iter()
        .filter(|s| s.scenario == "latency" && s.point != "max" && s.enough_valid())
    {
        let p = (s.throughput.median, s.p99_us.median.max(1.0));
        match by_server.iter_mut().find(|x| x.name == s.server) {
            Some(x) => x.points.push(p),
            None => by_server.push(Series {
                name: s.server.clone(),
                points: vec![p],
            }),
        }
    }
    // The sweep: p99 against the offered rate, one line per server.
    let mut sweep: Vec<Series> = Vec::new();
    for s in results
        .summaries
        .iter()
        .filter(|s| s.scenario == "sweep" && s.point != "max" && s.enough_valid())
    {
        let Some(rate) = s.point.trim_end_matches("/s").parse::<f64>().ok() else {
            continue;
        };
        let p = (rate, s.p99_us.median.max(1.0));
        match sweep.iter_mut().find(|x| x.name == s.server) {
            Some(x) => x.points.push(p),
            None => sweep.push(Series {
                name: s.server.clone(),
                points: vec![p],
            }),
        }
    }
    if !sweep.is_empty() {
        for s in &mut sweep {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let svg = chart(
            "p99 vs offered load (sweep; points with too few valid runs left out)",
            "offered messages/s",
            "p99 (µs)",
            &sweep,
            false,
        );
        std::fs::write(out.join("sweep-p99.svg"), svg)?;
    }
    // Models: p99 against log10(connections), one line per server.
    let mut models: Vec<Series> = Vec::new();
    for s in results
        .summaries
        .iter()
        .filter(|s| s.scenario == "models" && s.enough_valid())
    {
        let Some(conns) = s
            .point
            .strip_prefix("conns=")
            .and_then(|r| r.split(' ').next())
            .and_then(|c| c.parse::<f64>().ok())
        else {
            continue;
        };
        let p = (conns.log10(), s.p99_us.median.max(1.0));
        match models.iter_mut().find(|x| x.name == s.server) {
            Some(x) => x.points.push(p),
            None => models.push(Series {
                name: s.server.clone(),
                points: vec![p],
            }),
        }
    }
    // Drawn whenever the scenario ran, with empty axes if no point had
    // enough valid runs (the table says why).
    if results.summaries.iter().any(|s| s.scenario == "models") {
        let svg = chart(
            "p99 vs connections at one open-loop rate (models)",
            "log10(connections)",
            "p99 (µs)",
            &models,
            false,
        );
        std::fs::write(out.join("models-p99.svg"), svg)?;
    }
    if !by_server.is_empty() {
        let svg = chart(
            "Throughput vs p99 (open loop)",
            "messages/s",
            "p99 (µs)",
            &by_server,
            false,
        );
        std::fs::write(out.join("throughput-p99.svg"), svg)?;
    }
    Ok(())
}

fn file_part(s: &str) -> String {
    s.split_whitespace().next().unwrap_or(s).replace('%', "pct")
}

/// (x = -log10(1 - q), y = latency µs) from 0 to 99.999%.
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for v in h.iter_quantiles(4) {
        let q = v.quantile_iterated_to();
        if q >= 0.99999 {
            pts.push((5.0, crate::hist::us(v.value_iterated_to()).max(1.0)));
            break;
        }
        // The histogram keeps ns; the chart is in µs.
        pts.push((
            -(1.0 - q).log10(),
            crate::hist::us(v.value_iterated_to()).max(1.0),
        ));
    }
    pts
}

/// A line chart with a log10 y-axis. `percentile_x`: x is -log10(1-q).
fn chart(title: &str, xlabel: &str, ylabel: &str, series: &[Series], percentile_x: bool) -> String {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        // No points at all: draw empty axes.
        (x1, y0, y1) = (1.0, 1.0, 10.0);
    }
    if percentile_x {
        (x0, x1) = (0.0, 5.0);
    } else {
        x0 = 0.0;
        x1 *= 1.1;
    }
    let (ly0, ly1) = (
        y0.max(1.0).log10().floor(),
        (y1.max(10.0).log10()).ceil().max(1.0),
    );
    let px = |x: f64| L + (x - x0) / (x1 - x0).max(1e-9) * (W - L - R);
    let py = |y: f64| H - B - (y.max(1.0).log10() - ly0) / (ly1 - ly0).max(1e-9) * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Y grid: decades.
    let mut d = ly0;
    while d <= ly1 {
        let y = py(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            W - R
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            L - 6.0,
            y + 4.0,
            fmt_num(10f64.powf(d))
        );
        d += 1.0;
    }
    // X ticks.
    for i in 0..=5 {
        let xv = x0 + (x1 - x0) * i as f64 / 5.0;
        let x = px(xv);
        let label = if percentile_x {
            ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"][i].to_string()
        } else {
            fmt_num(xv)
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{T}" x2="{x}" y2="{}" stroke="#eee"/>"##,
            H - B
        );
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (L + W - R) / 2.0,
        H - 12.0,
        esc(xlabel)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        esc(ylabel)
    );
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        W - L - R,
        H - T - B
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for &(x, y) in &ser.points {
            if !percentile_x {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                    px(x),
                    py(y)
                );
            }
        }
        let ly = T + 16.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/>"#,
            W - R + 12.0,
            W - R + 32.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            W - R + 38.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
