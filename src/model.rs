//! The model: an ordered list of layers, its shape inference, and its
//! parameters laid out exactly as PyTorch's `state_dict()` lays them out.
//!
//! Layout conventions (all row-major, as PyTorch):
//! - activations are NCHW; `Flatten` is free because NCHW is already C,H,W-major;
//! - conv weights are OIHW `[out, in, k, k]`, linear weights `[out, in]`;
//! - all parameters live in one flat `f32` vector, in `state_dict` order.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt;

use crate::dims::{ConvDims, ElemDims, LinearDims, PoolDims};
use crate::rng::Rng;

/// Bounds that make every model small enough to describe without overflow and to
/// allocate: a hostile `--arch` or checkpoint is refused by shape inference, before
/// anything is allocated (docs/robustness.md lists them for users).
///
/// Each input dimension (channels, height, width), and each kernel, stride and padding.
pub const MAX_DIM: usize = 4096;
/// Elements of any per-sample tensor (the input, each layer's output) and of all the
/// parameters together: 2^28, 1 GiB of f32. Far above the GPU's 2^24 per batch tensor,
/// so it refuses only what could never run, and keeps every product of two such counts
/// inside u64.
pub const MAX_ELEMENTS: usize = 1 << 28;
/// Layers in one model.
pub const MAX_LAYERS: usize = 1024;
/// Outputs of the last layer, the class scores. Labels are bytes (IDX), so no example
/// can name a class past 255, and `eval` keeps a classes×classes confusion table:
/// `fc50000` trained and saved, then needed 20 GB to be evaluated.
pub const MAX_CLASSES: usize = 256;

/// One layer. Square kernels, symmetric zero padding, no dilation or groups:
/// what the tutorial CNN and its variants need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Conv2d { in_ch: usize, out_ch: usize, kernel: usize, stride: usize, padding: usize },
    Relu,
    MaxPool2d { kernel: usize, stride: usize },
    Flatten,
    Linear { in_features: usize, out_features: usize },
}

/// A per-sample activation shape. `flat` is set after `Flatten` (shape `(c*h*w, 1, 1)`),
/// which is what a `Linear` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub flat: bool,
}

impl Shape {
    pub fn image(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w, flat: false }
    }
    pub fn flat(n: usize) -> Self {
        Shape { c: n, h: 1, w: 1, flat: true }
    }
    /// Elements per sample.
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Elements per sample if they are at most `MAX_ELEMENTS`; every shape a `Model`
    /// holds passes this, so `numel` cannot overflow for them.
    fn bounded_numel(&self) -> Option<usize> {
        self.c.checked_mul(self.h)?.checked_mul(self.w).filter(|&n| n <= MAX_ELEMENTS)
    }

    /// Refuse a model input with a zero or over-`MAX_DIM` dimension, or over
    /// `MAX_ELEMENTS` elements.
    pub fn check_input(&self) -> Result<()> {
        let Shape { c, h, w, .. } = *self;
        if [c, h, w].iter().any(|&d| d == 0 || d > MAX_DIM) || self.bounded_numel().is_none() {
            bail!(
                "input {c}x{h}x{w}: each dimension must be in 1..={MAX_DIM} and all together at most \
                 {MAX_ELEMENTS} (2^28) elements"
            );
        }
        Ok(())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flat {
            write!(f, "({})", self.c)
        } else {
            write!(f, "({},{},{})", self.c, self.h, self.w)
        }
    }
}

