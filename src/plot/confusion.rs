//! The confusion matrix as a heat map with the counts written in the cells.

use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

use super::{bold_style, centered, ramp, render, save, text_style, Area, MUTED};

/// Light to dark blue. The colour follows the square root of a cell's share of its
/// row, so that a class confused 1-5% of the time is visibly tinted instead of white.
fn shade(share: f64) -> RGBColor {
    ramp(&[RGBColor(247, 251, 255), RGBColor(8, 48, 107)], share.clamp(0.0, 1.0).sqrt())
}

/// Ticks of the colour scale, as shares of a row.
const SCALE_TICKS: [f64; 6] = [0.0, 0.01, 0.05, 0.25, 0.5, 1.0];

fn vertical(size: f64) -> TextStyle<'static> {
    centered(size).transform(FontTransform::Rotate270)
}

/// Rows are the true class, columns the prediction; each cell shows its count and is
/// coloured by its share of the row (the true class's images), with a colour scale.
pub fn confusion(m: &[Vec<u64>], path: &Path) -> Result<()> {
    let k = m.len();
    if k == 0 {
        bail!("{}: the confusion matrix is empty", path.display());
    }
    if let Some(r) = m.iter().position(|row| row.len() != k) {
        bail!("{}: confusion matrix row {r} has {} columns, expected {k}", path.display(), m[r].len());
    }
    let total: u64 = m.iter().flatten().sum();
    let correct: u64 = (0..k).map(|i| m[i][i]).sum();
    // Ten classes get roomy cells; many classes shrink them and drop the counts.
    let cell = (520 / k as i32).clamp(8, 52);
    let counts = cell >= 26;
    let (left, top, grid) = (84, 70, cell * k as i32);
    let (bar_x, bar_w) = (left + grid + 36, 18);
    let (w, h) = (bar_x + bar_w + 110, top + grid + 76);
    let img = render(w as u32, h as u32, |root: &Area| {
        let title = format!(
            "confusion matrix: {correct} of {total} test images right ({:.2}%)",
            100.0 * correct as f64 / total.max(1) as f64
        );
        root.draw(&Text::new(title, (w / 2, 24), bold_style(18.0).pos(Pos::new(HPos::Center, VPos::Center))))?;
        for (t, row) in m.iter().enumerate() {
            let n: u64 = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                // A class with no test images has no shares: grey, not "0%".
                let share = (n > 0).then(|| count as f64 / n as f64);
                let fill = share.map_or(RGBColor(235, 235, 235), shade);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], WHITE.stroke_width(1)))?;
                if counts {
                    let ink = match share {
                        Some(s) if s.sqrt() > 0.55 => WHITE,
                        _ if count == 0 => RGBColor(170, 170, 170),
                        _ => BLACK,
                    };
                    let style = centered(if count >= 1000 { 12.0 } else { 14.0 }).color(&ink);
                    root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), style))?;
                }
            }
            let label_size = (cell as f64 * 0.5).clamp(8.0, 15.0);
            let mid = top + t as i32 * cell + cell / 2;
            root.draw(&Text::new(t.to_string(), (left - 14, mid), centered(label_size)))?;
            root.draw(&Text::new(
                t.to_string(),
                (left + t as i32 * cell + cell / 2, top + grid + 14),
                centered(label_size),
            ))?;
        }
        root.draw(&Text::new("predicted class", (left + grid / 2, top + grid + 44), centered(16.0)))?;
        root.draw(&Text::new("true class", (left - 48, top + grid / 2), vertical(16.0)))?;

        // The colour scale, drawn row by row of pixels, with the sqrt spacing of `shade`.
        for i in 0..grid {
            let share = ((grid - i) as f64 / grid as f64).powi(2);
            root.draw(&Rectangle::new([(bar_x, top + i), (bar_x + bar_w, top + i + 1)], shade(share).filled()))?;
        }
        root.draw(&Rectangle::new([(bar_x, top), (bar_x + bar_w, top + grid)], MUTED.stroke_width(1)))?;
        for s in SCALE_TICKS {
            let y = top + grid - (s.sqrt() * grid as f64).round() as i32;
            root.draw(&PathElement::new(vec![(bar_x + bar_w, y), (bar_x + bar_w + 5, y)], MUTED))?;
            let label = format!("{}%", (100.0 * s).round());
            let style = text_style(13.0).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(label, (bar_x + bar_w + 8, y), style))?;
        }
        root.draw(&Text::new("share of the true class", (bar_x + bar_w + 62, top + grid / 2), vertical(14.0)))?;
        Ok(())
    })?;
    save(&img, path)
}
