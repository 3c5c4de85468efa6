//! PNG charts drawn with plotters: training curves, confusion matrices, the
//! comparison of several runs and `explain`'s picture sheet. Text is rendered by ab_glyph with a DejaVu Sans subset
//! compiled into the binary (`assets/fonts/`, see `canvas`), so charts look the same
//! on every machine and need no system fonts. Pictures are rendered in memory and written
//! atomically, so a reader never sees half a PNG.

mod canvas;
mod colors;
mod confusion;
mod curves;
mod sheet;

pub use colors::{activation_rgb, saliency_scale, signed_rgb, FLAT_TILE_RGB};
pub use confusion::confusion;
pub use curves::{comparison, training_curves, Run};
pub use sheet::{explain_sheet, Filters, Sheet, SHEET_WIDTH};

use anyhow::{anyhow, bail, Context, Result};
use image::{ImageFormat, RgbImage};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;

use crate::files::write_atomic;
use canvas::Canvas;

type Area<'a> = DrawingArea<Canvas<'a>, Shift>;

const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(110, 110, 110);

fn text_style(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&INK)
}

fn bold_style(size: f64) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().color(&INK)
}

/// Text centred on its position, both ways.
fn centered(size: f64) -> TextStyle<'static> {
    text_style(size).pos(Pos::new(HPos::Center, VPos::Center))
}

/// Draw a `w`x`h` picture into memory, on white.
fn render(w: u32, h: u32, draw: impl FnOnce(&Area) -> Result<()>) -> Result<RgbImage> {
    let fonts = canvas::fonts().map_err(|e| anyhow!(e))?;
    let mut image = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let root = Canvas::new(&mut image, fonts).into_drawing_area();
    draw(&root)?;
    root.present()?;
    drop(root);
    Ok(image)
}

/// The format a picture at `path` is written in, if `path` can be one: named with the
/// extension of a format this build can encode, not a directory, in a directory that
/// exists. Commands ask before their work, so that a bad path is not found only at the end.
pub fn picture_format(path: &Path) -> Result<ImageFormat> {
    if path.is_dir() {
        bail!("{}: is a directory; give a file name such as {}", path.display(), path.join("plot.png").display());
    }
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("{}: no such directory {}", path.display(), parent.display());
    }
    let format = ImageFormat::from_path(path)
        .map_err(|_| anyhow!("{}: unknown picture format; give the file a .png name", path.display()))?;
    // The image crate names formats (.tga, .exr, .qoi…) whose encoders this build leaves out.
    if !format.writing_enabled() {
        bail!("{}: gpu-cnn cannot write {format:?} pictures; give the file a .png name", path.display());
    }
    Ok(format)
}

/// Encode by the file name's extension (PNG in practice) and replace `path` atomically.
fn save(img: &RgbImage, path: &Path) -> Result<()> {
    let format = picture_format(path)?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).with_context(|| format!("cannot encode {} as {format:?}", path.display()))?;
    write_atomic(path, bytes.get_ref()).with_context(|| format!("cannot write {}", path.display()))
}

/// Steps on the x axis: whole numbers, with a margin so that end points (and a lone
/// point) sit inside the frame. A step near u64::MAX (a metrics file can say anything)
/// gets no margin past the largest step rather than an axis that wraps around.
fn step_range(steps: impl Iterator<Item = u64>) -> Range<u64> {
    let (lo, hi) = steps.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
    if lo > hi {
        return 0..1;
    }
    // plotters places steps through f64, whose 53 bits cannot tell neighbouring steps
    // apart past 2^53: there the margin is wide enough for the ends to differ.
    let pad = ((hi - lo) / 40).max(1).max(hi >> 45);
    lo.saturating_sub(pad)..hi.saturating_add(pad)
}

/// A value axis around `values`, which lie within `bounds` (loss is never negative,
/// accuracy never above 100%). The axis may reach a little past a bound, so that a
/// curve at 0 or 100% is not hidden in the frame, but `tick_formatter` labels no tick
/// out there. A constant series still gets a span, so that its tick labels differ and
/// the line is not drawn on the frame.
fn value_range(values: impl Iterator<Item = f64>, bounds: (f64, f64)) -> Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return bounds.0..if bounds.1.is_finite() { bounds.1 } else { bounds.0 + 1.0 };
    }
    // Values far apart (a loss of 0 and one of 1.79e308) would make the span, the
    // padding or plotters' own `end - start` infinite, and plotters never returns from
    // laying out an infinite axis: the axis stays within ±f64::MAX / 4, and a point past
    // that is drawn off the chart.
    const LIMIT: f64 = f64::MAX / 4.0;
    let (lo, hi) = (lo.clamp(-LIMIT, LIMIT), hi.clamp(-LIMIT, LIMIT));
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        return lo - pad..hi + pad;
    }
    let span = (lo.abs() * 0.1).max(0.1);
    let (floor, ceiling) = (bounds.0 - span * 0.05, bounds.1 + span * 0.05);
    let start = (lo - span / 2.0).max(floor).min(ceiling - span);
    start..start + span
}