impl Layer {
    /// The per-sample output shape for input `shape`, or why this layer cannot take it.
    /// Inputs must be bounded (`Shape::check_input`, or an earlier layer's output); the
    /// output is then bounded too, or refused.
    pub fn output_shape(&self, shape: Shape) -> Result<Shape> {
        if shape.bounded_numel().is_none() {
            bail!("its input {shape} has more than {MAX_ELEMENTS} (2^28) elements");
        }
        let out = match *self {
            Layer::Conv2d { in_ch, out_ch, kernel, stride, padding } => {
                if shape.flat {
                    bail!("Conv2d needs an image input, but its input is flattened {shape}");
                }
                if in_ch == 0 || out_ch == 0 || kernel == 0 || stride == 0 {
                    bail!("channels, kernel and stride must be positive");
                }
                if kernel > MAX_DIM || stride > MAX_DIM || padding > MAX_DIM {
                    bail!("kernel, stride and padding must be at most {MAX_DIM}");
                }
                if in_ch != shape.c {
                    bail!("expects {in_ch} input channels but its input {shape} has {}", shape.c);
                }
                // Bounded inputs and padding: these sums cannot overflow.
                let (hp, wp) = (shape.h + 2 * padding, shape.w + 2 * padding);
                if kernel > hp || kernel > wp {
                    bail!("kernel {kernel} is larger than the padded input {hp}x{wp}");
                }
                Shape::image(out_ch, (hp - kernel) / stride + 1, (wp - kernel) / stride + 1)
            }
            Layer::Relu => shape,
            Layer::MaxPool2d { kernel, stride } => {
                if shape.flat {
                    bail!("MaxPool2d needs an image input, but its input is flattened {shape}");
                }
                if kernel == 0 || stride == 0 {
                    bail!("kernel and stride must be positive");
                }
                if kernel > MAX_DIM || stride > MAX_DIM {
                    bail!("kernel and stride must be at most {MAX_DIM}");
                }
                if kernel > shape.h || kernel > shape.w {
                    bail!("kernel {kernel} is larger than its input {shape}");
                }
                Shape::image(shape.c, (shape.h - kernel) / stride + 1, (shape.w - kernel) / stride + 1)
            }
            Layer::Flatten => Shape::flat(shape.numel()),
            Layer::Linear { in_features, out_features } => {
                if !shape.flat {
                    bail!("Linear needs a flattened input, but its input is {shape}; add Flatten before it");
                }
                if in_features == 0 || out_features == 0 {
                    bail!("features must be positive");
                }
                if in_features != shape.c {
                    bail!("expects {in_features} input features but the flattened input has {}", shape.c);
                }
                Shape::flat(out_features)
            }
        };
        // The output may only grow through a conv's channels or padding, or a Linear's width.
        if out.bounded_numel().is_none() {
            bail!(
                "its output {}x{}x{} would have more than {MAX_ELEMENTS} (2^28) elements per sample",
                out.c,
                out.h,
                out.w
            );
        }
        Ok(out)
    }

    /// Parameters (weight and bias) of a Conv2d or Linear, None if the count overflows.
    fn checked_params(&self) -> Option<usize> {
        match *self {
            Layer::Conv2d { in_ch, out_ch, kernel, .. } => {
                out_ch.checked_mul(in_ch)?.checked_mul(kernel)?.checked_mul(kernel)?.checked_add(out_ch)
            }
            Layer::Linear { in_features, out_features } => {
                out_features.checked_mul(in_features)?.checked_add(out_features)
            }
            _ => Some(0),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Layer::Conv2d { in_ch, out_ch, kernel, stride, padding } => {
                write!(f, "Conv2d({in_ch}, {out_ch}, {kernel}, {stride}, {padding})")
            }
            Layer::Relu => write!(f, "ReLU"),
            Layer::MaxPool2d { kernel, stride } => write!(f, "MaxPool2d({kernel}, {stride})"),
            Layer::Flatten => write!(f, "Flatten"),
            Layer::Linear { in_features, out_features } => {
                write!(f, "Linear({in_features}, {out_features})")
            }
        }
    }
}

/// A named parameter tensor inside the flat parameter vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// PyTorch `state_dict` key, e.g. `conv2.2.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in elements into the flat parameter vector.
    pub offset: usize,
    /// `fan_in` of the owning layer, which sets PyTorch's default init bound.
    pub fan_in: usize,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where a layer's weight and bias start in the flat parameter vector (in elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamOffsets {
    pub weight: usize,
    pub bias: usize,
}

/// A layer lowered to what runs it: its dimensions (at batch 1 as stored in a
/// `Model`; `at_batch` gives any other) and, for the layers with weights, where
/// they sit in the parameter vector. Both executors run these, so neither asks
/// the model twice what a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Conv2d(ConvDims, ParamOffsets),
    Relu(ElemDims),
    MaxPool2d(PoolDims),
    /// Free: NCHW is already the C,H,W-major order Linear reads.
    Flatten,
    Linear(LinearDims, ParamOffsets),
}

