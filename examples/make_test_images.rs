//! Renders the pictures in `tests/images/` from MNIST test digits, in the ways
//! users' pictures differ from MNIST: dark ink on light paper, colours, alpha,
//! JPEG, large and small, off-centre on a non-square canvas. The file name starts
//! with the true digit. Run: `cargo run --release --example make_test_images`.

use gpu_cnn::data::{bundled_mnist_dir, Dataset, Split};
use image::{imageops, GrayImage, Rgb, RgbImage, Rgba, RgbaImage};

fn main() -> anyhow::Result<()> {
    let test = Dataset::load(&bundled_mnist_dir(), Split::Test)?;
    let digit =
        |i: usize| GrayImage::from_fn(28, 28, |x, y| image::Luma([test.images[i * 784 + (y * 28 + x) as usize]]));
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images");
    std::fs::create_dir_all(&out)?;
    let label = |i: usize| test.labels[i];

    // 0: black ink on white paper, RGB PNG, 10x larger.
    let i = 0;
    let big = imageops::resize(&digit(i), 280, 280, imageops::FilterType::CatmullRom);
    RgbImage::from_fn(280, 280, |x, y| {
        let v = 255 - big.get_pixel(x, y).0[0];
        Rgb([v, v, v])
    })
    .save(out.join(format!("{}_black_on_white.png", label(i))))?;

    // 1: white on black, grayscale, MNIST size.
    let i = 1;
    digit(i).save(out.join(format!("{}_white_on_black_small.png", label(i))))?;

    // 2: RGBA, black ink with transparent paper, off-centre on a tall canvas.
    let i = 2;
    let g = imageops::resize(&digit(i), 84, 84, imageops::FilterType::CatmullRom);
    let mut canvas = RgbaImage::from_pixel(150, 220, Rgba([0, 0, 0, 0]));
    for (x, y, p) in g.enumerate_pixels() {
        canvas.put_pixel(x + 10, y + 100, Rgba([0, 0, 0, p.0[0]]));
    }
    canvas.save(out.join(format!("{}_rgba_transparent.png", label(i))))?;

    // 3: blue ink on yellow paper, JPEG.
    let i = 3;
    let g = imageops::resize(&digit(i), 300, 300, imageops::FilterType::CatmullRom);
    let mut img = RgbImage::from_pixel(400, 320, Rgb([250, 235, 140]));
    for (x, y, p) in g.enumerate_pixels() {
        let a = p.0[0] as f32 / 255.0;
        let mix = |paper: f32, ink: f32| (paper * (1.0 - a) + ink * a) as u8;
        img.put_pixel(x + 60, y + 10, Rgb([mix(250.0, 20.0), mix(235.0, 40.0), mix(140.0, 160.0)]));
    }
    img.save(out.join(format!("{}_blue_on_yellow.jpg", label(i))))?;

    // 4: large BMP, dark grey ink on light grey paper.
    let i = 4;
    let g = imageops::resize(&digit(i), 500, 500, imageops::FilterType::Triangle);
    RgbImage::from_fn(500, 500, |x, y| {
        let v = 220 - (g.get_pixel(x, y).0[0] as u32 * 170 / 255) as u8;
        Rgb([v, v, v])
    })
    .save(out.join(format!("{}_large.bmp", label(i))))?;

    // 5..9: more digits, white on black, small PNGs.
    for i in [8, 11, 17, 18, 61] {
        digit(i).save(out.join(format!("{}_mnist_test_{i}.png", label(i))))?;
    }
    Ok(())
}