/// Tick labels with as many decimals as the tick spacing needs, the same for every
/// tick ("2.20 2.25 2.30", not "2.2 2.25 2.3" nor "2.3 2.3 2.3"), and none outside
/// `bounds`.
fn tick_formatter(range: &Range<f64>, ticks: usize, bounds: (f64, f64)) -> impl Fn(&f64) -> String {
    let coord: RangedCoordf64 = range.clone().into();
    let points = coord.key_points(ticks);
    let spacing = points.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
    let decimals =
        if spacing.is_finite() && spacing > 0.0 { (-spacing.log10() - 1e-9).ceil().max(0.0) as usize } else { 2 };
    let slack = if spacing.is_finite() { spacing * 1e-6 } else { 0.0 };
    move |v: &f64| {
        if *v < bounds.0 - slack || *v > bounds.1 + slack {
            String::new()
        } else {
            format!("{:.decimals$}", v.clamp(bounds.0, bounds.1))
        }
    }
}

/// How a series is drawn: training points as a solid line, test points (one an
/// epoch) dashed with a dot on each.
#[derive(Clone, Copy)]
struct Mark {
    color: RGBColor,
    test: bool,
}

impl Mark {
    fn sample(&self, area: &Area, (x, y): (i32, i32), width: i32) -> Result<()> {
        let style = self.color.stroke_width(2);
        if self.test {
            for dx in (0..width).step_by(10) {
                area.draw(&PathElement::new(vec![(x + dx, y), (x + (dx + 6).min(width), y)], style))?;
            }
            area.draw(&Circle::new((x + width / 2, y), 4, self.color.filled()))?;
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + width, y)], style))?;
        }
        Ok(())
    }
}

/// Rows of legend entries, each a line sample and its text, left to right. Text that
/// would run off the picture loses its middle to "…": a long run directory and
/// architecture keep their beginning and end.
fn legend(area: &Area, rows: &[Vec<(Mark, String)>]) -> Result<()> {
    let style = text_style(15.0);
    let (sample_w, row_h) = (28, 22);
    let room = area.dim_in_pixel().0 as i32 - 12;
    for (r, row) in rows.iter().enumerate() {
        let y = 8 + r as i32 * row_h;
        let mut x = 12;
        for (mark, label) in row {
            mark.sample(area, (x, y + 8), sample_w)?;
            let text_x = x + sample_w + 8;
            let text = elide(area, label, &style, room - text_x)?;
            area.draw(&Text::new(text.as_str(), (text_x, y), style.clone()))?;
            x = text_x + area.estimate_text_size(&text, &style)?.0 as i32 + 28;
        }
    }
    Ok(())
}

/// `text`, or if it is wider than `room` pixels, `text` without its middle, marked "…":
/// a long path or architecture keeps its beginning and end. At least 8 characters stay.
fn elide(area: &Area, text: &str, style: &TextStyle, room: i32) -> Result<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let kept = |k: usize| {
        let head = k / 2;
        format!("{}…{}", String::from_iter(&chars[..head]), String::from_iter(&chars[n - (k - head)..]))
    };
    let fits = |s: &str| -> Result<bool> { Ok(area.estimate_text_size(s, style)?.0 as i32 <= room) };
    if n <= 8 {
        return Ok(text.to_string());
    }
    // Measuring costs time in proportion to the text, and a checkpoint's spec can be
    // megabytes: grow what is kept by doubling until it no longer fits, so that no
    // measured string is more than twice what fits, then bisect. The whole text is
    // measured only when half of it fits.
    let (mut good, mut bad) = (8, n);
    let mut k = 16;
    while k < n {
        if !fits(&kept(k))? {
            bad = k;
            break;
        }
        good = k;
        k *= 2;
    }
    if bad == n && fits(text)? {
        return Ok(text.to_string());
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if fits(&kept(mid))? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(kept(good))
}

