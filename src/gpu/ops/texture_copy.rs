//! Copies of storage buffers in r32float 2D textures, from which the subgroup
//! engine's kernel-row products read their operands on CPUs where a texel fetch
//! beats a storage load: on llvmpipe a storage-buffer load at a per-lane address
//! is a loop over the 8 lanes, each lane's value passed through memory, while a
//! texel fetch is one vector gather (`GemmEngine::operands_in_textures`;
//! docs/performance.md, "Operands through textures").
//!
//! Element i of the buffer is texel (i & (2^shift - 1), i >> shift). Copies are
//! buffer-to-texture copies: the weights' after each optimizer step (`gpu::params`),
//! an activation's or gradient's just before the product that reads it (a `Fill`
//! of its dispatch, `dispatch::record_all`). An executor keeps one copy a buffer
//! (`TextureCopies`), as large as the buffer, which every batch size's dispatches
//! fill with their own part: copies made per batch size grew without bound in
//! `serve`, which runs every size up to its largest. A dispatch that wrote the texture
//! instead moved 0.5-0.9 GB/s on lavapipe (55 ms of a 390 ms step): its loads are
//! the per-lane storage loads the copy exists to avoid.
//! Tests: tests/gpu_ops.rs `texture_copies_follow_their_buffers`; every conv test on
//! kernel sets that read their operands from textures.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{bail, Result};

/// Texels a row holds at least: a power of two (so a shader finds an element's
/// texel with a mask and a shift) whose row of bytes is a multiple of wgpu's
/// 256-byte copy alignment.
const MIN_ROW_SHIFT: u32 = 8;

/// A texture holding a copy of `len` f32 of a buffer.
#[derive(Debug, Clone)]
pub struct TextureCopy {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    shift: u32,
    len: usize,
}

impl TextureCopy {
    /// A texture for `len` elements.
    pub fn new(device: &wgpu::Device, label: &str, len: usize) -> Result<TextureCopy> {
        let max = device.limits().max_texture_dimension_2d;
        let Some(shift) = row_shift(len, max) else {
            bail!("{label}: {len} elements do not fit this adapter's {max}x{max} textures");
        };
        let rows = len.div_ceil(1 << shift).max(1);
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d { width: 1 << shift, height: rows as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::R32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        Ok(TextureCopy { texture, view, shift, len })
    }

    pub fn view(&self) -> &wgpu::TextureView {
        &self.view
    }

    /// Bytes of GPU memory the texture takes.
    pub fn bytes(&self) -> u64 {
        4 * self.texture.width() as u64 * self.texture.height() as u64
    }

    /// log2 of the texels a row: element i is texel (i & (2^shift - 1), i >> shift).
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// Write `values` (as many as the copy holds) into the texture.
    pub fn write(&self, queue: &wgpu::Queue, values: &[f32]) {
        assert_eq!(values.len(), self.len, "TextureCopy::write: {} values for {}", values.len(), self.len);
        for r in runs(self.len, self.shift) {
            let layout =
                wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(self.row_bytes()), rows_per_image: None };
            queue.write_texture(self.at(r.row), bytemuck::cast_slice(&values[r.texels]), layout, r.extent);
        }
    }

    /// Record copies of the first `len` elements of `buffer` into the texture
    /// (no more than it holds).
    pub fn copy_from(&self, encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer, len: usize) {
        assert!(len <= self.len, "TextureCopy::copy_from: {len} elements into a copy of {}", self.len);
        for r in runs(len, self.shift) {
            let layout = wgpu::TexelCopyBufferLayout {
                offset: 4 * r.texels.start as u64,
                bytes_per_row: Some(self.row_bytes()),
                rows_per_image: None,
            };
            encoder.copy_buffer_to_texture(wgpu::TexelCopyBufferInfo { buffer, layout }, self.at(r.row), r.extent);
        }
    }

    fn row_bytes(&self) -> u32 {
        4 << self.shift
    }

    fn at(&self, row: u32) -> wgpu::TexelCopyTextureInfo<'_> {
        wgpu::TexelCopyTextureInfo {
            texture: &self.texture,
            mip_level: 0,
            origin: wgpu::Origin3d { x: 0, y: row, z: 0 },
            aspect: wgpu::TextureAspect::All,
        }
    }
}

/// The texture copies of one executor's buffers, made on first use.
#[derive(Debug, Default)]
pub struct TextureCopies(Mutex<HashMap<wgpu::Buffer, TextureCopy>>);

