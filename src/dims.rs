//! Dimensions of one op invocation, shared by the CPU reference and the GPU kernels.

/// Conv2d over a batch: input (n,c,h,w), weight (oc,c,k,k), output (n,oc,oh,ow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvDims {
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.oc * self.oh() * self.ow()
    }
    pub fn weight_len(&self) -> usize {
        self.oc * self.c * self.k * self.k
    }
    /// Forward FLOPs (multiply-add = 2); each backward (input, weight) costs the same.
    pub fn flops(&self) -> u64 {
        2 * (self.output_len() * self.c * self.k * self.k) as u64
    }
}

/// MaxPool2d over a batch: input (n,c,h,w), output (n,c,oh,ow), no padding, floor mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
}

impl PoolDims {
    pub fn oh(&self) -> usize {
        (self.h - self.k) / self.stride + 1
    }
    pub fn ow(&self) -> usize {
        (self.w - self.k) / self.stride + 1
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.c * self.oh() * self.ow()
    }
}

/// Linear over a batch: input (n,inf), weight (outf,inf), output (n,outf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearDims {
    pub n: usize,
    pub inf: usize,
    pub outf: usize,
}

impl LinearDims {
    /// The same product as a 1x1 convolution of 1x1 images: x (n,inf,1,1), W (outf,inf,1,1)
    /// and y (n,outf,1,1) have exactly the linear layer's memory layouts.
    pub fn as_conv(self) -> ConvDims {
        ConvDims { n: self.n, c: self.inf, h: 1, w: 1, oc: self.outf, k: 1, stride: 1, pad: 0 }
    }
}