impl Op {
    /// The same op over a batch of `n` samples.
    pub fn at_batch(self, n: usize) -> Op {
        match self {
            Op::Conv2d(d, at) => Op::Conv2d(ConvDims { n, ..d }, at),
            Op::Relu(d) => Op::Relu(ElemDims { n, ..d }),
            Op::MaxPool2d(d) => Op::MaxPool2d(PoolDims { n, ..d }),
            Op::Flatten => Op::Flatten,
            Op::Linear(d, at) => Op::Linear(LinearDims { n, ..d }, at),
        }
    }

    /// Where the op's weights are, if it has any.
    pub fn params(&self) -> Option<ParamOffsets> {
        match *self {
            Op::Conv2d(_, at) | Op::Linear(_, at) => Some(at),
            _ => None,
        }
    }
}

/// A layer with its module path (`conv2.2`), its input/output shapes and its op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: String,
    pub layer: Layer,
    pub input: Shape,
    pub output: Shape,
    pub op: Op,
}

impl LayerInfo {
    /// Weights and biases of this layer (`Model::new` checked that they fit).
    pub fn num_params(&self) -> usize {
        self.layer.checked_params().unwrap_or(usize::MAX)
    }

    /// Forward FLOPs per sample (a multiply-add counts 2); saturates rather than wraps
    /// (`Model::new` refuses a model whose count would overflow).
    pub fn flops_per_sample(&self) -> u64 {
        self.checked_flops().unwrap_or(u64::MAX)
    }

    fn checked_flops(&self) -> Option<u64> {
        let out = self.output.numel() as u64;
        let per_output = match self.layer {
            Layer::Conv2d { in_ch, kernel, .. } => in_ch.checked_mul(kernel)?.checked_mul(kernel)?.checked_mul(2)?,
            Layer::Linear { in_features, .. } => in_features.checked_mul(2)?,
            Layer::Relu => 1,
            Layer::MaxPool2d { kernel, .. } => kernel.checked_mul(kernel)?,
            Layer::Flatten => 0,
        };
        out.checked_mul(u64::try_from(per_output).ok()?)
    }
}

/// A checked model: layers with inferred shapes and a parameter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub input: Shape,
    pub layers: Vec<LayerInfo>,
    pub params: Vec<ParamInfo>,
    pub num_params: usize,
}

impl Model {
    /// Infer every shape; reject a model that cannot run, naming the layer.
    /// `layers` pairs each layer with its module path (used for parameter names).
    /// Every count stays within the bounds above (`MAX_DIM`, `MAX_ELEMENTS`, `MAX_LAYERS`),
    /// so no size or FLOP count derived from the model overflows.
    pub fn new(input: Shape, layers: Vec<(String, Layer)>) -> Result<Model> {
        if layers.is_empty() {
            bail!("a model needs at least one layer");
        }
        if layers.len() > MAX_LAYERS {
            bail!("a model has at most {MAX_LAYERS} layers, this one has {}", layers.len());
        }
        input.check_input()?;
        let mut infos = Vec::with_capacity(layers.len());
        let mut params = Vec::new();
        let mut offset = 0usize;
        let mut flops = 0u64;
        let mut shape = input;
        for (i, (name, layer)) in layers.into_iter().enumerate() {
            let at = format!("layer {i} ({name}: {layer})");
            let output = layer.output_shape(shape).with_context(|| at.clone())?;
            layer
                .checked_params()
                .and_then(|n| offset.checked_add(n))
                .filter(|&total| total <= MAX_ELEMENTS)
                .ok_or_else(|| anyhow!("{at}: the model would have more than {MAX_ELEMENTS} (2^28) parameters"))?;
            let op = match layer {
                Layer::Conv2d { in_ch, out_ch, kernel, stride, padding } => {
                    let fan_in = in_ch * kernel * kernel;
                    let at = push_params(&mut params, &mut offset, &name, vec![out_ch, in_ch, kernel, kernel], fan_in);
                    let (h, w) = (shape.h, shape.w);
                    Op::Conv2d(ConvDims { n: 1, c: in_ch, h, w, oc: out_ch, k: kernel, stride, pad: padding }, at)
                }
                Layer::Linear { in_features, out_features } => {
                    let at = push_params(&mut params, &mut offset, &name, vec![out_features, in_features], in_features);
                    Op::Linear(LinearDims { n: 1, in_features, out_features }, at)
                }
                Layer::Relu => Op::Relu(ElemDims { n: 1, per_sample: shape.numel() }),
                Layer::MaxPool2d { kernel, stride } => {
                    Op::MaxPool2d(PoolDims { n: 1, c: shape.c, h: shape.h, w: shape.w, k: kernel, stride })
                }
                Layer::Flatten => Op::Flatten,
            };
            let info = LayerInfo { name, layer, input: shape, output, op };
            flops = info
                .checked_flops()
                .and_then(|f| flops.checked_add(f))
                .ok_or_else(|| anyhow!("{at}: the forward FLOP count overflows 64 bits"))?;
            infos.push(info);
            shape = output;
        }
        // The loss and the predictions read the last layer's outputs as class scores.
        if let Some(last) = infos.last().filter(|l| !matches!(l.layer, Layer::Linear { .. })) {
            bail!(
                "the model must end in a Linear layer producing class scores (e.g. 'flat fc10'), not {}: {}",
                last.name,
                last.layer
            );
        }
        if let Some(last) = infos.last().filter(|l| l.output.c > MAX_CLASSES) {
            bail!(
                "{} ({}) has {} outputs, but a classifier has at most {MAX_CLASSES}: labels are bytes, so no \
                 picture could be labelled with a class past {}",
                last.name,
                last.layer,
                last.output.c,
                MAX_CLASSES - 1
            );
        }
        Ok(Model { input, layers: infos, params, num_params: offset })
    }

