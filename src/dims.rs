//! Dimensions of one op invocation, shared by the CPU reference and the GPU kernels.
//! Each holds its batch size `n`; `Model` stores them at batch 1 (see `model::Op`).

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

/// Linear over a batch: input (n,in_features), weight (out_features,in_features),
/// output (n,out_features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearDims {
    pub n: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LinearDims {
    /// The same product as a 1x1 convolution of 1x1 images: x (n,in,1,1), W (out,in,1,1)
    /// and y (n,out,1,1) have exactly the linear layer's memory layouts.
    pub fn as_conv(self) -> ConvDims {
        ConvDims { n: self.n, c: self.in_features, h: 1, w: 1, oc: self.out_features, k: 1, stride: 1, pad: 0 }
    }
    pub fn input_len(&self) -> usize {
        self.n * self.in_features
    }
    pub fn output_len(&self) -> usize {
        self.n * self.out_features
    }
    /// Forward FLOPs (multiply-add = 2); each backward (input, weight) costs the same.
    pub fn flops(&self) -> u64 {
        2 * (self.n * self.in_features * self.out_features) as u64
    }
}

/// An element-wise op (ReLU) over a batch of n samples of `per_sample` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElemDims {
    pub n: usize,
    pub per_sample: usize,
}

impl ElemDims {
    pub fn len(&self) -> usize {
        self.n * self.per_sample
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