impl TextureCopies {
    /// The copy of all of `buffer`.
    pub fn of(&self, device: &wgpu::Device, label: &str, buffer: &wgpu::Buffer) -> Result<TextureCopy> {
        let mut copies = self.0.lock().expect("a texture-copy registry poisoned by a panic");
        if let Some(c) = copies.get(buffer) {
            return Ok(c.clone());
        }
        let copy = TextureCopy::new(device, label, (buffer.size() / 4) as usize)?;
        copies.insert(buffer.clone(), copy.clone());
        Ok(copy)
    }

    /// Bytes of GPU memory the copies take.
    pub fn bytes(&self) -> u64 {
        self.0.lock().expect("a texture-copy registry poisoned by a panic").values().map(TextureCopy::bytes).sum()
    }
}

/// The largest number of elements a copy can hold on `device`.
pub fn max_elements(device: &wgpu::Device) -> u64 {
    capacity(device.limits().max_texture_dimension_2d)
}

/// Texels in the widest rows `row_shift` takes (a power of two) times `max` of them.
fn capacity(max: u32) -> u64 {
    let widest = 1u64 << (u32::BITS - 1 - max.max(1).leading_zeros());
    widest * max as u64
}

/// The row shift of a copy of `len` texels: the narrowest rows (of at least
/// 2^MIN_ROW_SHIFT) that take no more than `max` of them; None where `max` x `max`
/// texels hold fewer than `len`.
fn row_shift(len: usize, max: u32) -> Option<u32> {
    let max = max as usize;
    (MIN_ROW_SHIFT..usize::BITS).take_while(|s| 1 << s <= max).find(|s| len.div_ceil(1 << s) <= max)
}

/// One rectangle of a copy: `texels` of the buffer, from the start of row `row`.
struct Run {
    texels: std::ops::Range<usize>,
    row: u32,
    extent: wgpu::Extent3d,
}

/// The copies that fill the first `len` texels of rows of 2^shift: the whole rows,
/// then the start of the next one (a copy covers a rectangle).
fn runs(len: usize, shift: u32) -> Vec<Run> {
    let width = 1usize << shift;
    let rows = len / width;
    let extent = |width: usize, rows: usize| wgpu::Extent3d {
        width: width as u32,
        height: rows as u32,
        depth_or_array_layers: 1,
    };
    let mut runs = Vec::new();
    if rows > 0 {
        runs.push(Run { texels: 0..rows * width, row: 0, extent: extent(width, rows) });
    }
    if len > rows * width {
        runs.push(Run { texels: rows * width..len, row: rows as u32, extent: extent(len - rows * width, 1) });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_the_narrowest_that_fit() {
        // The tutorial model: 121,514 parameters in 475 rows of 256.
        assert_eq!(row_shift(121_514, 8192), Some(8));
        assert_eq!(row_shift(1, 8192), Some(8));
        // Past 256 x 8192 texels, wider rows.
        assert_eq!(row_shift(256 * 8192, 8192), Some(8));
        assert_eq!(row_shift(256 * 8192 + 1, 8192), Some(9));
        assert_eq!(row_shift(8192 * 8192, 8192), Some(13));
        assert_eq!(row_shift(8192 * 8192 + 1, 8192), None);
        // An adapter whose textures are narrower than a row of 256.
        assert_eq!(row_shift(10, 128), None);
        // The cap the executors keep to is exactly what fits, for any largest size.
        for max in [256, 8192, 12_000, 16_384] {
            let cap = capacity(max) as usize;
            assert!(row_shift(cap, max).is_some(), "{cap} elements of {max}x{max} textures");
            assert_eq!(row_shift(cap + 1, max), None, "{} elements of {max}x{max} textures", cap + 1);
        }
    }

    #[test]
    fn copies_cover_every_texel_once() {
        let at = |r: &Run| (r.texels.clone(), r.row, r.extent.width, r.extent.height);
        let all: Vec<_> = runs(121_514, 8).iter().map(at).collect();
        assert_eq!(all, [(0..121_344, 0, 256, 474), (121_344..121_514, 474, 170, 1)]);
        let all: Vec<_> = runs(512, 8).iter().map(at).collect();
        assert_eq!(all, [(0..512, 0, 256, 2)]);
        let all: Vec<_> = runs(10, 8).iter().map(at).collect();
        assert_eq!(all, [(0..10, 0, 10, 1)]);
    }
}