    /// The tutorial CNN, with PyTorch's module names:
    /// conv1 = Conv(1,16,5,1,2)+ReLU+Pool(2); conv2 = Conv(16,32,5,1,2)+ReLU+Conv(32,32,5,1,2)+ReLU+Pool(2);
    /// conv3 = Conv(32,64,5,1,2)+ReLU; out = Linear(64*7*7, 10).
    pub fn tutorial() -> Model {
        let conv = |i, o| Layer::Conv2d { in_ch: i, out_ch: o, kernel: 5, stride: 1, padding: 2 };
        let pool = Layer::MaxPool2d { kernel: 2, stride: 2 };
        let l = |s: &str, layer| (s.to_string(), layer);
        Model::new(
            Shape::image(1, 28, 28),
            vec![
                l("conv1.0", conv(1, 16)),
                l("conv1.1", Layer::Relu),
                l("conv1.2", pool),
                l("conv2.0", conv(16, 32)),
                l("conv2.1", Layer::Relu),
                l("conv2.2", conv(32, 32)),
                l("conv2.3", Layer::Relu),
                l("conv2.4", pool),
                l("conv3.0", conv(32, 64)),
                l("conv3.1", Layer::Relu),
                l("flatten", Layer::Flatten),
                l("out", Layer::Linear { in_features: 64 * 7 * 7, out_features: 10 }),
            ],
        )
        .expect("the tutorial model is valid")
    }

    /// Number of output classes (the last Linear's width).
    pub fn classes(&self) -> usize {
        self.layers.last().map(|l| l.output.c).unwrap_or(0)
    }

    /// Whether layer `i` is a ReLU right after a convolution: the GPU computes it in
    /// the convolution's epilogue, and a learner sees the two as one feature map.
    pub fn relu_follows_conv(&self, i: usize) -> bool {
        i > 0 && matches!(self.layers[i].op, Op::Relu(_)) && matches!(self.layers[i - 1].op, Op::Conv2d(..))
    }

    /// The layer an explanation's feature map named `name` comes from: its index, and
    /// whether the map is after the ReLU that follows it (run in the convolution's
    /// epilogue, so `feature_maps` gives the two one map).
    pub fn map_layer(&self, name: &str) -> Option<(usize, bool)> {
        let i = self.layers.iter().position(|l| l.name == name)?;
        Some((i, i + 1 < self.layers.len() && self.relu_follows_conv(i + 1)))
    }

    /// The layers whose outputs are feature maps of their own, with the activation
    /// position that holds each (after a convolution's ReLU, if one follows it).
    /// A Flatten's output is its input's; a ReLU after a convolution is part of it.
    pub fn feature_maps(&self) -> Vec<(usize, usize)> {
        (0..self.layers.len())
            .filter(|&i| self.layers[i].op != Op::Flatten && !self.relu_follows_conv(i))
            .map(|i| (i, if i + 1 < self.layers.len() && self.relu_follows_conv(i + 1) { i + 2 } else { i + 1 }))
            .collect()
    }

