//! Small PNG charts drawn directly with `image`: training curves and confusion
//! matrices. A 5x7 bitmap font covers the labels, so no font files are needed.

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const ORANGE: Rgb<u8> = Rgb([255, 127, 14]);

/// 5x7 glyphs, one byte per row, high 5 bits used (bit 4 = leftmost).
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        'a' => [0, 0, 14, 1, 15, 17, 15],
        'c' => [0, 0, 14, 16, 16, 17, 14],
        'd' => [1, 1, 13, 19, 17, 17, 15],
        'e' => [0, 0, 14, 17, 31, 16, 14],
        'i' => [4, 0, 12, 4, 4, 4, 14],
        'l' => [12, 4, 4, 4, 4, 4, 14],
        'n' => [0, 0, 22, 25, 17, 17, 17],
        'o' => [0, 0, 14, 17, 17, 17, 14],
        'p' => [0, 0, 30, 17, 30, 16, 16],
        'r' => [0, 0, 22, 25, 16, 16, 16],
        's' => [0, 0, 14, 16, 14, 1, 30],
        't' => [8, 8, 28, 8, 8, 9, 6],
        'u' => [0, 0, 17, 17, 17, 19, 13],
        'y' => [0, 0, 17, 17, 15, 1, 14],
        _ => [0; 7],
    }
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, color: Rgb<u8>) {
    for (i, c) in s.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits & (16 >> col) != 0 {
                    put(img, x + i as i64 * 6 + col, y + row as i64, color);
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = ((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64);
        put(img, x, y, c);
        put(img, x, y + 1, c);
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One panel: series of (x, y) points as lines (train) and dots (test).
fn panel(img: &mut RgbImage, ox: i64, title: &str, train: &[(f64, f64)], test: &[(f64, f64)]) {
    let (w, h, top, left) = (360.0, 220.0, 30.0, ox as f64 + 50.0);
    let all = train.iter().chain(test);
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (xmin, xmax, ymin, ymax) = (xmin.min(x), xmax.max(x), ymin.min(y), ymax.max(y));
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
    }
    if xmax - xmin < 1e-9 {
        xmax = xmin + 1.0;
    }
    if ymax - ymin < 1e-9 {
        ymax = ymin + 1e-3;
    }
    let px = |x: f64| left + (x - xmin) / (xmax - xmin) * w;
    let py = |y: f64| top + h - (y - ymin) / (ymax - ymin) * h;
    for i in 0..=4 {
        let yv = ymin + (ymax - ymin) * i as f64 / 4.0;
        line(img, (left, py(yv)), (left + w, py(yv)), GRID);
        text(img, ox + 2, py(yv) as i64 - 3, &fmt_tick(yv), BLACK);
        let xv = xmin + (xmax - xmin) * i as f64 / 4.0;
        text(img, px(xv) as i64 - 6, (top + h) as i64 + 6, &format!("{xv:.0}"), BLACK);
    }
    line(img, (left, top), (left, top + h), BLACK);
    line(img, (left, top + h), (left + w, top + h), BLACK);
    for pair in train.windows(2) {
        line(img, (px(pair[0].0), py(pair[0].1)), (px(pair[1].0), py(pair[1].1)), BLUE);
    }
    for &(x, y) in test {
        for dx in -3..=3 {
            for dy in -3..=3 {
                put(img, px(x) as i64 + dx, py(y) as i64 + dy, ORANGE);
            }
        }
    }
    text(img, left as i64, 10, title, BLACK);
    text(img, (left + w) as i64 - 60, (top + h) as i64 + 18, "step", BLACK);
}

/// Loss and accuracy against the step: train (line) per log point, test (dots) per epoch.
/// Points are (step, loss, accuracy).
pub fn training_curves(train: &[(u64, f64, f64)], test: &[(u64, f64, f64)], path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(880, 290, WHITE);
    let pick = |v: &[(u64, f64, f64)], f: fn(&(u64, f64, f64)) -> f64| {
        v.iter().map(|p| (p.0 as f64, f(p))).collect::<Vec<_>>()
    };
    panel(&mut img, 0, "loss: train (line) test (dots)", &pick(train, |p| p.1), &pick(test, |p| p.1));
    panel(
        &mut img,
        440,
        "accuracy %: train (line) test (dots)",
        &pick(train, |p| 100.0 * p.2),
        &pick(test, |p| 100.0 * p.2),
    );
    img.save(path).with_context(|| format!("cannot write {}", path.display()))
}

/// A confusion matrix as a heat map: rows are the true class, columns the prediction.
pub fn confusion(matrix: &[Vec<u64>], path: &Path) -> Result<()> {
    let k = matrix.len();
    let cell = 44i64;
    let (ox, oy) = (40i64, 40i64);
    let size = (ox + cell * k as i64 + 20) as u32;
    let mut img = RgbImage::from_pixel(size, size + 20, WHITE);
    for (t, row) in matrix.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (p, &n) in row.iter().enumerate() {
            let share = n as f64 / total;
            let shade = (255.0 * (1.0 - share.sqrt())) as u8;
            let color = if t == p { Rgb([shade, shade, 255]) } else { Rgb([255, shade, shade]) };
            let (x0, y0) = (ox + p as i64 * cell, oy + t as i64 * cell);
            for y in 1..cell {
                for x in 1..cell {
                    put(&mut img, x0 + x, y0 + y, color);
                }
            }
            let s = n.to_string();
            let ink = if share > 0.5 { WHITE } else { BLACK };
            text(&mut img, x0 + cell / 2 - 3 * s.len() as i64, y0 + cell / 2 - 3, &s, ink);
        }
        text(&mut img, ox - 14, oy + t as i64 * cell + cell / 2 - 3, &t.to_string(), BLACK);
        text(&mut img, ox + t as i64 * cell + cell / 2 - 3, oy - 12, &t.to_string(), BLACK);
    }
    text(&mut img, ox, 10, "predicted", BLACK);
    text(&mut img, 2, oy + cell * k as i64 + 6, "rows: true", BLACK);
    img.save(path).with_context(|| format!("cannot write {}", path.display()))
}
