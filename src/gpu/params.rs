//! The parameter vector on the device: one flat f32 storage buffer (the layout of
//! `model::ParamOffsets`, which the optimizer updates in place) and, on devices that
//! run an engine with kernel-row products (the subgroup engine), a copy of it in an
//! r32float 2D texture: `write` fills both, and `refresh` brings the copy in step
//! after a kernel (the optimizer) changed the buffer.
//!
//! Why a texture: on llvmpipe a storage-buffer load at a per-lane address is a loop
//! over the 8 lanes, each lane's value passed through memory, while a texel fetch is
//! one vector gather. The subgroup engine's kernel-row products load their weights
//! per lane at every reduction step; on AMD CPUs they read them from the texture
//! (`GemmEngine::weights_in_texture`; docs/performance.md, "Weights through a texture").

use anyhow::{bail, Result};

use crate::gpu::context::Gpu;

/// Texels a row of the mirror holds at least: a power of two (so a shader finds an
/// element's texel with a mask and a shift) whose row of bytes is a multiple of
/// wgpu's 256-byte copy alignment.
const MIN_ROW_SHIFT: u32 = 8;

/// The texture copy: element i is texel (i & (2^shift - 1), i >> shift).
pub struct Mirror {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    shift: u32,
}

pub struct Params {
    buffer: wgpu::Buffer,
    len: usize,
    mirror: Option<Mirror>,
}

impl Params {
    /// `buffer` (at least `len` f32) as the parameters on `gpu`, with a texture copy
    /// if one of the engines the device runs reads it; the caller writes the values.
    pub fn new(gpu: &Gpu, buffer: wgpu::Buffer, len: usize) -> Result<Params> {
        let mirrored = gpu.engines.iter().any(|e| e.spec().kernel_row_products);
        let mirror = if mirrored { Some(Mirror::new(&gpu.device, len)?) } else { None };
        Ok(Params { buffer, len, mirror })
    }

    /// New parameters holding `values`.
    pub fn upload(gpu: &Gpu, label: &str, values: &[f32]) -> Result<Params> {
        let params = Params::new(gpu, gpu.storage(label, 4 * values.len() as u64), values.len())?;
        params.write(&gpu.queue, values);
        Ok(params)
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The texture copy and its row shift, where there is one.
    pub fn mirror(&self) -> Option<(&wgpu::TextureView, u32)> {
        self.mirror.as_ref().map(|m| (&m.view, m.shift))
    }

    /// Write all `values` (`len` of them), to the buffer and its copy.
    pub fn write(&self, queue: &wgpu::Queue, values: &[f32]) {
        assert_eq!(values.len(), self.len, "Params::write: {} values for {} parameters", values.len(), self.len);
        queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(values));
        if let Some(m) = &self.mirror {
            for r in m.runs(self.len) {
                let layout =
                    wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(m.row_bytes()), rows_per_image: None };
                queue.write_texture(m.at(r.row), bytemuck::cast_slice(&values[r.texels]), layout, r.extent);
            }
        }
    }

    /// Record a copy of the buffer into the texture: after a kernel (the optimizer)
    /// changed the buffer, before anything reads the texture.
    pub fn refresh(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(m) = &self.mirror {
            for r in m.runs(self.len) {
                let layout = wgpu::TexelCopyBufferLayout {
                    offset: 4 * r.texels.start as u64,
                    bytes_per_row: Some(m.row_bytes()),
                    rows_per_image: None,
                };
                encoder.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo { buffer: &self.buffer, layout },
                    m.at(r.row),
                    r.extent,
                );
            }
        }
    }
}

/// The row shift of a mirror of `len` texels: the narrowest rows (of at least
/// 2^MIN_ROW_SHIFT) that take no more than `max` of them; None where `max` x `max`
/// texels hold fewer than `len`.
fn row_shift(len: usize, max: u32) -> Option<u32> {
    let max = max as usize;
    (MIN_ROW_SHIFT..usize::BITS).take_while(|s| 1 << s <= max).find(|s| len.div_ceil(1 << s) <= max)
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

/// One rectangle of a copy into the mirror: `texels` of the parameters, from the
/// start of row `row`.
struct Run {
    texels: std::ops::Range<usize>,
    row: u32,
    extent: wgpu::Extent3d,
}

impl Mirror {
    fn new(device: &wgpu::Device, len: usize) -> Result<Mirror> {
        let max = device.limits().max_texture_dimension_2d;
        let Some(shift) = row_shift(len, max) else {
            bail!("{len} parameters do not fit this adapter's {max}x{max} textures");
        };
        let rows = len.div_ceil(1 << shift).max(1);
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("params texture"),
            size: wgpu::Extent3d { width: 1 << shift, height: rows as u32, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::R32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        Ok(Mirror { texture, view, shift })
    }

    fn runs(&self, len: usize) -> Vec<Run> {
        runs(len, self.shift)
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