/// The colour at `t` in [0, 1] along `stops`, spaced evenly and mixed linearly.
fn ramp(stops: &[RGBColor], t: f64) -> RGBColor {
    let x = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let (a, b, f) = (stops[i], stops[i + 1], x - i as f64);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn legend_height(rows: usize) -> u32 {
    16 + 22 * rows as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOSS: (f64, f64) = (0.0, f64::INFINITY);
    const PERCENT: (f64, f64) = (0.0, 100.0);

    fn labels(range: &Range<f64>, bounds: (f64, f64)) -> Vec<String> {
        let coord: RangedCoordf64 = range.clone().into();
        let f = tick_formatter(range, 6, bounds);
        coord.key_points(6).iter().map(f).filter(|l| !l.is_empty()).collect()
    }

    #[test]
    fn a_constant_value_gets_an_axis_with_distinct_tick_labels() {
        let r = value_range([2.3, 2.3, 2.3].into_iter(), LOSS);
        assert!(r.start < 2.3 && r.end > 2.3, "{r:?}");
        let l = labels(&r, LOSS);
        assert!(l.len() >= 3, "{l:?}");
        let mut unique = l.clone();
        unique.dedup();
        assert_eq!(unique, l, "repeated tick labels");
        assert!(l.contains(&"2.30".to_string()), "{l:?}");
    }

    #[test]
    fn curves_on_a_bound_stay_off_the_frame_without_labels_past_it() {
        let r = value_range([100.0].into_iter(), PERCENT);
        assert!(r.start < 100.0 && r.end > 100.0 && r.end < 101.0, "{r:?}");
        assert_eq!(labels(&r, PERCENT).last().map(String::as_str), Some("100"));
        let r = value_range([0.0, 0.0].into_iter(), LOSS);
        assert!(r.start < 0.0 && r.start > -0.01, "{r:?}");
        assert_eq!(labels(&r, LOSS).first().map(String::as_str), Some("0.00"));
        let r = value_range([10.0, 100.0].into_iter(), PERCENT);
        assert!(labels(&r, PERCENT).iter().all(|l| l.parse::<f64>().unwrap() <= 100.0), "{:?}", labels(&r, PERCENT));
        assert_eq!(value_range(std::iter::empty(), PERCENT), 0.0..100.0);
        assert_eq!(value_range(std::iter::empty(), LOSS), 0.0..1.0);
        assert_eq!(labels(&(0.0..100.0), PERCENT), ["0", "20", "40", "60", "80", "100"]);
    }

    #[test]
    fn values_far_apart_still_make_a_finite_axis() {
        // Padding 0..1.79e308 overflowed to infinity, and plotters never returned.
        for values in [vec![0.0, 1.79e308], vec![-1e308, 1e308], vec![f64::MAX], vec![-f64::MAX, 0.0]] {
            let r = value_range(values.iter().copied(), LOSS);
            assert!(r.start < r.end && (r.end - r.start).is_finite(), "{values:?}: {r:?}");
        }
    }

    #[test]
    fn step_axes_have_room_around_their_points() {
        assert_eq!(step_range([10, 11].into_iter()), 9..12);
        assert_eq!(step_range([6].into_iter()), 5..7);
        assert_eq!(step_range([0, 400].into_iter()), 0..410);
        assert_eq!(step_range(std::iter::empty()), 0..1);
        // Steps no run reaches, from a hand-edited or corrupt file: an axis that neither
        // wraps around nor collapses to one f64.
        for steps in [vec![u64::MAX], vec![u64::MAX - 1, u64::MAX], vec![1, u64::MAX]] {
            let r = step_range(steps.iter().copied());
            assert!(r.start < steps[0] && r.end == u64::MAX, "{steps:?}: {r:?}");
            assert!((r.end as f64) > r.start as f64, "{steps:?}: {r:?}");
        }
    }

    #[test]
    fn a_legend_too_long_for_the_picture_loses_its_middle() {
        let long = format!("/very/long/path/{}/run-with-a-name  (c16k5 relu fc10)", "deep/".repeat(60));
        let rows = [vec![(Mark { color: BLACK, test: false }, long)]];
        let img = render(400, legend_height(1), |area| legend(area, &rows)).unwrap();
        // Ink in the last pixels would be text running off the picture.
        let inked = |x0: u32, x1: u32| (x0..x1).any(|x| (0..img.height()).any(|y| img.get_pixel(x, y).0[0] < 128));
        assert!(inked(48, 300), "the beginning of the label is drawn");
        assert!(!inked(390, 400), "the label runs off the picture");
    }

    #[test]
    fn a_very_long_label_is_elided_in_time_proportional_to_what_fits() {
        // A checkpoint's spec of 8,000 characters took 50 s when each character cut
        // re-measured the whole string. Measured on a thread, so that a slow elide fails
        // the test instead of hanging it.
        let long: String = (0..100_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let (send, receive) = std::sync::mpsc::channel();
        let text = long.clone();
        std::thread::spawn(move || {
            let style = text_style(15.0);
            let started = std::time::Instant::now();
            let mut out = (String::new(), 0);
            render(400, 40, |area| {
                let s = elide(area, &text, &style, 300)?;
                out = (s.clone(), area.estimate_text_size(&s, &style)?.0);
                Ok(())
            })
            .unwrap();
            send.send((out, started.elapsed())).ok();
        });
        let ((short, width), took) =
            receive.recv_timeout(std::time::Duration::from_secs(10)).expect("elide took more than 10 s");
        assert!(took.as_secs_f64() < 0.5, "elide took {took:?}");
        assert!(width <= 300 && width > 250, "{width} pixels: {short}");
        let (head, tail) = short.split_once('…').unwrap();
        assert!(long.starts_with(head) && long.ends_with(tail) && head.len() >= 8, "{short}");
    }
}