    /// Forward FLOPs per sample over all layers.
    pub fn flops_per_sample(&self) -> u64 {
        self.layers.iter().fold(0, |sum, l| sum.saturating_add(l.flops_per_sample()))
    }

    /// PyTorch's default initialisation (kaiming_uniform(a=√5) for weights and
    /// U(±1/√fan_in) for biases, which both reduce to U(±1/√fan_in)), drawn
    /// tensor by tensor in `state_dict` order from the RNG seed `rng_seed`.
    pub fn init_params(&self, rng_seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(rng_seed);
        let mut p = vec![0f32; self.num_params];
        for info in &self.params {
            let bound = 1.0 / (info.fan_in as f64).sqrt();
            for x in &mut p[info.offset..info.offset + info.numel()] {
                *x = rng.uniform(-bound, bound) as f32;
            }
        }
        p
    }
}

fn push_params(
    params: &mut Vec<ParamInfo>,
    offset: &mut usize,
    name: &str,
    wshape: Vec<usize>,
    fan_in: usize,
) -> ParamOffsets {
    let out = wshape[0];
    let weight = *offset;
    let wn: usize = wshape.iter().product();
    params.push(ParamInfo { name: format!("{name}.weight"), shape: wshape, offset: weight, fan_in });
    let bias = weight + wn;
    params.push(ParamInfo { name: format!("{name}.bias"), shape: vec![out], offset: bias, fan_in });
    *offset = bias + out;
    ParamOffsets { weight, bias }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_model_matches_pytorch() {
        let m = Model::tutorial();
        assert_eq!(m.num_params, 121_514);
        let names: Vec<_> = m.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1.0.weight",
                "conv1.0.bias",
                "conv2.0.weight",
                "conv2.0.bias",
                "conv2.2.weight",
                "conv2.2.bias",
                "conv3.0.weight",
                "conv3.0.bias",
                "out.weight",
                "out.bias"
            ]
        );
        assert_eq!(m.params[0].shape, vec![16, 1, 5, 5]);
        assert_eq!(m.params[8].shape, vec![10, 3136]);
        let shapes: Vec<_> = m.layers.iter().map(|l| l.output.to_string()).collect();
        assert_eq!(shapes[2], "(16,14,14)");
        assert_eq!(shapes[7], "(32,7,7)");
        assert_eq!(shapes[9], "(64,7,7)");
        assert_eq!(shapes[10], "(3136)");
        assert_eq!(m.classes(), 10);
        // ≈20.8 MFLOP forward per image, as the brief states.
        let mflop = m.flops_per_sample() as f64 / 1e6;
        assert!((20.7..20.9).contains(&mflop), "{mflop}");
    }

    #[test]
    fn shape_errors_name_the_layer_and_numbers() {
        let e = Model::new(
            Shape::image(1, 28, 28),
            vec![
                ("c".into(), Layer::Conv2d { in_ch: 1, out_ch: 4, kernel: 3, stride: 1, padding: 1 }),
                ("f".into(), Layer::Flatten),
                ("o".into(), Layer::Linear { in_features: 100, out_features: 10 }),
            ],
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("layer 2") && e.contains("100") && e.contains("3136"), "{e}");
        let e = Model::new(
            Shape::image(1, 28, 28),
            vec![("c".into(), Layer::Conv2d { in_ch: 3, out_ch: 4, kernel: 3, stride: 1, padding: 1 })],
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("3 input channels"), "{e}");
        let e = Model::new(Shape::image(1, 4, 4), vec![("p".into(), Layer::MaxPool2d { kernel: 5, stride: 1 })])
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("larger"), "{e}");
    }

    fn err(input: Shape, layers: &[Layer]) -> String {
        let named = layers.iter().enumerate().map(|(i, l)| (format!("l{i}"), *l)).collect();
        format!("{:#}", Model::new(input, named).unwrap_err())
    }

    #[test]
    fn a_model_must_end_in_a_linear_layer() {
        let mnist = Shape::image(1, 28, 28);
        let e = err(mnist, &[Layer::Flatten]);
        assert!(e.contains("must end in a Linear") && e.contains("l0: Flatten"), "{e}");
        let fc = Layer::Linear { in_features: 784, out_features: 10 };
        let e = err(mnist, &[Layer::Flatten, fc, Layer::Relu]);
        assert!(e.contains("must end in a Linear") && e.contains("l2: ReLU"), "{e}");
        Model::new(mnist, vec![("f".into(), Layer::Flatten), ("o".into(), fc)]).unwrap();
    }

    #[test]
    fn a_model_has_at_most_256_class_scores() {
        let mnist = Shape::image(1, 28, 28);
        let fc = |out_features| [Layer::Flatten, Layer::Linear { in_features: 784, out_features }];
        assert_eq!(Model::new(mnist, vec![("f".into(), fc(256)[0]), ("o".into(), fc(256)[1])]).unwrap().classes(), 256);
        let e = err(mnist, &fc(257));
        assert!(e.contains("l1 (Linear(784, 257)) has 257 outputs") && e.contains("at most 256"), "{e}");
        assert!(e.contains("labels are bytes"), "{e}");
        // A wide hidden Linear is not a classifier's output.
        let (hidden, out) = (fc(1000)[1], Layer::Linear { in_features: 1000, out_features: 10 });
        Model::new(mnist, vec![("f".into(), Layer::Flatten), ("h".into(), hidden), ("o".into(), out)]).unwrap();
    }

    #[test]
    fn sizes_that_overflow_or_exceed_the_bounds_are_refused_naming_the_layer() {
        let mnist = Shape::image(1, 28, 28);
        let conv = |out_ch, kernel, stride, padding| Layer::Conv2d { in_ch: 1, out_ch, kernel, stride, padding };
        let tail = |features| [Layer::Flatten, Layer::Linear { in_features: features, out_features: 10 }];
        // 2^32 channels of 28x28 (once the release build's wrapped product).
        let e = err(mnist, &[&[conv(1 << 32, 1, 1, 0)][..], &tail(784 << 32)].concat());
        assert!(e.contains("layer 0") && e.contains("more than 268435456 (2^28) elements"), "{e}");
        let e = err(mnist, &[&[conv(1, 1, 1, usize::MAX / 2)][..], &tail(1)].concat());
        assert!(e.contains("layer 0") && e.contains("at most 4096"), "{e}");
        let e = err(mnist, &[&[Layer::MaxPool2d { kernel: 1, stride: usize::MAX }][..], &tail(1)].concat());
        assert!(e.contains("layer 0") && e.contains("at most 4096"), "{e}");
        // 3136 x 100,000 weights: 313.6M parameters.
        let e = err(
            mnist,
            &[&[conv(4, 1, 1, 0)][..], &tail(3136)]
                .concat()
                .iter()
                .map(|l| match l {
                    Layer::Linear { .. } => Layer::Linear { in_features: 3136, out_features: 100_000 },
                    l => *l,
                })
                .collect::<Vec<_>>(),
        );
        assert!(e.contains("layer 2") && e.contains("more than 268435456 (2^28) parameters"), "{e}");
        let e = err(Shape::image(1, 100_000, 100_000), &tail(10_000_000_000));
        assert!(e.contains("input 1x100000x100000") && e.contains("1..=4096"), "{e}");
        let e = err(Shape::image(4096, 4096, 4096), &tail(1));
        assert!(e.contains("2^28"), "{e}");
        let e = err(Shape::image(0, 28, 28), &tail(0));
        assert!(e.contains("input 0x28x28"), "{e}");
        let e = err(mnist, &[&vec![Layer::Relu; MAX_LAYERS][..], &tail(784)].concat());
        assert!(e.contains("at most 1024 layers"), "{e}");
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let m = Model::tutorial();
        let a = m.init_params(1);
        assert_eq!(a, m.init_params(1));
        assert_ne!(a, m.init_params(2));
        for p in &m.params {
            let bound = 1.0 / (p.fan_in as f32).sqrt();
            let s = &a[p.offset..p.offset + p.numel()];
            assert!(s.iter().all(|x| x.abs() <= bound), "{}", p.name);
            let max = s.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(s.len() < 100 || max > 0.95 * bound, "{} does not span its bound", p.name);
        }
    }
}
