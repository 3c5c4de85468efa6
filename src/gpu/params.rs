//! The parameter vector on the device: one flat f32 storage buffer (the layout of
//! `model::ParamOffsets`, which the optimizer updates in place) and, where the
//! kernels that read it read their operands from textures (the subgroup engine's
//! kernel-row products, where `GemmEngine::operands_in_textures` says), a copy of it
//! in a texture (`ops::texture_copy`): `write` fills both, and `refresh` brings the
//! copy in step after a kernel (the optimizer) changed the buffer
//! (docs/performance.md, "Operands through textures").

use anyhow::Result;

use crate::gpu::context::Gpu;
use crate::gpu::ops::texture_copy::TextureCopy;

pub struct Params {
    buffer: wgpu::Buffer,
    len: usize,
    copy: Option<TextureCopy>,
}

impl Params {
    /// `buffer` (at least `len` f32) as the parameters on `gpu`, with a texture copy
    /// if `copied`; the caller writes the values.
    pub fn new(gpu: &Gpu, buffer: wgpu::Buffer, len: usize, copied: bool) -> Result<Params> {
        let copy = if copied { Some(TextureCopy::new(&gpu.device, "params texture", len)?) } else { None };
        Ok(Params { buffer, len, copy })
    }

    /// New parameters holding `values`, for kernels built apart from the device's
    /// own (tests, the start-up check): with a texture copy wherever an engine the
    /// device runs could read one.
    pub fn upload(gpu: &Gpu, label: &str, values: &[f32]) -> Result<Params> {
        let copied = gpu.engines.iter().any(|e| e.spec().kernel_row_products);
        let params = Params::new(gpu, gpu.storage(label, 4 * values.len() as u64), values.len(), copied)?;
        params.write(&gpu.queue, values);
        Ok(params)
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Bytes of GPU memory the texture copy takes (0 without one).
    pub fn copy_bytes(&self) -> u64 {
        self.copy.as_ref().map_or(0, |c| c.bytes())
    }

    /// The texture copy, where there is one.
    pub fn texture_copy(&self) -> Option<&TextureCopy> {
        self.copy.as_ref()
    }

    /// Write all `values` (`len` of them), to the buffer and its copy.
    pub fn write(&self, queue: &wgpu::Queue, values: &[f32]) {
        assert_eq!(values.len(), self.len, "Params::write: {} values for {} parameters", values.len(), self.len);
        queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(values));
        if let Some(c) = &self.copy {
            c.write(queue, values);
        }
    }

    /// Record a copy of the buffer into the texture: after a kernel (the optimizer)
    /// changed the buffer, before anything reads the texture.
    pub fn refresh(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(c) = &self.copy {
            c.copy_from(encoder, &self.buffer, self.len);
        }
    }
}
